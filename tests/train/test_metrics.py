"""The progress line's MFU (train/metrics.py): named peak, never above 100%."""
import time

from midtrain_jax.train import metrics, peaks

STEP = {"loss": 2.0, "lr": 1e-3, "grad_norm": 0.5}


def _two_logs(tmp_path, peak, capsys):
  logger = metrics.MetricLogger(str(tmp_path), 10, flops_per_token=1e6, peak=peak)
  logger.log(1, STEP)
  logger.count_tokens(1000)
  time.sleep(0.05)
  out = logger.log(2, STEP)
  logger.close()
  return out, capsys.readouterr().out.splitlines()[-1]


def test_progress_line_names_the_peak(tmp_path, capsys):
  # 1000 tokens x 1e6 FLOPs in >= 50 ms: at most 20 GFLOP/s of model FLOPs.
  peak = peaks.Peak(1e15, "v5p bf16", 2)
  out, line = _two_logs(tmp_path, peak, capsys)
  assert 0 < out["mfu"] <= 1e9 * 20 / peak.flops
  assert "% of peak 1,000 TFLOP/s v5p bf16 x 2" in line


def test_rate_above_the_peak_is_an_error_not_mfu_above_100(tmp_path, capsys):
  # 1000 tokens x 1e6 FLOPs take far less than 10 s: above a 0.1 GFLOP/s peak.
  out, line = _two_logs(tmp_path, peaks.Peak(1e8, "measured fp32 xla"), capsys)
  assert "mfu" not in out and out["tokens_per_s"] > 0
  assert "MFU error:" in line and "above the peak 0.1 GFLOP/s" in line
  assert "(peak 0.1 GFLOP/s measured fp32 xla)" in line and "%" not in line
  out, line = _two_logs(tmp_path, None, capsys)
  assert "mfu" not in out and "MFU unknown" in line
