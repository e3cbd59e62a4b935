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

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events whose first N arguments are paths that must lie inside the work directory;
# a directory file descriptor among the rest would make a relative path mean elsewhere.
_PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.link": 2,
                "os.symlink": 2, "os.truncate": 1, "os.chmod": 1, "os.chown": 1, "os.utime": 1,
                "os.chflags": 1, "os.lchmod": 1, "shutil.rmtree": 1, "shutil.copyfile": 2,
                "shutil.copymode": 2, "shutil.copystat": 2, "shutil.move": 2, "os.mkfifo": 1,
                "os.mknod": 1}
_REFUSED = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "os.fork", "os.forkpty", "pty.", "os.kill", "os.killpg", "signal.pthread_kill",
            "os.setuid", "os.setsid", "resource.setrlimit", "resource.prlimit", "ctypes.",
            "webbrowser.", "urllib.", "ftplib.", "http.", "smtplib.", "telnetlib.", "poplib.",
            "imaplib.", "nntplib.")
# Modules that reach around the audit events (raw process spawning, foreign calls).
_REFUSED_IMPORTS = ("_posixsubprocess", "_ctypes", "ctypes", "_socket", "socket")


def make_guard(root: str):
  """An audit hook that refuses, in Python, what the sandbox also stops below it."""
  def inside(target) -> bool:
    if isinstance(target, int):  # An already open file descriptor.
      return True
    real = os.path.realpath(os.fsdecode(target))
    return real == root or real.startswith(root + os.sep)

  def refuse(event, what):
    raise PermissionError(f"sandbox: {event} {what} is not allowed")

  def guard(event, args):
    if event == "open":
      target, mode, flags = args
      writing = bool(flags & _WRITE_FLAGS) or any(c in (mode or "") for c in "wax+")
      if writing and target is not None and mode is None and not os.path.isabs(target):
        refuse(event, f"of a relative path for writing with os.open ({target!r})")
      if writing and target is not None and not inside(target):
        refuse(event, f"for writing outside the sandbox directory ({target!r})")
    elif event in _PATH_EVENTS:
      count = _PATH_EVENTS[event]
      if any(isinstance(a, int) for a in args[count:]):
        refuse(event, "with a directory file descriptor")
      for target in args[:count]:
        if isinstance(target, (str, bytes, os.PathLike)) and not inside(target):
          refuse(event, f"outside the sandbox directory ({target!r})")
    elif event == "import" and args[0].split(".")[0] in _REFUSED_IMPORTS:
      refuse(event, f"of {args[0]} (network access and new processes are disabled)")
    elif event.startswith(_REFUSED):
      refuse(event, "(network access is disabled, and so are new processes and signals)")
  return guard
