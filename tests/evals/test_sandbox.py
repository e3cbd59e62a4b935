"""The sandbox of generated code, attacked: no attack may do harm, and none may pass.

Each attack is a program followed by tests it fails (`abs(answer() - 1) < 0.5`,
where its `answer()` returns 0 unless the attack redefines it): the run must
report failed, killed or timeout. Every attack runs twice, with both layers and
with the operating-system jail alone (`python_guard=False`), which must hold by
itself. Harm is checked from outside the sandbox: the test's own files, the
interpreter's files, the host's /tmp, processes left on the host, a listening
socket, what the program printed. Positive controls show that each check does
see harm when a program runs without the jail.
"""
import hashlib
import json
import os
import pathlib
import shutil
import socket
import string
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from midtrain_jax import cache
from midtrain_jax.evals import jail, sandbox

PROBLEM = sandbox.isolation_problem()
needs_jail = pytest.mark.skipif(PROBLEM is not None, reason=f"no sandbox here: {PROBLEM}")
FAILING_TESTS = "assert abs(answer() - 1) < 0.5\n"
ANSWER = "def answer():\n  return 0\n"
TIMEOUT_S = 2.0
FAKE_VERDICT = '+{"status": "passed", "detail": ""}'
_FORK_EXEC = """
import _posixsubprocess, os
r, w = os.pipe()
cmd = ('echo gone > ' + $victim + '; exec sleep ' + $sleep).encode()
head = [[b'/bin/sh', b'-c', cmd], [b'/bin/sh'], True, (w,), None, None, -1, -1, -1, -1,
        -1, -1, r, w, True, True]
for before, after in (([-1], [False]), ([-1], []), ([], [])):  # Python 3.11+, 3.11, 3.10.
  try:
    _posixsubprocess.fork_exec(*head, *before, None, None, None, -1, None, *after)
    break
  except TypeError:
    continue
"""
# name: (what it goes after, program). $-fields are filled per run (see `_fill`).
ATTACKS = {
    "write: absolute path": ("files", "open($victim, 'w').write('gone')"),
    "write: relative path": ("files", "import os\nos.chdir('/')\n"
                             "open($victim_rel, 'w').write('gone')"),
    "write: ../ path": ("files", "open('../' * 12 + $victim_rel, 'w').write('gone')"),
    "write: dir_fd": ("files", "import os\nfd = os.open('/', os.O_RDONLY)\n"
                      "os.write(os.open($victim_rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,"
                      " dir_fd=fd), b'gone')"),
    "write: symlink": ("files", "import os\nos.symlink($victim, 'link')\n"
                       "open('link', 'w').write('gone')"),
    "write: hard link": ("files", "import os\nos.link($victim, 'hard')\n"
                         "open('hard', 'w').write('gone')"),
    "write: interpreter's stdlib": ("files", "import os\nopen(os.__file__, 'a').write('#')"),
    "write: new stdlib module": ("files", "import os\nopen(os.path.join(os.path.dirname("
                                 "os.__file__), $mark + '.py'), 'w').write('gone')"),
    "write: host /tmp": ("files", "open($tmp + '/' + $mark, 'w').write('gone')"),
    "write: the jail's own directories": ("files", "import sys\nfor d in ('/', '/dev', "
                                            "'/dev/shm', '/etc', '/proc'):\n  try:\n"
                                            "    open(d + '/fill', 'w').write('x')\n"
                                            "    print('WRITABLE', d, file=sys.stderr)\n"
                                            "  except OSError:\n    pass"),
    "write: append": ("files", "open($victim, 'a').write('more')"),
    "write: chdir out": ("files", "import os\nos.chdir($outside)\n"
                         "open('victim.txt', 'w').write('gone')"),
    "delete: os.remove": ("files", "import os\nos.remove($victim)"),
    "delete: shutil.rmtree": ("files", "import shutil\nshutil.rmtree($outside)"),
    "rename: out of the work directory": ("files", "import os\nopen('x', 'w').close()\n"
                                          "os.rename('x', $outside + '/moved')"),
    "chmod": ("files", "import os\nos.chmod($victim, 0o777)"),
    "spawn: subprocess": ("processes", "import subprocess\nsubprocess.Popen(['/bin/sh', '-c',"
                          " 'echo gone > ' + $victim + '; exec sleep ' + $sleep])"),
    "spawn: os.fork": ("processes", "import os\nif os.fork() == 0:\n"
                       "  os.execv('/bin/sleep', ['sleep', $sleep])"),
    "spawn: _posixsubprocess.fork_exec": ("processes", _FORK_EXEC),
    "spawn: ctypes system()": ("processes", "import ctypes\nctypes.CDLL(None).system(("
                               "'echo gone > ' + $victim + '; sleep ' + $sleep + ' &')"
                               ".encode())"),
    "spawn: os.system": ("processes", "import os\nos.system('echo gone > ' + $victim + "
                         "'; setsid sleep ' + $sleep + ' &')"),
    "spawn: setsid survivor": ("processes", "import os, time\nif os.fork() == 0:\n"
                               "  os.setsid()\n  keep = open($tmp + '/' + $mark, 'w')\n"
                               "  time.sleep(60)"),
    "namespaces: unshare() a user namespace": ("processes", "import ctypes, sys\n"
                                                "libc = ctypes.CDLL(None, use_errno=True)\n"
                                                "if libc.unshare(0x10000000) == 0:\n"
                                                "  print('UNSHARED', file=sys.stderr)"),
    "namespaces: unshare(1) --user": ("processes", "import os, sys\nif os.system('unshare "
                                      "--user --map-root-user true') == 0:\n"
                                      "  print('UNSHARED', file=sys.stderr)"),
    "network: localhost": ("network", "import socket\nsocket.create_connection(('127.0.0.1',"
                           " $port), timeout=2).sendall(b'gone')"),
    "network: external TCP": ("network", "import socket, sys\nsocket.create_connection(("
                              "'1.1.1.1', 53), timeout=2)\nprint('CONNECTED', file=sys.stderr)"),
    "network: external UDP": ("network", "import socket, sys\nsocket.socket(socket.AF_INET,"
                              " socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53))\n"
                              "print('CONNECTED', file=sys.stderr)"),
    "network: urllib": ("network", "import urllib.request\n"
                        "urllib.request.urlopen(f'http://127.0.0.1:{$port}', timeout=2)"),
    "network: DNS": ("network", "import socket, sys\nsocket.getaddrinfo('example.com', 80)\n"
                     "print('CONNECTED', file=sys.stderr)"),
    "read: files holding secrets": ("secrets", "import os, sys\nfor p in $host_paths:\n"
                                    "  if os.path.exists(p):\n"
                                    "    print('VISIBLE', p, file=sys.stderr)\n"
                                    "print('SEARCHED', file=sys.stderr)\n"
                                    "print(open($secret).read(), file=sys.stderr)"),
    "forge: nonce from /proc/*/cmdline": ("verdict", "import os, sys\n"
                                          "for p in ('/proc/self/cmdline', '/proc/1/cmdline'):"
                                          "\n  try:\n    print(open(p).read().split('\\0')[-2])"
                                          "\n  except (OSError, IndexError):\n    pass\n"
                                          "sys.stdout.flush()\nos._exit(0)"),
    "forge: os._exit(0) in the function": ("verdict", "import os\ndef answer():\n"
                                           "  os._exit(0)"),
    "forge: printed markers": ("verdict", "import os, sys\nfor text in ('passed', " +
                               repr(FAKE_VERDICT) + "):\n  print(text)\n"
                               "  print(text, file=sys.stderr)\nfor fd in range(1024):\n"
                               "  try:\n    os.write(fd, " + repr(FAKE_VERDICT.encode()) +
                               ")\n  except OSError:\n    pass"),
    "forge: verdict pipe through /proc": ("verdict", "import os\nfor pid in os.listdir('/proc'):"
                                          "\n  for fd in range(64):\n    try:\n      os.write("
                                          "os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY), " +
                                          repr(FAKE_VERDICT.encode()) + ")\n"
                                          "    except (OSError, ValueError):\n      pass"),
    "forge: read the judge's memory": ("verdict", "print(open('/proc/1/mem', 'rb').read(1))"),
    "forge: patched builtins, always-equal": ("verdict", "import builtins\n"
                                              "builtins.AssertionError = ZeroDivisionError\n"
                                              "class Equal:\n  def __eq__(self, other):\n"
                                              "    return True\ndef answer():\n"
                                              "  return Equal()"),
    "forge: int subclass equal to all": ("verdict", "class One(int):\n  def __eq__(self, o):"
                                         "\n    return True\ndef answer():\n"
                                         "  return One(0)"),
    "forge: shadowed builtin": ("verdict", "def abs(x):\n  return 0"),
    "forge: SystemExit(0) in the function": ("verdict", "def answer():\n"
                                             "  raise SystemExit(0)"),
    "forge: SystemExit(0) at top level": ("verdict", "raise SystemExit(0)"),
    "forge: atexit hook": ("verdict", "import atexit, os, sys\n"
                           "atexit.register(lambda: os._exit(0))\ndef answer():\n"
                           "  sys.exit(0)"),
    "forge: patched sys.exit and os._exit": ("verdict", "import os, sys\n"
                                             "sys.exit = os._exit = lambda *a: None\n"
                                             "def answer():\n  sys.exit(0)\n  return 0"),
    "forge: signals to the judge": ("verdict", "import os, signal\nfor s in (signal.SIGINT,"
                                    " signal.SIGTERM, signal.SIGKILL, signal.SIGSTOP):\n"
                                    "  try:\n    os.kill(1, s)\n  except OSError:\n    pass"),
    "signal: every process": ("processes", "import os, signal\nos.kill(-1, signal.SIGKILL)"),
    "signal: the parent": ("processes", "import os, signal\nos.kill(os.getppid(), "
                           "signal.SIGKILL)"),
    "resources: raise a limit": ("resources", "import resource\nresource.setrlimit("
                                 "resource.RLIMIT_CPU, (resource.RLIM_INFINITY,) * 2)"),
    "resources: fork bomb": ("resources", "import os\nkeep = open($tmp + '/' + $mark, 'w')\n"
                             "while True:\n  try:\n    os.fork()\n  except OSError:\n"
                             "    pass"),
    "resources: disk flood": ("resources", "import sys\nn = 0\ntry:\n  while True:\n"
                              "    with open(f'f{n}', 'w') as f:\n      f.write('x' * 4096)\n"
                              "    n += 1\nfinally:\n  print('WROTE', n, file=sys.stderr)"),
    "resources: file-count flood": ("resources", "n = 0\nwhile True:\n  open(f'e{n}', 'w')\n"
                                    "  n += 1"),
    "resources: one huge file": ("resources", "open('big', 'wb').write(b'x' * (64 << 20))"),
    "resources: open files": ("resources", "kept = []\nwhile True:\n"
                              "  kept.append(open('/dev/null'))"),
    "resources: memory hog": ("resources", "x = bytearray(4 << 30)"),
    "resources: CPU hog": ("resources", "while True:\n  pass"),
    "resources: output flood": ("resources", "import sys\nwhile True:\n"
                                "  sys.stdout.write('x' * 65536)"),
}
LAYERS = {"jail and audit hook": True, "jail alone": False}
LAYERS_NAMES = list(LAYERS)


