"""The main job prints its own lines, not library logs."""
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_TINY = ["--config=configs/pretrain.py:size=tiny", "--config.train.steps=4",
         "--config.train.log_every_steps=2", "--config.optim.schedule=constant",
         "--config.optim.warmup_steps=0", "--config.model.d_model=64",
         "--config.model.n_layers=2", "--config.model.mlp_dim=128", "--config.data.seq_len=64",
         "--config.data.batch_size=8", "--config.ckpt.every_steps=4", "--config.eval.batches=1"]
# absl's line prefix, e.g. "I1122 01:04:45.913654 1400856 logging_writer.py:48]", and the
# C++ logs of TensorFlow and XLA, e.g. "I0000 00:00:1795308865.98 2626 port.cc:153]".
_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\]")


def _run(workdir, *extra):
  result = subprocess.run([sys.executable, "-m", "midtrain_jax.main", *_TINY,
                           f"--workdir={workdir}", *extra],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return (result.stdout + result.stderr).splitlines()


def test_tiny_pretrain_prints_progress_and_no_library_logs(tmp_path):
  lines = _run(tmp_path / "quiet")
  assert not [l for l in lines if _LOG_LINE.match(l)], "\n".join(lines)
  assert not [l for l in lines if "absl::InitializeLog" in l]
  assert any(l.startswith("step 2/4 | loss") for l in lines)
  assert any(l.startswith("final step=4 loss=") for l in lines)
  assert len(lines) < 15, "\n".join(lines)
  verbose = _run(tmp_path / "verbose", "--log_level=info")
  assert [l for l in verbose if _LOG_LINE.match(l)]  # The switch brings them back.
