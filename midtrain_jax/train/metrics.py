"""FLOPs accounting and metric writing (TensorBoard + a progress line); peaks are in peaks.py."""
import math
import time
from collections.abc import Mapping

import jax
import numpy as np

from midtrain_jax import logs
from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig
from midtrain_jax.train import peaks

metric_writers = logs.quiet_import("clu.metric_writers")


def param_count(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def inactive_expert_params(cfg: ModelConfig) -> int:
  """Expert parameters a token does not use: (experts - top_k) experts per MoE layer."""
  n_moe = sum(cfg.layer_is_moe(i) for i in range(cfg.n_layers))
  per_expert = 3 * cfg.d_model * cfg.expert_mlp_dim
  return n_moe * (cfg.moe_experts - cfg.moe_top_k) * per_expert


def flops_per_token(cfg: ModelConfig, n_params: int, seq_len: int) -> float:
  """Training FLOPs per token: 6 * active matmul params + attention over the visible keys.

  Matmul params are all params except the input embedding (the output
  projection counts, tied or not) and, in MoE layers, the experts a token is
  not routed to (only top_k of them run; the router counts). Attention costs
  12 * heads * head_dim * keys per layer, with keys = the window for
  sliding-window layers and seq_len for full ones (not halved for causality,
  matching the PyTorch reference).
  """
  embedding = cfg.padded_vocab_size * cfg.d_model
  matmul_params = (n_params - embedding + (embedding if cfg.tie_embeddings else 0)
                   - inactive_expert_params(cfg))
  attn_width = cfg.n_heads * cfg.head_dim
  keys = sum(seq_len if w == FULL_ATTENTION else min(w, seq_len) for w in cfg.layer_windows())
  return 6.0 * matmul_params + 12.0 * attn_width * keys


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class MetricLogger:
  """Writes scalars to TensorBoard (process 0) and prints one progress line per log step."""

  def __init__(self, workdir: str, total_steps: int, flops_per_token: float,
               peak: peaks.Peak | None):
    """`peak`: the run's peak in the compute dtype (`peaks.run_peak`); None: no MFU."""
    self.is_main = jax.process_index() == 0
    # TensorBoard events only: the progress line is the console output, so
    # clu's logging writer (which echoes every scalar) is not used.
    self.writer = (metric_writers.SummaryWriter(workdir) if self.is_main
                   else metric_writers.MultiWriter([]))
    self.total_steps = total_steps
    self.flops_per_token = flops_per_token
    self.peak = peak
    self._last_time = None
    self._last_step = None
    self._tokens_since = 0.0

  def count_tokens(self, tokens: float):
    self._tokens_since += tokens

  def log(self, step: int, scalars: Mapping[str, float],
          extra: Mapping[str, float] = ()) -> dict[str, float]:
    """Writes `scalars` and `extra` at `step` and prints the progress line.

    Args:
      step: steps completed.
      scalars: the train step's metrics (loss, lr, grad_norm, ...).
      extra: further scalars (per-task token counts, ...), written only.

    Returns:
      `scalars` with tokens_per_s, mfu and step_time_s since the last log
      (none at the first); no mfu where the rate was above the peak.
    """
    now = time.perf_counter()
    out, mfu_error = dict(scalars), ""
    if self._last_time is not None and step > self._last_step:
      elapsed = now - self._last_time
      tok_s = self._tokens_since / elapsed
      out["tokens_per_s"] = tok_s
      out["step_time_s"] = elapsed / (step - self._last_step)
      if self.peak is not None:
        try:
          out["mfu"] = peaks.mfu(tok_s, self.flops_per_token, self.peak.flops)
        except peaks.AbovePeakError as e:
          mfu_error = str(e)
    self._last_time, self._last_step, self._tokens_since = now, step, 0.0
    self.writer.write_scalars(step, {**out, **dict(extra)})
    if self.is_main:
      print(self.progress_line(step, out, mfu_error), flush=True)
    return out

  def progress_line(self, step: int, m: Mapping[str, float], mfu_error: str = "") -> str:
    """One line of a log step's metrics; `mfu_error`: why `m` has no mfu."""
    parts = [f"step {step}/{self.total_steps}", f"loss {m['loss']:.4f}", f"lr {m['lr']:.2e}",
             f"gnorm {m['grad_norm']:.3f}"]
    if "moe_load_balance" in m:
      parts.append(f"moe lb {m['moe_load_balance']:.3f} max-load {m['expert_load_max']:.2f}")
    if "tokens_per_s" in m:
      eta = (self.total_steps - step) * m["step_time_s"]
      parts += [f"{m['tokens_per_s']:,.0f} tok/s", self._mfu_text(m, mfu_error),
                f"ETA {_duration(eta)}"]
    return " | ".join(parts)

  def _mfu_text(self, m: Mapping[str, float], mfu_error: str) -> str:
    if self.peak is None:
      return "MFU unknown (no peak that passed the physical check)"
    if "mfu" not in m:
      return f"MFU error: {mfu_error} ({self.peak.describe()})"
    return f"MFU {100 * m['mfu']:.1f}% of {self.peak.describe()}"

  def write(self, step: int, scalars: Mapping[str, float]):
    self.writer.write_scalars(step, dict(scalars))

  def close(self):
    self.writer.flush()
    self.writer.close()
