"""Runs generated programs (HumanEval, MBPP) against their tests, isolated by the operating system.

Threat model. A program a model wrote is arbitrary code, possibly hostile: it
may try to read secrets (the evaluating process's environment, credentials,
files), write or delete files, reach the network, spawn processes that
outlive it, exhaust memory, processes, files or disk, or make failing tests
report "passed". The evaluating process, the machine and the verdict must
survive all of it.

Two layers hold it:

* the operating system (`jail.py`): each program runs under bubblewrap in new
  user, PID, network, mount, IPC, UTS and cgroup namespaces, sees only the
  system and the interpreter read-only plus a private size-limited /tmp, has no
  network and an environment of a few fixed variables, runs as an unprivileged
  user with limits on address space, CPU time, processes, open files and file
  size, under a seccomp filter (`seccomp.py`), and its whole process tree dies
  with it (PID namespace) or on the wall-clock timeout;
* a Python audit hook in the program's process (`guard.py`), which refuses the
  same operations with a clear `sandbox:` error; not a boundary on its own.

The verdict (`judge.py`). The tests do not run in the program's process: a
judge process forks the program's process, runs the tests itself with the
program's functions as proxies (arguments and results cross as plain data),
and writes the verdict to a pipe only it holds. The program never sees the
tests, and nothing it can read (command line, environment, files, its own
memory) tells it what the parent accepts as "passed": exiting early with
status 0, printing markers, patching builtins or `sys.exit`, raising
SystemExit and atexit hooks all leave the tests failing.

Where the jail is unavailable (no bubblewrap, user namespaces disabled, not
Linux) running generated code raises `SandboxUnavailable`, saying why and how
to allow it explicitly (`unsafe_exec=True`, the commands' `--unsafe_exec`):
then only the resource limits and the audit hook hold the program.

Limits (see also the README): the kernel is shared (a kernel exploit escapes
any namespace); memory is bounded per process (address space) times the
process limit, not by a cgroup; a sandbox's tmpfs bounds bytes but not the
number of empty files; CPU time is bounded per process.
"""
import concurrent.futures
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

from midtrain_jax.evals import guard, jail, judge, seccomp, wire

DISK_MB = 16  # The writable /tmp of one sandbox.
FILE_MB = 1  # Largest file a program may write.
OPEN_FILES = 64
PROCESSES = 16  # Processes and threads of one sandbox, the judge's included.
_TAIL = 2000  # Characters of stderr and of the verdict's detail kept.
_GRACE_S = 5.0  # For bwrap to end once its sandbox was killed.
_START_ATTEMPTS = 3  # Launches of bwrap per program when it fails before the sandbox exists.
UNSAFE_HINT = ("To run generated code anyway, with only resource limits and Python-level "
               "guards between it and this machine, pass --unsafe_exec (setting "
               "eval.unsafe_exec=True); never do that for untrusted models on a machine that "
               "holds credentials.")


class SandboxUnavailable(RuntimeError):
  """The operating-system jail cannot run here (and `unsafe_exec` was not given)."""


