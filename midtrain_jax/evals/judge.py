"""The program that runs inside the sandbox: a judge, and the generated program in a child.

`sandbox.py` starts this module's source (after `wire.py` and `guard.py`,
defined as modules from their sources) as `python -c` with one argument, the
settings (JSON), and two frames on standard input: the program, then its
tests. The judge

1. drops to the sandbox's unprivileged user (when it starts as the root of its
   user namespace), sets the resource limits and makes itself non-dumpable, so
   the program (same user, no capabilities) can neither read its memory, nor
   open its file descriptors through /proc, nor trace it;
2. forks the *subject*, which closes the verdict pipe and standard input,
   installs the audit hook (a second layer behind the operating system),
   executes the program, reports the names it defined and then answers calls
   on them (`call`, `getattr`, `setattr`) until the judge hangs up;
3. reads the tests only then (the program never holds them), runs them in its
   own interpreter with the program's names as proxies, and writes the verdict
   to the verdict pipe, which only the judge holds.

Arguments and results cross between the two processes as plain data (numbers,
strings, bytes, the builtin and `collections` containers, iterators as their
items); anything else stays in the subject and crosses as a reference whose
calls and attributes are forwarded. So the assertions, the comparisons they
make and the verdict are all computed by the judge on values it decoded
itself: nothing the program does (exiting early, printing, patching builtins,
raising SystemExit, atexit hooks) can make failing tests pass.

Only the standard library and its two sibling modules: this runs in a bare
interpreter (no site-packages) that cannot see the package.
"""
import builtins
import json
import os
import resource
import signal
import sys
import time

from midtrain_jax.evals import guard, wire

STARTED = b"+"  # First byte on the verdict pipe: the judge is up, limits set, privileges dropped.


# ---- the subject: the program's process -----------------------------------------------------


def _error_reply(error: BaseException) -> list:
  try:
    message = str(error)[-2000:]
  except BaseException:  # noqa: BLE001 (a program's exception may fail to print)
    message = "(unprintable)"
  return ["raise", type(error).__name__, message]


class _Table:
  """The subject's objects that crossed as references, by id."""

  def __init__(self):
    self.objects = {}

  def ref(self, value) -> list:
    rid = len(self.objects) + 1
    self.objects[rid] = value
    return ["R", [rid, type(value).__name__]]

  def describe(self, value) -> list:
    """A global of the program: modules by name, iterators stay references."""
    if type(value) is type(os):
      return ["m", [value.__name__, self.ref(value)]]
    try:
      return wire.encode(value, self.ref, consume=False)
    except Exception:  # noqa: BLE001 (self-referential or odd data: the tests may still call it)
      return self.ref(value)

  def answer(self, request: list):
    op, rid, *args = request
    target = self.objects[rid]
    resolve = lambda rid, _kind: self.objects[rid]
    if op == "call":
      return target(*wire.decode(args[0], resolve), **wire.decode(args[1], resolve))
    if op == "getattr":
      return getattr(target, wire.text(args[0]))
    if op == "setattr":
      return setattr(target, wire.text(args[0]), wire.decode(args[1], resolve))
    raise wire.WireError(f"unknown request {op!r}")


def _flush() -> None:
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except BaseException:  # noqa: BLE001, S110 (the program may have replaced the stream)
      pass


def run_subject(program: str, rfd: int, wfd: int, settings: dict) -> None:
  """The child: runs the program, then answers the judge's requests; never returns."""
  os.close(settings["verdict_fd"])
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  table = _Table()
  if settings["guard"]:
    guard.install(os.path.realpath(os.getcwd()))
  namespace = {"__name__": "__main__", "__builtins__": builtins}
  try:
    exec(compile(program, "<program>", "exec"), namespace)  # noqa: S102 (the point)
    names = {k: table.describe(v) for k, v in list(namespace.items()) if not k.startswith("__")}
    wire.write_frame(wfd, ["ready", names])
  except BaseException as error:  # noqa: BLE001 (whatever ends the program ends it)
    _flush()
    wire.write_frame(wfd, _error_reply(error))
    os._exit(1)
  while True:
    try:
      request = wire.read_frame(rfd)
    except BaseException:  # noqa: BLE001 (the judge hung up)
      break
    try:
      reply = ["ok", wire.encode(table.answer(request), table.ref)]
    except BaseException as error:  # noqa: BLE001 (reported to the judge)
      reply = _error_reply(error)
    wire.write_frame(wfd, reply)
  _flush()
  os._exit(0)


# ---- the judge ------------------------------------------------------------------------------


class ProgramError(Exception):
  """An exception of the program that is not a builtin one (its type name and message)."""


class ProgramGone(BaseException):
  """The program's process ended, left early or broke the protocol: the tests cannot go on.

  A BaseException so that a test's `except Exception` does not swallow it (the
  verdict is failed in any case).
  """