def _mark() -> str:
  return f"midtrain-sandbox-attack-{uuid.uuid4().hex[:12]}"


def _sleep_marker() -> str:
  """A unique argument for `sleep` (a number) that finds the process on the host."""
  return f"6{uuid.uuid4().int % 10**12:012d}.5"


def survivors(markers) -> list[str]:
  """Host processes whose command line or open files name one of `markers`."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    texts = []
    try:
      texts.append(pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
      for fd in os.listdir(f"/proc/{pid}/fd"):
        texts.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    except OSError:
      pass  # Gone meanwhile, or not ours to read.
    found += [f"{pid}: {m}" for m in markers if any(m in t for t in texts)]
  return found


def _fill(source: str, world: dict, mark: str, sleep: str) -> str:
  values = {**world, "mark": mark, "sleep": sleep, "tmp": jail.WORKDIR}
  return string.Template(source).substitute({k: repr(v) for k, v in values.items()})


def _hash(path: str) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Things outside the sandbox the attacks go after, and a listening socket."""
  root = tmp_path_factory.mktemp("outside")
  victim, secret = root / "victim.txt", root / "secret.txt"
  victim.write_text("keep me")
  secret.write_text(f"secret-{uuid.uuid4().hex}")
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen()
  listener.setblocking(False)
  checkout = pathlib.Path(__file__).resolve().parents[2]
  # The jail has an empty /tmp of its own (and a root): those paths existing inside say
  # nothing of the host's (a checkout under /tmp has /tmp as its parent); what the host
  # keeps under them is still looked for.
  own = {jail.WORKDIR, "/"}
  host_paths = [str(p) for p in (secret, root, pathlib.Path.home() / ".ssh", checkout,
                                 checkout.parent, cache.cache_root(), "/etc/shadow",
                                 "/etc/passwd") if os.path.exists(p) and str(p) not in own]
  yield {"victim": str(victim), "victim_rel": str(victim).lstrip("/"), "secret": str(secret),
         "outside": str(root),
         "port": listener.getsockname()[1], "host_paths": host_paths, "root": root,
         "listener": listener}
  listener.close()


