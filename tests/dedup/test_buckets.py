"""Capped hash buckets: bounded candidate lists, the cost counted, decisions deterministic."""
import collections
import random

import pytest

from midtrain_jax.dedup import buckets, components, counts, deduplicator, params, simhash
from tests.dedup import planted
from tests.dedup.test_components import decide


def test_a_full_bucket_keeps_the_earliest_and_counts_the_rest():
  b = buckets.Buckets(cap=2)
  for position in range(5):
    b.add(7, position)
  b.add(8, 5)
  assert b.get(7) == [0, 1] and b.capped == 3 and b.largest == 5
  assert b.skipped == 3  # One lookup of key 7 turned away three comparisons.
  assert b.get(8) == [5] and b.skipped == 3 and b.get(9) == []
  unbounded = buckets.Buckets(cap=0)
  for position in range(500):
    unbounded.add(1, position)
  assert len(unbounded.get(1)) == 500 and unbounded.capped == unbounded.skipped == 0
  with pytest.raises(ValueError, match="cap -1"):
    buckets.Buckets(-1)


def _hot_corpus(n=600, seed=0):
  """Documents of one shared 150-word header and 250 words of their own (Jaccard ~0.23:
  distinct by the rule, yet some band keys come from the header alone: hot buckets),
  then an edited copy of every 10th."""
  rng = random.Random(seed)
  vocabulary = " ".join(planted.prose_documents()[:80]).split()
  header = " ".join(rng.choice(vocabulary) for _ in range(150))
  docs = [(f"d{i}", header + "\n\n" + " ".join(rng.choice(vocabulary) for _ in range(250)))
          for i in range(n)]
  copies = [(f"c{i}", planted.edit_words(text, rng, 0.05, vocabulary))
            for i, (_, text) in enumerate(docs) if i % 10 == 0]
  return docs + copies


def test_hot_bucket_is_bounded_counted_and_still_finds_copies():
  docs = _hot_corpus()
  open_verdicts = decide([("task", docs)], params.DedupParams(max_bucket=0))
  settings = params.DedupParams(max_bucket=16)
  dedup = deduplicator.Deduplicator(settings)
  items = [components.Item((i,), doc_id, "task", fp) for i, ((doc_id, _), fp) in
           enumerate(zip(docs, dedup.fingerprint([text for _, text in docs])))]
  sizes = collections.Counter(k for item in items for k in item.fp.band_keys)
  assert max(sizes.values()) > 16  # The header makes hot buckets...
  verdicts = components.resolve(items, settings)
  total = sum((counts.document_counts(v, 1) for v in verdicts.values()), collections.Counter())
  # ...held to the cap: each member beyond the first 16 by key is compared with those 16 only.
  assert total["capped_inserts"] == sum(n - 16 for n in sizes.values() if n > 16)
  assert total["skipped_comparisons"] == sum((n - 16) * (n - 17) for n in sizes.values() if n > 16)
  assert not any(v.skipped or v.capped for v in open_verdicts.values())
  # The originals are kept and the copies found, capped or not.
  by_id = {v.doc_id: v for v in verdicts.values()}
  assert all(by_id[f"d{i}"].kept for i in range(600))
  copies = [v for v in by_id.values() if v.doc_id.startswith("c")]
  assert sum(not v.kept for v in copies) >= 0.9 * len(copies)
  # Deterministic and independent of the order the items come in (workers send them
  # in any order).
  shuffled = list(items)
  random.Random(1).shuffle(shuffled)
  assert components.resolve(shuffled, settings) == verdicts


def test_simhash_band_capped_and_matches_still_found_through_the_other_bands():
  rng = random.Random(3)
  index = simhash.SimHashIndex(max_distance=3, max_bucket=8)
  shared = 0xBEEF  # The same lowest band (16 bits) for every fingerprint: one hot bucket.
  prints = [(rng.getrandbits(48) << 16) | shared for _ in range(100)]
  for p in prints:
    index.insert(p)
  assert index.buckets.capped == 92 and index.buckets.largest == 100
  near = prints[50] ^ (1 << 40) ^ (1 << 20)  # Two bits from a print turned away from band 0.
  assert index.query(near) == (50, 1 - 2 / 64)
  assert index.buckets.skipped == 92


def test_the_cap_is_a_setting_left_out_of_records_at_its_default():
  assert params.DedupParams().max_bucket == 256
  assert "max_bucket" not in params.DedupParams().as_dict()  # Old fingerprints stay valid.
  record = params.DedupParams(max_bucket=32).as_dict()
  assert record["max_bucket"] == 32 and params.from_config(record).max_bucket == 32
  assert params.from_config(params.DedupParams().as_dict()).max_bucket == 256
  with pytest.raises(ValueError, match="max_bucket"):
    params.DedupParams(max_bucket=-1)
