"""The second layer of the sandbox: a Python audit hook in the generated program's process.

It refuses, with a `sandbox:` PermissionError the program sees, what the
operating-system jail (`jail.py`) also stops below it: writes outside the work
directory (also through directory file descriptors and relative `os.open`
paths), new processes, signals, sockets, foreign calls (ctypes) and raising
resource limits. An audit hook in the program's own interpreter is not a
security boundary (native code goes around it); it makes refusals clear and
holds where the jail is unavailable and `unsafe_exec` was chosen.

Only the standard library: this runs inside the sandbox (see `judge.py`).
"""
import os
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events whose first N arguments are paths that must lie inside the work directory, and
# the positions of their directory file descriptors (which would make a relative path
# mean a directory elsewhere: refused).
_PATH_EVENTS = {"os.remove": (1, (1,)), "os.rmdir": (1, (1,)), "os.mkdir": (1, (2,)),
                "os.rename": (2, (2, 3)), "os.link": (2, (2, 3)), "os.symlink": (2, (2,)),
                "os.truncate": (1, ()), "os.chmod": (1, (2,)), "os.chown": (1, (3,)),
                "os.utime": (1, (3,)), "os.chflags": (1, ()), "os.lchmod": (1, ()),
                "os.mkfifo": (1, (2,)), "os.mknod": (1, (3,)), "shutil.rmtree": (1, ()),
                "shutil.copyfile": (2, ()), "shutil.copymode": (2, ()),
                "shutil.copystat": (2, ()), "shutil.move": (2, ())}
_REFUSED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "os.fork", "os.forkpty", "pty.", "os.kill", "os.killpg", "signal.pthread_kill",
            "os.setuid", "os.setsid", "resource.setrlimit", "resource.prlimit", "ctypes.",
            "webbrowser.", "urllib.", "ftplib.", "http.", "smtplib.", "telnetlib.", "poplib.",
            "imaplib.", "nntplib.")
_NO = "(network access is disabled, and so are new processes, signals and foreign calls)"
# Modules that reach around the audit events: foreign calls, and a fresh copy of
# _posixsubprocess (whose fork_exec `install` replaces) once it left sys.modules.
_REFUSED_IMPORTS = ("_ctypes", "ctypes", "_posixsubprocess")


def make_guard(root: str):
  """An audit hook that refuses, in Python, what the sandbox also stops below it."""
  def inside(target) -> bool:
    if isinstance(target, int):  # An already open file descriptor.
      return True
    real = os.path.realpath(os.fsdecode(target))
    return real == root or real.startswith(root + os.sep)

  def refuse(event, what="", why=""):
    raise PermissionError(f"sandbox: {event}{' ' if what else ''}{what} is not allowed"
                          f"{' ' if why else ''}{why}")

  def guard(event, args):
    if event == "open":
      target, mode, flags = args
      writing = bool(flags & _WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
      if writing and isinstance(target, (str, bytes)) and mode is None and not os.path.isabs(
          target):  # os.open: its dir_fd is not among the event's arguments.
        refuse(event, f"of a relative path for writing with os.open ({target!r})")
      if writing and target is not None and not inside(target):
        refuse(event, f"for writing outside the sandbox directory ({target!r})")
    elif event in _PATH_EVENTS:
      count, dir_fds = _PATH_EVENTS[event]
      if any(i < len(args) and args[i] not in (None, -1) for i in dir_fds):
        refuse(event, "with a directory file descriptor")
      for target in args[:count]:
        if isinstance(target, (str, bytes, os.PathLike)) and not inside(target):
          refuse(event, f"outside the sandbox directory ({target!r})")
    elif event == "import" and args[0].split(".")[0] in _REFUSED_IMPORTS:
      refuse(event, f"of {args[0]}", _NO)
    elif event.startswith(_REFUSED):
      refuse(event, why=_NO)
  return guard


def install(root: str) -> None:
  """Installs the hook for the work directory `root` (it cannot be removed afterwards)."""
  import _posixsubprocess  # noqa: PLC0415 (subprocess imports it; its fork_exec has no event)

  def fork_exec(*args, **kwargs):
    raise PermissionError(f"sandbox: _posixsubprocess.fork_exec is not allowed {_NO}")
  _posixsubprocess.fork_exec = fork_exec
  sys.addaudithook(make_guard(root))
