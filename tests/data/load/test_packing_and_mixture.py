"""Best-fit packing and staged weighted mixing (unit level, no prepared data)."""
import grain
import numpy as np
import pytest

from midtrain_jax.data.load import mixing as mixture
from midtrain_jax.data.load import packing


def test_split_pieces_cover_every_pair_once():
  doc = np.arange(23)
  pieces = packing.split_pieces(doc, 8)
  assert [len(p) for p in pieces] == [9, 9, 7]
  pairs = [(a, b) for p in pieces for a, b in zip(p[:-1], p[1:])]
  assert pairs == list(zip(doc[:-1], doc[1:]))


def test_best_fit_decreasing_fills_bins_tightly():
  rng = np.random.default_rng(0)
  lengths = list(rng.integers(1, 100, size=500))
  bins = packing.best_fit_decreasing(lengths, 100)
  assert sorted(i for b in bins for i in b) == list(range(500))
  loads = [sum(lengths[i] for i in b) for b in bins]
  assert max(loads) <= 100
  # Uniform sizes up to 99 cannot pack perfectly; best-fit gets within 6%.
  assert len(bins) <= 1.06 * np.ceil(sum(lengths) / 100)


def test_best_fit_picks_the_tightest_bin():
  # 60 and 50 open two bins; 40 fills the 60-bin exactly, not the 50-bin.
  assert packing.best_fit_decreasing([60, 50, 40], 100) == [[0, 2], [1]]


def test_assemble_row_segments_positions_and_targets():
  row = packing.assemble_row([(np.array([2, 10, 11, 1]), 3), (np.array([2, 20, 1]), 0)],
                             seq_len=8, pad_id=0)
  assert row["inputs"].tolist() == [2, 10, 11, 2, 20, 0, 0, 0]
  assert row["targets"].tolist() == [10, 11, 1, 20, 1, 0, 0, 0]
  assert row["segment_ids"].tolist() == [1, 1, 1, 2, 2, 0, 0, 0]
  assert row["positions"].tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
  assert row["task_ids"].tolist() == [3, 3, 3, 0, 0, -1, -1, -1]
  assert row["loss_mask"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]  # Training: every target.
  windowed = packing.assemble_row([(np.array([2, 10, 11, 1]), 3), (np.array([2, 20, 1]), 0)],
                                  seq_len=8, pad_id=0, context=[2, 0])
  assert windowed["loss_mask"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
  assert all((windowed[k] == row[k]).all() for k in packing.ROW_KEYS if k != "loss_mask")


def test_eval_windows_overlap_so_every_target_is_scored_once_with_context():
  # 23 pairs in windows of 8 scoring 4 new targets each: [0, 8) all scored,
  # then [4, 12) scoring 8..11, [8, 16), [12, 20), and [15, 23) scoring 20..22.
  assert packing.eval_windows(23, 8, 4) == [(0, 0), (4, 8), (8, 12), (12, 16), (15, 20)]
  assert packing.eval_windows(8, 8, 4) == [(0, 0)] and packing.eval_windows(0, 8, 4) == []
  assert packing.eval_windows(23, 8, 8) == [(0, 0), (8, 8), (15, 16)]
  for bad in (0, 9):
    with pytest.raises(ValueError, match="stride"):
      packing.eval_windows(23, 8, bad)


def test_resolve_stages_errors_name_the_problem():
  rates = {"a": 1.0, "b": 1.0}
  with pytest.raises(ValueError, match="'c' is not in the mixture"):
    mixture.resolve_stages(rates, {"c": 1.0}, ())
  with pytest.raises(ValueError, match="weight of 'a' must be"):
    mixture.resolve_stages(rates, {"a": -1.0}, ())
  with pytest.raises(ValueError, match="all weights are zero"):
    mixture.resolve_stages(rates, {"a": 0.0}, ())
  with pytest.raises(ValueError, match="start at step 0"):
    mixture.resolve_stages(rates, {}, ((5, {"a": 1.0}),))
  with pytest.raises(ValueError, match="strictly"):
    mixture.resolve_stages(rates, {}, ((0, {"a": 1.0}), (0, {"b": 1.0})))
  with pytest.raises(ValueError, match="either"):
    mixture.resolve_stages(rates, {"a": 1.0}, ((0, {"a": 1.0}),))
  names, stages = mixture.resolve_stages(rates, {}, ((0, {"a": 3.0}), (10, {"a": 1, "b": 1})))
  assert names == ["a", "b"]
  assert [(s.start_step, s.weights) for s in stages] == [(0, (1.0, 0.0)), (10, (0.5, 0.5))]


def _task(length, doc_len, value):
  return grain.MapDataset.range(length).map(
      lambda i: {"tokens": np.full(doc_len, value * 1000 + i, np.int32)})


def _mix(stages, tasks, tokens_per_step=100):
  return mixture.StagedMixIterDataset(
      tasks, task_names=[f"t{i}" for i in range(len(tasks))], stages=stages,
      tokens_per_step=tokens_per_step)


def test_mix_matches_token_weights_and_switches_stage():
  tasks = [_task(10_000, 11, 0), _task(10_000, 31, 1)]  # 10 and 30 pairs a doc.
  stages = [mixture.WeightStage(0, (0.25, 0.75)), mixture.WeightStage(50, (1.0, 0.0))]
  it = iter(_mix(stages, tasks))
  tokens = np.zeros(2)
  while it.get_state()["total_tokens"] < 50 * 100:
    doc = next(it)
    tokens[doc["task_id"]] += len(doc["tokens"]) - 1
  assert abs(tokens[0] / tokens.sum() - 0.25) < 0.01
  assert all(next(it)["task_id"] == 0 for _ in range(100))


def test_mix_drops_an_exhausted_task_then_stops():
  it = iter(_mix([mixture.WeightStage(0, (0.5, 0.5))], [_task(3, 5, 0), _task(20, 5, 1)]))
  ids = [doc["task_id"] for doc in it]
  assert ids.count(0) == 3 and ids.count(1) == 20


def test_packed_rows_resume_exactly_mid_window():
  tasks = [_task(5000, int(n), i) for i, n in enumerate((7, 40, 130))]
  mixed = _mix([mixture.WeightStage(0, (0.3, 0.3, 0.4))], tasks)
  ds = packing.BestFitPackIterDataset(mixed, seq_len=64, window_rows=16, pad_id=0, seed=1)
  it = iter(ds)
  for _ in range(21):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(30)]
  resumed = iter(ds)
  resumed.set_state(state)
  for want, got in zip(expected, [next(resumed) for _ in range(30)]):
    for key in packing.ROW_KEYS:
      np.testing.assert_array_equal(want[key], got[key])
