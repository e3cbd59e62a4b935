"""Signal and noise of evaluation metrics across checkpoints and runs.

Following Heineman et al. 2025 ("Signal and Noise: A Framework for Reducing
Uncertainty in Language Model Evaluation"), for one metric and a set of
compared runs:

* noise: the spread of the metric over the last k checkpoints of a run, the
  standard deviation of those k values (numpy's `std`, ddof=0, as the paper's
  code computes it). Runs with fewer than `MIN_CHECKPOINTS` values have no
  noise estimate (unknown, never made up); the noise of several runs is
  pooled as the root mean square of their standard deviations. Relative
  noise is that over the mean of the values it was computed from.
* signal: the spread of the compared runs' final values, max - min (the
  largest pairwise difference, the paper's dispersion); relative signal is
  that over the mean of the final values.
* SNR = relative signal / relative noise (the paper's ratio of relative
  dispersion to relative standard deviation). A metric with a high SNR
  separates the runs by more than it moves between neighbouring checkpoints
  of one run; one with a low SNR ranks them by chance.

A decision is the winner of the compared runs on a metric (the best final
value: lowest for BPB and losses, highest otherwise). It is taken within
noise when the winner's margin over the runner-up is less than
`WITHIN_NOISE` (2) times the pooled noise: two final values that are each a
draw with standard deviation `noise` differ by less than that about half of
the time (2 / sqrt(2) = 1.4 standard deviations of their difference), so
such a decision could go the other way at a neighbouring checkpoint.

The noise of the last k checkpoints includes any trend over them: on a short
anneal whose metric is still falling, evaluate checkpoints close together
(`eval.every_steps`) so the last k span the end of the run.

Pure functions of `{run: {metric: {step: value}}}` histories; where the
values come from is `evals/history.py`.
"""
import dataclasses
import math
from collections.abc import Mapping

import numpy as np

# Fewer values than this give no noise estimate.
MIN_CHECKPOINTS = 3
# A winner's margin below this many times the noise is a decision within noise.
WITHIN_NOISE = 2.0

Series = Mapping[int, float]  # step -> value of one metric in one run.


@dataclasses.dataclass(frozen=True)
class MetricSNR:
  """One metric's signal and noise over the compared runs.

  Attributes:
    metric: its name.
    lower_is_better: which way the winner is chosen.
    finals: {run: (step, value)} of each run's last evaluated checkpoint.
    run_noise: {run: standard deviation over its last k values or None}.
    checkpoints: {run: how many values its noise used (all it has, up to k)}.
    noise: pooled standard deviation in the metric's units (None: unknown).
    relative_noise: noise over the mean of the values behind it.
    signal: max - min of the final values (None: fewer than two runs).
    relative_signal: signal over the mean of the final values.
    snr: relative_signal / relative_noise (None where either is unknown).
    winner: the run with the best final value (None: fewer than two runs).
    margin: how much better the winner is than the runner-up (>= 0).
    within_noise: margin < WITHIN_NOISE * noise (None: noise unknown).
  """
  metric: str
  lower_is_better: bool
  finals: dict[str, tuple[int, float]]
  run_noise: dict[str, float | None]
  checkpoints: dict[str, int]
  noise: float | None
  relative_noise: float | None
  signal: float | None
  relative_signal: float | None
  snr: float | None
  winner: str | None
  margin: float | None
  within_noise: bool | None


def lower_is_better(metric: str) -> bool:
  """Bits per byte and losses improve downwards; scores (accuracy, pass@1) upwards."""
  name = metric.lower()
  return "bpb" in name or "loss" in name


def check_k(k: int) -> None:
  """k: checkpoints per run behind the noise; 0 = all of them, else at least 3."""
  if k != 0 and k < MIN_CHECKPOINTS:
    raise ValueError(f"The noise needs the last k >= {MIN_CHECKPOINTS} checkpoints of a run "
                     f"(or k=0: all of them); got k={k}.")


