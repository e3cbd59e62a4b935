"""The operating-system jail of generated code: a bubblewrap (`bwrap`) command line.

Each program runs in new user, PID, network, mount, IPC, UTS and cgroup
namespaces. What it sees:

* a fresh root holding, read-only, only what Python needs: /usr, the /bin and
  /lib links (or directories), the loader cache, the interpreter's own
  installation with its site-packages hidden; a private /proc (its own
  processes only) and a minimal /dev. No home directories, no project or data
  trees, no checkout of this package, no caches, no /etc beyond the loader's;
* one writable place, /tmp, an empty tmpfs of bounded size: the work directory;
* no network: a new network namespace has only its own loopback;
* an environment of a few fixed variables (nothing of the evaluating process);
* a seccomp filter (`seccomp.py`, passed by the caller) on its system calls.

The judge is PID 1 of the new PID namespace (`--as-pid-1`): when it exits, or
is killed on a timeout, the kernel kills every process left in the namespace,
including any that called setsid; if the evaluating process dies, bwrap and
then the judge follow (`--die-with-parent`, which the judge sets again after
changing its user).

Users. RLIMIT_NPROC counts processes per user namespace and user, so the limit
the judge sets bounds the sandbox's own processes (a fork bomb), but the kernel
never applies it to the host's root. Started by an ordinary user, the sandbox
runs as that user (uid 1000 inside; `--disable-userns`: no nested user
namespaces). Started by root, bwrap waits (`--userns-block-fd`) while
`map_users` maps the namespace's root to host root (bwrap needs it to mount
root-only paths such as an interpreter in root's home directory) and uid 1000
to `nobody`; the judge starts as that namespace root holding only CAP_SETUID
and CAP_SETGID, and drops to 1000 before anything else runs.
"""
import json
import os
import shutil
import site
import sys

SANDBOX_ID = 1000  # The user and group inside the sandbox.
NOBODY = 65534  # The host user and group of sandboxes started by root.
WORKDIR = "/tmp"
ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8",
       "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
_NAMESPACES = ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
               "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
               "--die-with-parent", "--new-session", "--as-pid-1"]
_LOADER_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")


def bwrap() -> str | None:
  """The bwrap executable, or None when bubblewrap is not installed."""
  return shutil.which("bwrap")


def interpreter() -> str:
  """The Python that runs inside: this one, past any virtual environment (no site-packages)."""
  return os.path.realpath(sys.executable)


def _under(path: str, roots) -> bool:
  return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _system_mounts() -> list[str]:
  args = ["--ro-bind", "/usr", "/usr"]
  for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
    path = "/" + name
    if os.path.islink(path):
      args += ["--symlink", os.readlink(path), path]
    elif os.path.isdir(path):
      args += ["--ro-bind", path, path]
  for path in _LOADER_FILES:
    if os.path.exists(path):
      args += ["--ro-bind", path, path]
  return args


def _python_mounts() -> list[str]:
  """The interpreter's installation, read-only, at its own path; its site-packages empty."""
  roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
  roots.add(os.path.dirname(os.path.dirname(interpreter())))
  covered = ["/usr"] + [f"/{n}" for n in ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
                        if os.path.isdir(f"/{n}") and not os.path.islink(f"/{n}")]
  roots = sorted(r for r in roots if not _under(r, covered))
  roots = [r for r in roots if not _under(r, [o for o in roots if o != r])]
  args, made = [], set()
  for root in roots:
    # bwrap would copy the modes of the host's parents (a home directory may be 0700);
    # the sandbox's user must be able to walk down to the interpreter.
    parts = root.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
      parent = "/" + "/".join(parts[:i])
      if parent not in made:
        made.add(parent)
        args += ["--perms", "0755", "--dir", parent]
    args += ["--ro-bind", root, root]
  for packages in site.getsitepackages([sys.base_prefix, sys.base_exec_prefix]):
    real = os.path.realpath(packages)
    if os.path.isdir(real) and _under(real, roots + covered):
      args += ["--tmpfs", real, "--remount-ro", real]
  return args


def command(argv: list[str], *, disk_mb: int, info_fd: int, as_root: bool,
            block_fd: int = -1, seccomp_fd: int = -1) -> list[str]:
  """The bwrap command line that runs `argv` (an interpreter command) in the jail.

  Args:
    argv: the command inside, starting with `interpreter()`.
    disk_mb: size of the writable /tmp.
    info_fd: where bwrap writes the host PID of the sandbox's PID 1 (`sandbox_pid`).
    as_root: the evaluating process is root (see the module docstring); then
      bwrap waits to read `block_fd` until `map_users` has mapped the namespace.
    seccomp_fd: a file holding `seccomp.program()`, or -1 for none.
  """
  users = ["--info-fd", str(info_fd)]
  if seccomp_fd >= 0:
    users += ["--seccomp", str(seccomp_fd)]
  if as_root:
    users += ["--userns-block-fd", str(block_fd), "--uid", "0", "--gid", "0",
              "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
  else:
    users += ["--disable-userns", "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID)]
  env = ["--clearenv"] + [a for k, v in ENV.items() for a in ("--setenv", k, v)]
  # The root and /dev are tmpfs of bwrap's own (owned by the sandbox's user when it is
  # not started by root): read-only, so /tmp and its size limit are the only place to write.
  files = (_system_mounts() + _python_mounts() +
           ["--proc", "/proc", "--dev", "/dev", "--perms", "1777",
            "--size", str(disk_mb << 20), "--tmpfs", WORKDIR, "--remount-ro", "/dev",
            "--remount-ro", "/", "--chdir", WORKDIR])
  return [bwrap() or "bwrap", *_NAMESPACES, *users, *env, *files, "--", *argv]


class SandboxNotStarted(RuntimeError):
  """bwrap exited before it created the sandbox (e.g. namespaces or memory unavailable)."""


def sandbox_pid(info_fd: int) -> int:
  """The host PID of the sandbox's PID 1, once bwrap has created it (read from `--info-fd`).

  Killing it kills the whole sandbox: killing bwrap alone does not once the judge
  changed its user (a credential change clears the parent-death signal).

  Raises:
    SandboxNotStarted: bwrap ended before creating the sandbox.
  """
  info = b""
  while chunk := os.read(info_fd, 4096):
    info += chunk
  try:
    return int(json.loads(info)["child-pid"])
  except (ValueError, KeyError, TypeError) as error:
    raise SandboxNotStarted(f"bwrap did not start the sandbox (info: {info[:200]!r})") \
        from error


def map_users(pid: int, block_fd: int) -> None:
  """Root only: maps `pid`'s new user namespace (see the module docstring); bwrap goes on."""
  mapping = f"0 0 1\n{SANDBOX_ID} {NOBODY} 1\n"
  for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
      f.write(mapping)
  os.write(block_fd, b"1")