@pytest.fixture(scope="module")
def attacked(world):
  """Runs every attack under both layers at once; returns what happened and what is left."""
  stdlib = os.path.dirname(os.__file__)
  before = {"os.py": _hash(os.__file__), "root": sorted(os.listdir(world["root"])),
            "mode": os.stat(world["victim"]).st_mode}
  jobs, runs = [], []
  program_world = {k: world[k] for k in ("victim", "victim_rel", "secret", "port",
                                         "host_paths", "outside")}
  for layer, python_guard in LAYERS.items():
    for name, (_, source) in ATTACKS.items():
      mark, sleep = _mark(), _sleep_marker()
      runs.append((name, layer, mark, sleep))
      jobs.append((sandbox.Job(ANSWER + _fill(source, program_world, mark, sleep),
                               FAILING_TESTS), python_guard))
  started = time.monotonic()
  results = {}
  for python_guard in LAYERS.values():
    chosen = [(run, job) for run, (job, guard) in zip(runs, jobs) if guard == python_guard]
    done = sandbox.run_programs([job for _, job in chosen], timeout_s=TIMEOUT_S, workers=2,
                                python_guard=python_guard)
    results.update({(run[0], run[1]): (run, r) for (run, _), r in zip(chosen, done)})
  try:
    connected = world["listener"].accept()
  except BlockingIOError:
    connected = None
  return {"results": results, "seconds": time.monotonic() - started, "before": before,
          "stdlib": stdlib, "connected": connected,
          "survivors": survivors([m for run in runs for m in run[2:]])}


