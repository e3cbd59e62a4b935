"""Signal, noise and SNR of metrics over checkpoints and runs (evals/signal_noise.py)."""
import math
import statistics

import numpy as np
import pytest

from midtrain_jax.evals import signal_noise, tables

# Two runs whose last five checkpoints move around final values 2.0 and 2.5.
_STEPS = (10, 20, 30, 40, 50)


def _run(final: float, jitter: float, seed: int) -> dict[int, float]:
  """Five checkpoints whose values spread by `jitter` and end exactly at `final`."""
  offsets = np.random.default_rng(seed).normal(0.0, jitter, len(_STEPS))
  offsets[-1] = 0.0
  return {s: final + float(o) for s, o in zip(_STEPS, offsets)}


def _reference_snr(series: dict[str, dict[int, float]]) -> float:
  """The paper's ratio, computed independently: (max pairwise |difference| of the final
  values / their mean) / (pooled population std / mean of the values behind it)."""
  finals = [s[max(s)] for s in series.values()]
  dispersion = max(abs(a - b) for a in finals for b in finals)
  stds = [statistics.pstdev(s.values()) for s in series.values()]
  pooled = math.sqrt(sum(x * x for x in stds) / len(stds))
  values = [v for s in series.values() for v in s.values()]
  return (dispersion / statistics.fmean(finals)) / (pooled / statistics.fmean(values))


def test_snr_ranks_a_noisy_metric_below_a_clean_one():
  clean = {"a": _run(2.0, 0.01, 0), "b": _run(2.5, 0.01, 1)}
  noisy = {"a": _run(2.0, 0.4, 2), "b": _run(2.5, 0.4, 3)}
  histories = {run: {"eval/bpb/clean": clean[run], "eval/bpb/noisy": noisy[run]}
               for run in ("a", "b")}
  rows = signal_noise.snr_table(histories, k=5)
  assert [r.metric for r in rows] == ["eval/bpb/clean", "eval/bpb/noisy"]
  by_name = {r.metric: r for r in rows}
  for name, series in (("eval/bpb/clean", clean), ("eval/bpb/noisy", noisy)):
    assert by_name[name].snr == pytest.approx(_reference_snr(series), rel=1e-9)
    assert by_name[name].signal == pytest.approx(0.5)
  assert by_name["eval/bpb/clean"].snr > 10 * by_name["eval/bpb/noisy"].snr
  # Same winner on both (lower BPB), but only the clean metric decides it.
  assert by_name["eval/bpb/clean"].winner == by_name["eval/bpb/noisy"].winner == "a"
  assert by_name["eval/bpb/clean"].within_noise is False
  assert by_name["eval/bpb/noisy"].within_noise is True


def test_noise_comes_from_the_last_k_checkpoints_in_step_order():
  # Inserted out of order; the early checkpoints are far off and must not count.
  series = {80: 1.3, 10: 9.0, 70: 1.1, 20: 7.0, 60: 1.2, 50: 1.0, 40: 1.4, 30: 5.0}
  assert signal_noise.last_values(series, 5) == [1.4, 1.0, 1.2, 1.1, 1.3]
  assert signal_noise.run_noise(series, 5) == pytest.approx(
      statistics.pstdev([1.4, 1.0, 1.2, 1.1, 1.3]))
  assert signal_noise.run_noise(series, 0) == pytest.approx(statistics.pstdev(series.values()))
  # Not-a-number checkpoints are skipped, not counted as values.
  assert signal_noise.last_values({**series, 90: math.nan}, 3) == [1.2, 1.1, 1.3]
  with pytest.raises(ValueError, match="k >= 3"):
    signal_noise.run_noise(series, 2)


