"""Runs untrusted generated programs in a subprocess with time and memory limits.

Code benchmarks (HumanEval, MBPP) score a completion by running the benchmark's
tests against it. Model output is arbitrary code, so it never runs in the
evaluating process: each program gets a fresh `python -I` interpreter in an
empty temporary directory, with limits set by `resource.setrlimit` before exec
(address space, CPU seconds, file size, no core dumps) by a bootstrap plus a wall-clock
timeout that kills the whole process group.
"""
import dataclasses
import os
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


# Runs in the child before the program: sets the limits, then executes the
# program in place of itself. Doing this in the child's own interpreter (not a
# preexec_fn) keeps the parent's fork free of Python code, which is unsafe in
# a multithreaded JAX process.
_BOOTSTRAP = """
import resource, runpy, sys
path, memory, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
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
  with tempfile.TemporaryDirectory(prefix="midtrain_exec_") as tmp:
    path = os.path.join(tmp, "program.py")
    with open(path, "w", encoding="utf-8") as f:
      f.write(program)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, path, str(memory_mb * 1024 * 1024),
         str(int(timeout_s) + 1)], cwd=tmp, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
        start_new_session=True)  # Own process group: a timeout kills its children too.
    try:
      _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      try:
        os.killpg(proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      proc.communicate()
      return ExecResult(False, "timeout", f"exceeded {timeout_s}s")
  detail = err.decode("utf-8", "replace")[-500:]
  if proc.returncode == 0:
    return ExecResult(True, "passed", detail)
  if proc.returncode < 0 or "MemoryError" in detail:
    return ExecResult(False, "killed", detail or f"signal {-proc.returncode}")
  return ExecResult(False, "failed", detail)