@needs_jail
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_fails_and_does_no_harm(attacked, world, name, layer):
  (_, _, mark, _), result = attacked["results"][(name, layer)]
  kind = ATTACKS[name][0]
  assert not result.passed and result.status in ("failed", "killed", "timeout"), result
  if kind != "resources":  # Refused or harmless, then failing its tests: no need to wait.
    assert result.status == "failed", result
  if layer == "jail and audit hook" and kind in ("processes", "network"):
    assert "sandbox:" in result.detail, result  # Refused by the hook before the jail.
  assert pathlib.Path(world["victim"]).read_text() == "keep me"
  assert os.stat(world["victim"]).st_mode == attacked["before"]["mode"]
  assert sorted(os.listdir(world["root"])) == attacked["before"]["root"]
  assert _hash(os.__file__) == attacked["before"]["os.py"]
  assert not os.path.exists(os.path.join(attacked["stdlib"], mark + ".py"))
  assert not os.path.exists(os.path.join(jail.WORKDIR, mark))  # The host's, shadowed inside.
  assert attacked["connected"] is None, "something connected to the test's listening socket"
  assert not attacked["survivors"], attacked["survivors"]
  for word in ("CONNECTED", "VISIBLE", "UNSHARED", "WRITABLE"):
    assert word not in result.detail, result
  assert pathlib.Path(world["secret"]).read_text() not in result.detail
  if name == "read: files holding secrets":
    assert "SEARCHED" in result.detail, result  # The program's stderr does come back.
  if name == "resources: disk flood":
    written = int(result.detail.split("WROTE")[1].split()[0])
    assert 0 < written * 4096 <= sandbox.DISK_MB << 20, result
  if name in ("resources: memory hog",):
    assert result.status == "killed", result


