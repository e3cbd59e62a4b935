"""The jail's command line: new namespaces, nothing writable but /tmp, only Python's files bound."""
import os
import sys

from midtrain_jax.evals import jail


def _binds(argv: list[str]) -> dict[str, list[tuple[str, str]]]:
  found = {}
  for i, arg in enumerate(argv):
    if arg in ("--bind", "--ro-bind", "--dev-bind", "--bind-try", "--ro-bind-try"):
      found.setdefault(arg, []).append((argv[i + 1], argv[i + 2]))
  return found


def test_the_command_binds_only_the_system_and_the_interpreter_read_only():
  for as_root in (True, False):
    argv = jail.command(["python", "-c", "pass"], disk_mb=16, info_fd=5, as_root=as_root,
                        block_fd=6, seccomp_fd=7)
    binds = _binds(argv)
    assert set(binds) == {"--ro-bind"}, binds  # Nothing writable from the host.
    prefix = os.path.realpath(sys.base_prefix)
    for source, target in binds["--ro-bind"]:
      assert source == target
      assert (source in ("/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime")
              or source == prefix or (source.startswith("/lib") and "/" not in source[1:])
              or source in ("/bin", "/sbin")), source
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                 "--die-with-parent", "--as-pid-1", "--clearenv", "--new-session"):
      assert flag in argv, flag
    assert argv[argv.index("--seccomp") + 1] == "7"
    assert argv[argv.index("--tmpfs", argv.index("--size")) + 1] == jail.WORKDIR
    assert argv.index("--remount-ro", argv.index("--size")) < argv.index("--")
    assert ("--userns-block-fd" in argv) == as_root and ("--disable-userns" in argv) != as_root
    assert argv[argv.index("--") + 1:] == ["python", "-c", "pass"]


def test_the_environment_inside_is_fixed():
  argv = jail.command(["true"], disk_mb=16, info_fd=5, as_root=False)
  env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
  assert env == jail.ENV and "--clearenv" in argv
