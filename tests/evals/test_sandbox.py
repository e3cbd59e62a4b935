"""The code sandbox: writes confined to its directory, no network or processes."""
import os

from midtrain_jax.evals import sandbox


def test_writes_stay_inside_the_sandbox_directory(tmp_path):
  outside = tmp_path / "outside.txt"
  outside.write_text("keep me")
  inside = ("import os, tempfile\n"
            "open('scratch.txt', 'w').write('ok')\n"
            "os.mkdir('sub'); os.rename('scratch.txt', 'sub/moved.txt')\n"
            "os.remove('sub/moved.txt')\n"
            "with tempfile.NamedTemporaryFile('w') as f: f.write('x')\n")
  assert sandbox.run_program(inside).passed
  attacks = {
      "write": f"open({str(outside)!r}, 'w').write('gone')",
      "append": f"open({str(outside)!r}, 'a').write('more')",
      "os.open": f"import os; os.open({str(outside)!r}, os.O_WRONLY | os.O_TRUNC)",
      "remove": f"import os; os.remove({str(outside)!r})",
      "rename out": f"open('x', 'w').close(); import os; os.rename('x', {str(tmp_path / 'y')!r})",
      "symlink": (f"import os; os.symlink({str(outside)!r}, 'link'); "
                  "open('link', 'w').write('gone')"),
      "chdir": f"import os; os.chdir({str(tmp_path)!r}); open('outside.txt', 'w')",
      "rmtree": f"import shutil; shutil.rmtree({str(tmp_path)!r})",
      "chmod": f"import os; os.chmod({str(outside)!r}, 0o777)",
  }
  for name, program in attacks.items():
    result = sandbox.run_program(program)
    assert not result.passed and "sandbox:" in result.detail, (name, result)
  assert outside.read_text() == "keep me"
  assert oct(os.stat(outside).st_mode & 0o777) != "0o777"


def test_processes_and_network_are_refused():
  for program in ("import subprocess; subprocess.run(['true'])",
                  "import os; os.system('true')",
                  "import os; os.fork()",
                  "import os; os.kill(os.getppid(), 9)",
                  "import socket; socket.socket()",
                  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9')",
                  "import resource; resource.setrlimit(resource.RLIMIT_CPU, (1, 1))"):
    result = sandbox.run_program(program)
    assert not result.passed and "sandbox:" in result.detail, (program, result)