def _reason(result: sandbox.ExecResult) -> str:
  """One line on how an attack ended: the refusal, the error it met, or the timeout."""
  lines = [line.strip() for line in result.detail.splitlines() if line.strip()]
  if result.status == "timeout":
    return "timeout"
  refusals = [line for line in lines if "sandbox:" in line]
  errors = [line for line in lines if "Error" in line or "ProgramGone" in line]
  line = (refusals or errors or lines or [""])[-1].split(" (network access")[0]
  return f"{result.status}: {line[:80]}"


@needs_jail
def test_attack_table(attacked):
  """With `-s`, prints how each attack ended under both layers."""
  rows = [f"| {name} | {_reason(attacked['results'][(name, LAYERS_NAMES[0])][1])} | "
          f"{_reason(attacked['results'][(name, LAYERS_NAMES[1])][1])} |" for name in ATTACKS]
  print("\n| attack | jail + audit hook | jail alone |\n|---|---|---|\n" + "\n".join(rows))
  assert len(rows) == len(ATTACKS)


@needs_jail
def test_attacks_end_within_their_time_limit(attacked):
  # 2 x 40 programs, two at a time; each is stopped at TIMEOUT_S at the latest.
  assert attacked["seconds"] < len(attacked["results"]) * (TIMEOUT_S + 2) / 2


@needs_jail
def test_the_same_program_passes_when_it_is_right():
  for python_guard in LAYERS.values():
    result = sandbox.run_program(ANSWER.replace("0", "1"), FAILING_TESTS,
                                 python_guard=python_guard)
    assert result.passed and result.status == "passed", result


@needs_jail
@pytest.mark.parametrize("tests,cheat", [
    ("assert math.isclose(answer(), 1)", "math = type('M', (), {'isclose': staticmethod("
                                         "lambda *a, **k: True)})()"),
    ("assert abs(answer() - 1) < 0.5", "abs = lambda x: 0"),
    ("assert answer()", "class Truthy:\n  def __bool__(self):\n    return True\n"
                        "def answer():\n  return Truthy()"),
    ("assert answer() == 1", "class Same:\n  def __eq__(self, other):\n    return True\n"
                             "def answer():\n  return Same()"),
])
def test_the_program_cannot_stand_in_for_what_the_tests_use(tests, cheat):
  """Names the tests use (a module, a builtin) stay the real ones; objects are not judged."""
  import_math = "import math\n"
  right = sandbox.run_program(import_math + ANSWER.replace("0", "1"), tests)
  assert right.passed, right
  wrong = sandbox.run_program(import_math + ANSWER + cheat, tests)
  assert not wrong.passed and wrong.status == "failed", wrong


