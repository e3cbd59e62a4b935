"""The README's quickstart is what CI runs."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / "README.md").read_text()
  block = re.search(r"## Quickstart\n\n```bash\n(.*?)```", readme, re.S).group(1)
  commands = [line for line in block.splitlines() if line and not line.startswith("#")]
  assert len(commands) == 2, commands  # Exactly two commands: main job, tests.
  assert "midtrain_jax.main" in commands[0]
  assert commands[1] in (ROOT / ".ci" / "run").read_text()
