"""Logical loader shards: the global batch does not depend on the process count."""
import json

import numpy as np
import pytest

from midtrain_jax.data.load import pipeline
from tests.data import demo_data


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_global_batch_is_the_same_for_one_or_two_processes():
  cfg = demo_data.data_cfg(seq_len=128, batch_size=8, loader_shards=2)
  single = pipeline.make_train_iterator(cfg, seed=3)
  halves = [pipeline.make_train_iterator(cfg, seed=3, process_index=i, process_count=2)
            for i in range(2)]
  for _ in range(4):
    whole = next(single)
    parts = [next(h) for h in halves]
    assert whole["inputs"].shape == (8, 128) and parts[0]["inputs"].shape == (4, 128)
    for key in whole:
      np.testing.assert_array_equal(whole[key], np.concatenate([p[key] for p in parts]))
  # Counters cover both shards.
  assert sum(c["docs"] for c in single.counters().values()) == sum(
      c["docs"] for h in halves for c in h.counters().values())


def test_sharded_iterator_resumes_exactly():
  cfg = demo_data.data_cfg(seq_len=128, batch_size=8, loader_shards=4)
  first = pipeline.make_train_iterator(cfg, seed=1, process_index=1, process_count=2)
  _take(first, 3)
  state = json.loads(json.dumps(first.get_state()))
  expected = _take(first, 3)
  resumed = pipeline.make_train_iterator(cfg, seed=1, process_index=1, process_count=2)
  resumed.set_state(state)
  for want, got in zip(expected, _take(resumed, 3)):
    np.testing.assert_array_equal(want["inputs"], got["inputs"])


def test_bad_loader_shards():
  with pytest.raises(ValueError, match="loader_shards=3 is not divisible by the 2"):
    pipeline.make_train_iterator(demo_data.data_cfg(batch_size=6, loader_shards=3),
                                 seed=0, process_count=2)
  with pytest.raises(ValueError, match="batch_size=6 is not divisible by 4 loader shards"):
    pipeline.make_train_iterator(demo_data.data_cfg(batch_size=6, loader_shards=4), seed=0)