def test_within_noise_rule_and_direction():
  base = {10: 0.0, 20: 0.2, 30: -0.2}  # Population std: 0.1633.
  sigma = statistics.pstdev(base.values())

  def scored(gap: float, metric: str):
    series = {"x": {s: 0.5 + v for s, v in base.items()},
              "y": {s: 0.5 + gap + v for s, v in base.items()}}
    return signal_noise.metric_snr(metric, series, k=0)
  # Accuracy: higher wins; a margin just under 2 x noise is within noise.
  row = scored(2 * sigma - 1e-6, "olmes/arc_easy:rc/acc_raw")
  assert (row.winner, row.within_noise) == ("y", True)
  assert row.noise == pytest.approx(sigma) and row.margin == pytest.approx(2 * sigma, abs=1e-5)
  row = scored(2 * sigma + 1e-6, "olmes/arc_easy:rc/acc_raw")
  assert (row.winner, row.within_noise) == ("y", False)
  # BPB: lower wins.
  assert scored(1.0, "eval/bpb/math").winner == "x"


def test_one_run_or_one_checkpoint_leaves_signal_or_noise_unknown():
  one_run = signal_noise.metric_snr("eval/bpb/web", {"a": {10: 1.0, 20: 1.1, 30: 1.2}}, k=5)
  assert one_run.noise == pytest.approx(statistics.pstdev([1.0, 1.1, 1.2]))
  assert (one_run.signal, one_run.snr, one_run.winner, one_run.within_noise) == (
      None, None, None, None)
  one_ckpt = signal_noise.metric_snr("eval/bpb/web", {"a": {60: 1.0}, "b": {60: 1.5}}, k=5)
  assert one_ckpt.noise is None and one_ckpt.snr is None
  assert one_ckpt.run_noise == {"a": None, "b": None}
  assert (one_ckpt.winner, one_ckpt.margin, one_ckpt.within_noise) == ("a", 0.5, None)
  assert one_ckpt.signal == pytest.approx(0.5)
  # Two checkpoints are not enough either; a run with three gives the noise alone.
  mixed = signal_noise.metric_snr("eval/bpb/web", {"a": {50: 1.0, 60: 1.1},
                                                   "b": {40: 1.4, 50: 1.6, 60: 1.5}}, k=5)
  assert mixed.run_noise["a"] is None
  assert mixed.noise == pytest.approx(statistics.pstdev([1.4, 1.6, 1.5]))
  # A metric only one run has is not compared; unknown SNRs follow the known ones.
  rows = signal_noise.snr_table({"a": {"m/only_a": {1: 1.0}, "eval/bpb/x": {60: 1.0},
                                       "eval/bpb/y": {40: 1.0, 50: 1.1, 60: 1.0}},
                                 "b": {"eval/bpb/x": {60: 2.0},
                                       "eval/bpb/y": {40: 1.5, 50: 1.4, 60: 1.5}}}, k=5)
  assert [r.metric for r in rows] == ["eval/bpb/y", "eval/bpb/x"]


def test_snr_table_text_marks_decisions_within_noise():
  histories = {"a": {"eval/bpb/clean": _run(2.0, 0.01, 0), "eval/bpb/noisy": _run(2.0, 0.4, 2),
                     "eval/bpb/single": {50: 1.0}},
               "b": {"eval/bpb/clean": _run(2.5, 0.01, 1), "eval/bpb/noisy": _run(2.5, 0.4, 3),
                     "eval/bpb/single": {50: 1.2}}}
  text = tables.format_snr(signal_noise.snr_table(histories, 5), 5)
  lines = text.splitlines()
  assert lines[0].split()[:3] == ["metric", "a", "b"]
  assert lines[1].startswith("eval/bpb/clean") and "WITHIN NOISE" not in lines[1]
  assert lines[2].startswith("eval/bpb/noisy") and lines[2].endswith("a by 0.5 WITHIN NOISE")
  assert lines[3].startswith("eval/bpb/single") and "unknown" in lines[3]
  assert "(noise unknown)" in lines[3] and " 1/1 " in lines[3]
  assert "margin < 2 x noise" in text