def last_values(series: Series, k: int) -> list[float]:
  """The finite values of the last k checkpoints by step (k=0: every checkpoint)."""
  check_k(k)
  values = [float(series[s]) for s in sorted(series) if math.isfinite(series[s])]
  return values[-k:] if k else values


def run_noise(series: Series, k: int) -> float | None:
  """Standard deviation of one run's last k values (None: fewer than MIN_CHECKPOINTS)."""
  values = last_values(series, k)
  return float(np.std(values)) if len(values) >= MIN_CHECKPOINTS else None


def _relative(spread: float, values: list[float]) -> float | None:
  """spread / |mean of values| (None when the mean is zero: nothing to be relative to)."""
  mean = abs(float(np.mean(values)))
  return spread / mean if mean > 0 else None


def metric_snr(metric: str, series: Mapping[str, Series], k: int,
               lower: bool | None = None) -> MetricSNR:
  """Signal, noise, SNR and the decision of one metric over the compared runs.

  Args:
    metric: its name (its direction comes from it unless `lower` is given).
    series: {run: {step: value}}; runs without a finite value are left out.
    k: checkpoints per run behind the noise (0 = all; else >= MIN_CHECKPOINTS).
    lower: whether lower values are better (None: `lower_is_better(metric)`).

  Returns:
    The metric's `MetricSNR`.
  """
  check_k(k)
  lower = lower_is_better(metric) if lower is None else lower
  finals, noises, used, pooled = {}, {}, {}, []
  for run, values in series.items():
    finite = {s: v for s, v in values.items() if math.isfinite(v)}
    if not finite:
      continue
    step = max(finite)
    finals[run] = (step, float(finite[step]))
    used[run] = len(last_values(finite, k))
    noises[run] = run_noise(finite, k)
    if noises[run] is not None:
      pooled += last_values(finite, k)
  known = [n for n in noises.values() if n is not None]
  noise = float(np.sqrt(np.mean(np.square(known)))) if known else None
  relative_noise = _relative(noise, pooled) if known else None
  signal = relative_signal = winner = margin = None
  if len(finals) >= 2:
    values = [v for _, v in finals.values()]
    signal = max(values) - min(values)
    relative_signal = _relative(signal, values)
    ranked = sorted(finals, key=lambda r: finals[r][1], reverse=not lower)
    winner = ranked[0]
    margin = abs(finals[ranked[0]][1] - finals[ranked[1]][1])
  snr = None
  if relative_signal is not None and relative_noise is not None:
    snr = relative_signal / relative_noise if relative_noise > 0 else math.inf
  within = None if noise is None or margin is None else margin < WITHIN_NOISE * noise
  return MetricSNR(metric=metric, lower_is_better=lower, finals=finals, run_noise=noises,
                   checkpoints=used, noise=noise, relative_noise=relative_noise,
                   signal=signal, relative_signal=relative_signal, snr=snr, winner=winner,
                   margin=margin, within_noise=within)


def snr_table(histories: Mapping[str, Mapping[str, Series]], k: int) -> list[MetricSNR]:
  """Every metric the runs share, ranked by SNR (highest first; unknown SNR last).

  Args:
    histories: {run: {metric: {step: value}}}.
    k: checkpoints per run behind the noise (0 = all; else >= MIN_CHECKPOINTS).

  Returns:
    One `MetricSNR` per metric that at least two runs have; those without an
    SNR follow, by relative signal (largest first), then by name.
  """
  check_k(k)
  metrics = sorted({m for h in histories.values() for m in h})
  rows = []
  for metric in metrics:
    series = {run: h[metric] for run, h in histories.items() if h.get(metric)}
    if len(series) >= 2:
      rows.append(metric_snr(metric, series, k))

  def order(row: MetricSNR):
    known = row.snr is not None
    signal = row.relative_signal if row.relative_signal is not None else -math.inf
    return (not known, -(row.snr if known else signal), row.metric)
  return sorted(rows, key=order)