@needs_jail
def test_the_harm_checks_see_harm_without_the_jail(world, tmp_path):
  """Positive controls: unisolated and unguarded, the same attacks do harm the checks see."""
  victim = tmp_path / "victim.txt"
  victim.write_text("keep me")
  mark, sleep = _mark(), _sleep_marker()
  program = _fill(ATTACKS["write: absolute path"][1], {**world, "victim": str(victim)}, mark,
                  sleep)
  result = sandbox._run(sandbox.Job(program, "pass"), 10.0, 512, False, False)
  assert result.passed and victim.read_text() == "gone"
  program = _fill(ATTACKS["network: localhost"][1], {**world, "victim": str(victim)}, mark,
                  sleep)
  assert sandbox._run(sandbox.Job(program, "pass"), 10.0, 512, False, False).passed
  world["listener"].setblocking(True)
  world["listener"].settimeout(5)
  world["listener"].accept()[0].close()
  world["listener"].setblocking(False)
  keeper = subprocess.Popen(["sleep", sleep])
  try:
    # Until the child has exec'd, its command line is still the forking process's.
    deadline = time.monotonic() + 10
    while not survivors([sleep]) and time.monotonic() < deadline:
      time.sleep(0.05)
    assert survivors([sleep])
  finally:
    keeper.kill()
    keeper.wait()


@needs_jail
def test_a_setsid_child_dies_with_its_sandbox():
  """Seen on the host while its sandbox runs (so the check works), gone once it ended."""
  mark = _mark()
  program = (f"import os, time\nkeep = open('{mark}', 'w')\nif os.fork() == 0:\n"
             "  os.setsid()\n  time.sleep(60)\ntime.sleep(3)\n")
  seen = []
  watcher = threading.Timer(1.5, lambda: seen.extend(survivors([mark])))
  watcher.start()
  result = sandbox.run_program(program, timeout_s=20, python_guard=False)
  watcher.join()
  assert result.passed, result
  assert len(seen) == 2, seen  # The program and its setsid child, both holding the file.
  assert not survivors([mark])


_SNOOP = textwrap.dedent("""
    import os, sys
    seen = 0
    for pid in os.listdir('/proc'):
      try:
        text = open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace')
      except (OSError, NotADirectoryError):
        continue
      seen += 1
      for entry in text.split('\\0'):
        if entry.startswith('MIDTRAIN_SANDBOX_SECRET='):
          print('FOUND', entry, file=sys.stderr)
    print('SEARCHED', seen, 'environments', file=sys.stderr)
    """)


@needs_jail
@pytest.mark.parametrize("isolated", [True, False])
def test_the_evaluating_process_environment_stays_secret(isolated):
  secret = f"token-{uuid.uuid4().hex}"
  code = ("import sys\nfrom midtrain_jax.evals import sandbox\n"
          f"job = sandbox.Job({_SNOOP!r}, 'pass')\n"
          f"print(sandbox._run(job, 10.0, 512, {isolated}, {not isolated}).detail)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "MIDTRAIN_SANDBOX_SECRET": secret}, check=True,
                       cwd=pathlib.Path(__file__).resolve().parents[2]).stdout
  assert "SEARCHED" in out, out
  if isolated:
    assert secret not in out, out
  else:  # Positive control: without the jail the program reads it from /proc.
    assert f"FOUND MIDTRAIN_SANDBOX_SECRET={secret}" in out, out


@needs_jail
def test_the_jail_mounts_only_what_python_needs():
  program = ("import os, sys\nprint((sorted(os.listdir('/')), os.getuid(), os.getcwd(),"
             " sorted(os.environ), os.listdir('.')), file=sys.stderr)")
  result = sandbox.run_program(program)
  assert result.passed, result
  visible, uid, cwd, env, tmp = eval(result.detail)  # noqa: S307 (our own printout)
  assert set(visible) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc",
                          "sbin", "tmp", "usr", *pathlib.Path(sys.base_prefix).parts[1:2]}
  assert uid == jail.SANDBOX_ID and cwd == jail.WORKDIR and tmp == []
  assert set(env) == set(jail.ENV) | {"PWD"}


