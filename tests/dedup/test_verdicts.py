"""The verdicts mapping: found by key in any order, iterated in key order, made on demand."""
import random

import numpy as np
import pytest

from midtrain_jax.dedup import deduplicator, verdicts


def _verdict_at(i):
  return deduplicator.Verdict(f"d{i}", "t", i % 2 == 0)


@pytest.mark.parametrize("as_objects", [False, True])
def test_lookups_in_any_order_find_each_key_and_only_those(as_objects):
  rng = random.Random(0)
  keys = sorted({(rng.randrange(3), rng.randrange(50), rng.randrange(-5, 1000))
                 for _ in range(400)})
  table = np.array(keys, np.int64)
  if as_objects:
    table = np.empty(len(keys), object)
    for i, key in enumerate(keys):
      table[i] = key
  found = verdicts.Verdicts(table, _verdict_at)
  assert len(found) == len(keys) and list(found) == keys  # Iterated in key order.
  order = list(range(len(keys)))
  rng.shuffle(order)
  for i in order + list(range(len(keys))):  # At random, then in key order.
    assert found[keys[i]].doc_id == f"d{i}"
  key_set = set(keys)
  for missing in [(3, 0, 0), (0, 0, 1001), (0, 0), (0, 0, 0, 0), ("a", 1, 2), (0, 0, 1 << 64)]:
    if missing not in key_set:
      assert missing not in found
      with pytest.raises(KeyError):
        found[missing]
  assert dict(found.items()) == {k: _verdict_at(i) for i, k in enumerate(keys)}