class Remote:
  """A value that stays in the program's process; calls and attributes are forwarded."""
  __slots__ = ("_link", "_rid", "_kind")

  def __init__(self, link, rid: int, kind: str):
    object.__setattr__(self, "_link", link)
    object.__setattr__(self, "_rid", rid)
    object.__setattr__(self, "_kind", kind)

  def __call__(self, *args, **kwargs):
    return self._link.request("call", self._rid, list(args), kwargs)

  def __getattr__(self, name: str):
    if name.startswith("__") and name.endswith("__"):
      raise AttributeError(name)  # Protocol probes (copy, pickle) stay local.
    return self._link.request("getattr", self._rid, name)

  def __setattr__(self, name: str, value) -> None:
    self._link.request("setattr", self._rid, name, value)

  def __repr__(self) -> str:
    return f"<the program's {self._kind}>"

  def __bool__(self) -> bool:
    raise TypeError(f"the program's {self._kind} has no truth value in the tests (only plain "
                    "data is judged)")


class Link:
  """The judge's end of the channel to the subject."""

  def __init__(self, rfd: int, wfd: int):
    self.rfd, self.wfd = rfd, wfd
    self.broken = ""  # Why the program can no longer be trusted to answer, once it can't.
    self.memory_error = False

  def remote(self, rid: int, kind: str) -> Remote:
    return Remote(self, rid, kind)

  def _argument(self, value):
    if isinstance(value, Remote) and value._link is self:
      return ["R", [value._rid, value._kind]]
    raise TypeError(f"a {type(value).__name__} cannot be passed to the program (only plain "
                    "data and the program's own objects cross)")

  def _exchange(self, message=None):
    """Sends `message` (if any) and reads the reply."""
    if self.broken:
      raise ProgramGone(self.broken)
    try:
      if message is not None:
        wire.write_frame(self.wfd, message)
      return wire.read_frame(self.rfd)
    except Exception as error:  # noqa: BLE001 (also a reply too large or deep to decode)
      self.broken = f"the program's process stopped answering ({error!r})"
      raise ProgramGone(self.broken) from None

  def request(self, op: str, rid: int, *args):
    """Forwards one operation and decodes its answer (or raises the program's exception)."""
    reply = self._exchange([op, rid, *(wire.encode(a, self._argument) for a in args)])
    return self.answer(reply)

  def answer(self, reply):
    """The value of an "ok" reply; raises the program's exception of a "raise" reply."""
    try:
      if reply[0] == "ok" and len(reply) == 2:
        return wire.decode(reply[1], self.remote)
      if reply[0] != "raise" or len(reply) != 3:
        raise wire.WireError(f"unknown reply {str(reply)[:80]}")
      error = self._exception(wire.text(reply[1]), wire.text(reply[2]))
    except Exception as problem:  # noqa: BLE001 (malformed, too large or too deep)
      self.broken = f"the program sent a malformed answer ({problem!r})"
      raise ProgramGone(self.broken) from None
    raise error

  def _exception(self, kind: str, message: str) -> BaseException:
    self.memory_error |= kind == "MemoryError"
    cls = getattr(builtins, kind, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
      if not issubclass(cls, Exception):
        self.broken = f"the program raised {kind}({message})"
        return ProgramGone(self.broken)
      try:
        return cls(message)
      except Exception:  # noqa: BLE001 (some builtin exceptions take other arguments)
        pass
    return ProgramError(f"{kind}: {message}")

  def names(self) -> dict:
    """The program's globals, once it has run (raises its exception if it failed)."""
    reply = self._exchange()
    if not reply or reply[0] != "ready":
      return self.answer(reply)
    found = {}
    for name, value in reply[1].items():
      found[wire.text(name)] = self._global(value)
    return found

  def _global(self, value):
    if type(value) is list and len(value) == 2 and value[0] == "m":
      name, ref = wire.text(value[1][0]), value[1][1]
      return stdlib_module(name) or wire.decode(ref, self.remote)
    return wire.decode(value, self.remote)


# Standard modules whose import does something (opens a browser, prints, starts a GUI).
_NOISY_MODULES = ("antigravity", "this", "idlelib", "turtle", "turtledemo", "tkinter",
                  "__hello__", "__phello__")


def stdlib_module(name: str):
  """The judge's own copy of standard module `name`, or None for any other name."""
  top = name.split(".")[0]
  if top not in sys.stdlib_module_names or top in _NOISY_MODULES:
    return None
  import importlib  # noqa: PLC0415
  try:
    return importlib.import_module(name)
  except ImportError:
    return None


def _describe(error: BaseException) -> str:
  import traceback  # noqa: PLC0415 (only for failures)
  lines = traceback.format_exception(type(error), error, error.__traceback__)
  kept = [line for line in lines if "judge.py" not in line and 'File "<string>"' not in line]
  if not any(line.lstrip().startswith("File ") for line in kept):
    kept = kept[1:]  # Only the program's exception: no frames of the tests to show.
  return "".join(kept)[-1500:]


def _remember_source(name: str, source: str) -> None:
  """Lets tracebacks show the failing line of the tests."""
  import linecache  # noqa: PLC0415
  linecache.cache[name] = (len(source), None, source.splitlines(True), name)


def _ended(pid: int) -> int | None:
  """The subject's wait status once it ended by itself (briefly awaited), else None (killed)."""
  for _ in range(50):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return status
    time.sleep(0.01)
  os.kill(pid, signal.SIGKILL)  # Still serving after breaking the protocol: done with it.
  os.waitpid(pid, 0)
  return None


def _outcome(link: Link, pid: int, error: BaseException | None) -> dict:
  """The verdict: passed only if the tests ran to their end and the program kept answering."""
  if error is None and not link.broken:
    return {"status": "passed", "detail": ""}
  detail = _describe(error) if error is not None else link.broken
  status = "killed" if link.memory_error or isinstance(error, MemoryError) else "failed"
  if link.broken:
    code = _ended(pid)
    if code is not None and os.WIFSIGNALED(code):
      status = "killed"
      detail += f"\nthe program's process was killed by signal {os.WTERMSIG(code)}"
  return {"status": status, "detail": detail}


def judge(link: Link, spec: dict, pid: int) -> dict:
  """Runs the tests against the program's names; returns the verdict."""
  error = None
  try:
    names = link.names()
    # A program's `abs` or `len` must not answer for the tests' own use of them, nor
    # an object of its own called `math` for the module (MBPP tests use the program's).
    entry = spec["entry_point"]
    visible = {k: v for k, v in names.items() if k == entry or not hasattr(builtins, k)}
    for name in [k for k in visible if k != entry and k in sys.stdlib_module_names]:
      visible[name] = stdlib_module(name) or visible[name]
    namespace = {"__name__": "__main__", "__builtins__": builtins, **visible}
    if spec["prelude"]:
      _remember_source("<prelude>", spec["prelude"])
      exec(compile(spec["prelude"], "<prelude>", "exec"), namespace)  # noqa: S102
      if spec["entry_point"] in names:
        namespace[spec["entry_point"]] = names[spec["entry_point"]]
    _remember_source("<tests>", spec["tests"])
    exec(compile(spec["tests"], "<tests>", "exec"), namespace)  # noqa: S102
  except BaseException as caught:  # noqa: BLE001 (any failure of the tests fails the program)
    error = caught
  return _outcome(link, pid, error)


# ---- start-up -------------------------------------------------------------------------------


def _drop_privileges(uid) -> None:
  """From the user namespace's root (kept only to get here) to the sandbox's user."""
  if uid is None:
    return
  os.setgroups([])
  os.setgid(uid)
  os.setuid(uid)
  if (os.getuid(), os.geteuid(), os.getgid()) != (uid, uid, uid):
    raise SystemExit(f"sandbox: could not drop to user {uid}")


def _set_limits(limits: dict) -> None:
  for name, value in limits.items():
    resource.setrlimit(getattr(resource, name), (value, value))


def _lock_down() -> None:
  """Makes the judge non-dumpable and mortal with its parent.

  The subject runs as the same user: non-dumpable keeps it out of the judge's
  memory and file descriptors (/proc, ptrace). Dropping privileges cleared the
  parent-death signal bwrap set, so it is set again: if bwrap dies, so does the
  judge, and with it (PID 1) every process of the sandbox.
  """
  if not sys.platform.startswith("linux"):
    return  # Unisolated (unsafe_exec) elsewhere: no prctl.
  import ctypes  # noqa: PLC0415
  prctl = ctypes.CDLL(None, use_errno=True).prctl
  set_dumpable, get_dumpable, set_parent_death_signal = 4, 3, 1
  if (prctl(set_dumpable, 0, 0, 0, 0) != 0 or prctl(get_dumpable, 0, 0, 0, 0) != 0 or
      prctl(set_parent_death_signal, signal.SIGKILL, 0, 0, 0) != 0):
    raise SystemExit("sandbox: could not lock the judge down (prctl)")
  for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
    del sys.modules[name]  # Importing it again in the subject is then an audited event.


def main() -> None:
  """Entry point inside the sandbox (see the module docstring)."""
  settings = json.loads(sys.argv[1])
  for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(sig, signal.SIG_IGN)  # The program may not stop the judge early.
  _drop_privileges(settings["uid"])
  _set_limits(settings["limits"])
  _lock_down()
  os.write(settings["verdict_fd"], STARTED)  # Tells the sandbox apart from its contents failing.
  program = wire.read_frame(0)["program"]
  to_subject, from_subject = os.pipe(), os.pipe()
  pid = os.fork()
  if pid == 0:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
      signal.signal(sig, signal.SIG_DFL)
    os.close(to_subject[1])
    os.close(from_subject[0])
    run_subject(program, to_subject[0], from_subject[1], settings)
  os.close(to_subject[0])
  os.close(from_subject[1])
  spec = wire.read_frame(0)
  os.close(0)
  verdict = judge(Link(from_subject[0], to_subject[1]), spec, pid)
  try:
    os.kill(pid, signal.SIGKILL)  # Its threads may live on (in the jail PID 1's exit does this).
  except ProcessLookupError:
    pass
  _flush()
  os.write(settings["verdict_fd"], json.dumps(verdict).encode()[:wire.MAX_FRAME])
  os._exit(0)


if __name__ == "__main__":
  main()