_AS_USER = textwrap.dedent("""
    import json
    from midtrain_jax.evals import sandbox
    programs = {
        "uid": "import os, sys\\nprint(os.getuid(), file=sys.stderr)",
        "writes": "import sys\\nfor d in ('/', '/dev', '/etc', '/tmp'):\\n  try:\\n"
                  "    open(d + '/fill', 'w').write('x')\\n    print(d, file=sys.stderr)\\n"
                  "  except OSError:\\n    pass",
        "processes": "import os, sys, time\\nn = 0\\ntry:\\n  while True:\\n"
                     "    if os.fork() == 0:\\n      time.sleep(5)\\n      os._exit(0)\\n"
                     "    n += 1\\nexcept OSError:\\n  print(n, file=sys.stderr)",
    }
    print(json.dumps({k: sandbox.run_program(p, python_guard=False).detail
                      for k, p in programs.items()}))
    """)


@needs_jail
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3") or
                    not shutil.which("runuser"), reason="needs root, runuser and /usr/bin/python3")
def test_the_jail_holds_when_an_ordinary_user_starts_it():
  """Started by a user (not root), bwrap makes the tmpfs root as that user: still read-only."""
  checkout = pathlib.Path(__file__).resolve().parents[2]
  if any(not os.stat(p).st_mode & 0o005 for p in [checkout, *checkout.parents]):
    pytest.skip("the checkout is not readable by other users")
  out = subprocess.run([shutil.which("runuser"), "-u", "nobody", "--", "/usr/bin/python3", "-c",
                        _AS_USER],
                       capture_output=True, text=True, timeout=300, cwd="/",
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(checkout)})
  assert out.returncode == 0, out.stderr
  detail = json.loads(out.stdout.splitlines()[-1])
  assert detail["uid"] == str(jail.SANDBOX_ID)
  assert detail["writes"].split() == [jail.WORKDIR]  # Only the work directory.
  assert 0 < int(detail["processes"]) < sandbox.PROCESSES  # The judge is one of them.


def test_without_a_jail_code_execution_refuses_unless_allowed(monkeypatch):
  monkeypatch.setattr(jail, "bwrap", lambda: None)
  sandbox.isolation_problem.cache_clear()
  try:
    with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap.*--unsafe_exec"):
      sandbox.run_program(ANSWER, FAILING_TESTS)
    from midtrain_jax.evals import suite  # noqa: PLC0415
    with pytest.raises(sandbox.SandboxUnavailable, match="unsafe_exec"):
      suite.evaluate(None, suite.EvalOptions(suite="mbpp"))
    allowed = sandbox.run_program(ANSWER.replace("0", "1"), FAILING_TESTS, unsafe_exec=True)
    assert allowed.passed, allowed
    hooked = sandbox.run_program("import os\nos.system('true')", unsafe_exec=True)
    assert not hooked.passed and "sandbox:" in hooked.detail, hooked
  finally:
    sandbox.isolation_problem.cache_clear()


@needs_jail
def test_a_sandbox_that_failed_to_start_is_launched_again(monkeypatch):
  """bwrap failing before the sandbox exists (a transient fork or memory failure) is retried;
  when it keeps failing, the error says so with bwrap's own words."""
  assert sandbox.isolation_problem() is None  # Checked once, before the failures below.
  real, calls = jail.sandbox_pid, []

  def flaky(info_fd):
    calls.append(info_fd)
    if len(calls) == 1:
      raise jail.SandboxNotStarted("bwrap did not start the sandbox (info: b'')")
    return real(info_fd)

  monkeypatch.setattr(jail, "sandbox_pid", flaky)
  result = sandbox.run_programs([sandbox.Job("answer = 42", "assert answer == 42")] * 2)
  assert [r.passed for r in result] == [True, True] and len(calls) == 3

  def broken(info_fd):
    raise jail.SandboxNotStarted("bwrap did not start the sandbox (info: b'')")

  monkeypatch.setattr(jail, "sandbox_pid", broken)
  with pytest.raises(jail.SandboxNotStarted, match="bwrap said"):
    sandbox.run_program("answer = 42", "assert answer == 42")