@dataclasses.dataclass(frozen=True)
class Job:
  """A program and the tests that decide whether it passes.

  Attributes:
    program: untrusted Python source (e.g. prompt + completion); runs in its own process.
    tests: trusted test code, run by the judge with the program's globals as proxies,
      except those named like a builtin ("" = the program passes if it runs to its
      end, which only it reports).
    prelude: trusted definitions run by the judge before the tests (HumanEval's
      prompt: its helper functions are the benchmark's, not the program's).
    entry_point: the function under test; taken from the program even when the
      prelude defines it or it is named like a builtin (MBPP's `sum`).
  """
  program: str
  tests: str = ""
  prelude: str = ""
  entry_point: str = ""


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one program.

  Attributes:
    passed: the tests ran to their end without an error.
    status: "passed", "failed", "timeout" or "killed" (a resource limit).
    detail: the failing test's traceback and the tail of stderr.
  """
  passed: bool
  status: str
  detail: str = ""


@functools.cache
def _inside_source() -> str:
  """The program `python -c` runs: wire and guard as modules, then the judge."""
  parts = ["import sys, types",
           "sys.path[:] = [p for p in sys.path if p]  # Never the writable work directory."]
  for module in (wire, guard):
    parts.append(f"{module.__name__.rsplit('.', 1)[1]} = types.ModuleType("
                 f"{module.__name__!r})")
    parts.append(f"exec({inspect.getsource(module)!r}, "
                 f"{module.__name__.rsplit('.', 1)[1]}.__dict__)")
  body = inspect.getsource(judge).replace("from midtrain_jax.evals import guard, wire\n", "")
  return "\n".join(parts) + "\n" + body


def _limits(timeout_s: float, memory_mb: int, isolated: bool) -> dict:
  limits = {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": math.ceil(timeout_s) + 1,
            "RLIMIT_FSIZE": FILE_MB << 20, "RLIMIT_NOFILE": OPEN_FILES, "RLIMIT_CORE": 0}
  if isolated:  # Outside a user namespace RLIMIT_NPROC would count all of the user's processes.
    limits["RLIMIT_NPROC"] = PROCESSES
  return limits


def _payload(job: Job) -> int:
  """The job as two frames in a memory file: the program, then (read after the fork) the tests."""
  fd = _memory_file(b"")
  wire.write_frame(fd, {"program": job.program})
  wire.write_frame(fd, {"tests": job.tests, "prelude": job.prelude,
                        "entry_point": job.entry_point})
  os.lseek(fd, 0, os.SEEK_SET)
  return fd


def _argv(settings: dict, isolated: bool, as_root: bool, fds: tuple[int, int, int]) -> list:
  python = [jail.interpreter() if isolated else sys.executable, "-s", "-S", "-B", "-c",
            _inside_source(), json.dumps(settings)]
  if not isolated:
    return python
  return jail.command(python, disk_mb=DISK_MB, info_fd=fds[0], as_root=as_root,
                      block_fd=fds[1], seccomp_fd=fds[2])


def _memory_file(data: bytes) -> int:
  """An unnamed file holding `data`, read from its start (a descriptor the caller closes)."""
  if hasattr(os, "memfd_create"):
    fd = os.memfd_create("sandbox")
  else:  # Not Linux: only unisolated runs (unsafe_exec) get here.
    with tempfile.TemporaryFile() as f:
      fd = os.dup(f.fileno())
  os.write(fd, data)
  os.lseek(fd, 0, os.SEEK_SET)
  return fd


def _launch(job: Job, settings: dict, isolated: bool, workdir: str):
  """Starts the judge (in the jail when `isolated`).

  Returns:
    The process (bwrap, or the judge) and the host PID of the sandbox's PID 1 (or None).
  """
  as_root = isolated and os.geteuid() == 0
  # bwrap's ends and ours of the pipes of jail.sandbox_pid (info) and jail.map_users
  # (block), and the seccomp filter bwrap reads.
  theirs, ours = (-1, -1, -1), (-1, -1)
  if isolated:
    (info_r, info_w), (block_r, block_w) = os.pipe(), (os.pipe() if as_root else (-1, -1))
    filter_program = seccomp.program()
    theirs = (info_w, block_r, _memory_file(filter_program) if filter_program else -1)
    ours = (info_r, block_w)
  passed = [settings["verdict_fd"], *(fd for fd in theirs if fd >= 0)]
  env = ({"PATH": "/usr/bin:/bin"} if isolated else
         {**jail.ENV, "HOME": workdir, "TMPDIR": workdir})
  stdin = _payload(job)
  try:
    proc = subprocess.Popen(
        _argv(settings, isolated, as_root, theirs), stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, pass_fds=passed, cwd="/" if isolated else workdir, env=env,
        start_new_session=True, extra_groups=[] if as_root else None)
  except OSError:
    _close(ours)
    raise
  finally:
    _close([stdin, *passed[1:]])
  try:
    pid = jail.sandbox_pid(ours[0]) if isolated else None
    if as_root:
      jail.map_users(pid, ours[1])
  except jail.SandboxNotStarted as error:
    _kill(proc, None)
    said = proc.stderr.read()[:500].decode("utf-8", "replace").strip()
    proc.stdout.close()
    proc.stderr.close()
    raise jail.SandboxNotStarted(f"{error}; bwrap said: {said or '(nothing)'}") from None
  except (OSError, RuntimeError):
    _kill(proc, None)
    raise
  finally:
    _close(ours)
  return proc, pid


def _close(fds) -> None:
  for fd in fds:
    if fd >= 0:
      os.close(fd)


def _kill(proc: subprocess.Popen, sandbox_pid: int | None) -> None:
  """Kills the sandbox's PID 1 (the kernel then kills the rest), then bwrap or the judge's group.

  bwrap is given a moment to reap its child first, so nothing is left for the host's init.
  """
  if sandbox_pid is not None:
    try:
      os.kill(sandbox_pid, signal.SIGKILL)
      proc.wait(_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
      pass
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[str, bool]:
  """Reads stdout and stderr (keeping stderr's tail) until the process ends or the deadline."""
  tail = b""
  with selectors.DefaultSelector() as selector:
    selector.register(proc.stdout, selectors.EVENT_READ)
    selector.register(proc.stderr, selectors.EVENT_READ)
    while selector.get_map():
      left = deadline - time.monotonic()
      if left <= 0:
        return tail.decode("utf-8", "replace"), True
      for key, _ in selector.select(left):
        chunk = os.read(key.fd, 1 << 16)
        if not chunk:
          selector.unregister(key.fileobj)
        elif key.fileobj is proc.stderr:
          tail = (tail + chunk)[-_TAIL:]
  try:
    proc.wait(max(0.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    return tail.decode("utf-8", "replace"), True
  return tail.decode("utf-8", "replace"), False


def _read_verdict(fd: int) -> bytes:
  """What the judge wrote; never blocks (every writer may be gone or not)."""
  os.set_blocking(fd, False)
  data = b""
  try:
    while chunk := os.read(fd, 1 << 16):
      data += chunk
  except BlockingIOError:
    pass
  return data


def _result(data: bytes, returncode: int, stderr: str, isolated: bool) -> ExecResult:
  if not data.startswith(judge.STARTED):
    if isolated:
      raise SandboxUnavailable(f"the sandbox did not start (status {returncode}): "
                               f"{stderr.strip()[-_TAIL:]}")
    return ExecResult(False, "failed", f"the judge did not start: {stderr[-_TAIL:]}")
  try:
    verdict = json.loads(data[len(judge.STARTED):])
    status, detail = verdict["status"], str(verdict["detail"])
  except (ValueError, KeyError, TypeError):
    killed = returncode < 0 or returncode > 128
    return ExecResult(False, "killed" if killed else "failed",
                      f"no verdict (status {returncode}): {stderr[-_TAIL:]}")
  detail = (detail[-_TAIL:] + ("\n" + stderr if stderr else "")).strip()
  if status == "passed" and returncode == 0:
    return ExecResult(True, "passed", detail)
  return ExecResult(False, status if status in ("failed", "killed") else "failed", detail)


def _run(job: Job, timeout_s: float, memory_mb: int, isolated: bool,
         python_guard: bool) -> ExecResult:
  verdict_r, verdict_w = os.pipe()
  settings = {"verdict_fd": verdict_w, "limits": _limits(timeout_s, memory_mb, isolated),
              "uid": jail.SANDBOX_ID if isolated and os.geteuid() == 0 else None,
              "guard": python_guard}
  # Unisolated, the program's work directory is a fresh host directory (the jail has its own).
  workspace = (contextlib.nullcontext(jail.WORKDIR) if isolated else
               tempfile.TemporaryDirectory(prefix="midtrain_exec_"))
  try:
    with workspace as workdir:
      try:
        proc, pid = _launch(job, settings, isolated, os.path.realpath(workdir))
      finally:
        os.close(verdict_w)
      stderr, timed_out = _collect(proc, time.monotonic() + timeout_s)
      if timed_out:
        _kill(proc, pid)
      proc.stdout.close()
      proc.stderr.close()
      data = _read_verdict(verdict_r)
  finally:
    os.close(verdict_r)
  if timed_out:
    return ExecResult(False, "timeout", f"exceeded {timeout_s}s\n{stderr}".strip())
  return _result(data, proc.returncode, stderr, isolated)


def _run_retrying(job: Job, timeout_s: float, memory_mb: int, isolated: bool,
                  python_guard: bool) -> ExecResult:
  """`_run`, launching bwrap again when it ended before creating the sandbox.

  bwrap can fail to create namespaces transiently (e.g. fork or memory
  pressure on a loaded host); the program never ran then, so running it again
  is safe. `isolation_problem` checked once that the jail works here at all.
  """
  for attempt in range(_START_ATTEMPTS):
    try:
      return _run(job, timeout_s, memory_mb, isolated, python_guard)
    except jail.SandboxNotStarted:
      if attempt == _START_ATTEMPTS - 1:
        raise
      time.sleep(0.5 * (attempt + 1))
  raise AssertionError("unreachable")


@functools.cache
def isolation_problem() -> str | None:
  """Why the operating-system jail cannot run here, or None when it can (checked once)."""
  if not sys.platform.startswith("linux"):
    return f"the sandbox needs Linux namespaces (this is {sys.platform})"
  if jail.bwrap() is None:
    return ("bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; "
            "Fedora: dnf install bubblewrap)")
  try:
    result = _run_retrying(Job("answer = 42", "assert answer == 42"), 60.0, 256, True, True)
  except (OSError, RuntimeError) as error:
    return (f"bubblewrap could not start a sandbox ({error}); user namespaces may be "
            "disabled (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, "
            "or a container's seccomp profile)")
  if not result.passed:
    return f"a trivial program did not pass in the sandbox ({result.status}: {result.detail})"
  return None


def require_isolation(unsafe_exec: bool = False) -> bool:
  """Whether programs will run isolated; raises when they cannot and `unsafe_exec` is False.

  Raises:
    SandboxUnavailable: the jail cannot run here (the message says why and how to
      allow running generated code without it).
  """
  problem = isolation_problem()
  if problem is None:
    return True
  if not unsafe_exec:
    raise SandboxUnavailable(f"Generated code is only run inside an operating-system "
                             f"sandbox, which is unavailable here: {problem}. {UNSAFE_HINT}")
  _warn_unsafe(problem)
  return False


@functools.cache
def _warn_unsafe(problem: str) -> None:
  logging.getLogger(__name__).warning(
      "unsafe_exec: running generated code WITHOUT operating-system isolation (%s)", problem)


def run_programs(jobs, *, timeout_s: float = 5.0, memory_mb: int = 512,
                 unsafe_exec: bool = False, workers: int = 0,
                 python_guard: bool = True) -> list[ExecResult]:
  """Runs each job in its own sandbox, `workers` at a time.

  Args:
    jobs: `Job`s.
    timeout_s: wall-clock limit per program; CPU time is limited to the same (rounded up).
    memory_mb: address-space limit of each process (the judge's and the program's).
    unsafe_exec: run without the operating-system jail where it is unavailable.
    workers: sandboxes at once (0 = one per CPU core).
    python_guard: install the audit hook; False only to test the jail alone.

  Returns:
    One ExecResult per job, in order.
  """
  if timeout_s <= 0 or memory_mb <= 0:
    raise ValueError(f"timeout_s={timeout_s} and memory_mb={memory_mb} must be positive.")
  isolated = require_isolation(unsafe_exec)
  run = lambda job: _run_retrying(job, timeout_s, memory_mb, isolated, python_guard)
  jobs = list(jobs)
  if len(jobs) <= 1:
    return [run(job) for job in jobs]
  with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
    return list(pool.map(run, jobs))


def run_program(program: str, tests: str = "", *, prelude: str = "", entry_point: str = "",
                timeout_s: float = 5.0, memory_mb: int = 512, unsafe_exec: bool = False,
                python_guard: bool = True) -> ExecResult:
  """Runs one program and its tests in a sandbox (see `Job` and `run_programs`)."""
  return run_programs([Job(program, tests, prelude, entry_point)], timeout_s=timeout_s,
                      memory_mb=memory_mb, unsafe_exec=unsafe_exec,
                      python_guard=python_guard)[0]
