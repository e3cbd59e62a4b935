"""The semantic index (banded random-hyperplane LSH) against the all-pairs scan it replaces."""
import math

import numpy as np

from midtrain_jax.dedup import semantic


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _at_cosine(rng, base, cosine):
  """A unit vector at exactly `cosine` from unit `base`."""
  noise = rng.standard_normal(base.shape)
  noise = _unit(noise - (noise @ base) * base)
  return cosine * base + math.sqrt(1 - cosine**2) * noise


def _brute_force(vectors, threshold):
  """The all-pairs reference: each vector against every kept one (the earlier scan)."""
  kept, verdicts = [], []
  for v in vectors:
    scores = np.asarray([k @ v for k in kept]) if kept else np.zeros(0)
    best = int(np.argmax(scores)) if len(scores) else -1
    if best >= 0 and scores[best] >= threshold:
      verdicts.append(best)
    else:
      verdicts.append(None)
      kept.append(v)
  return verdicts


def _indexed(vectors, threshold, max_bucket=0):
  index = semantic.SemanticIndex(threshold, max_bucket)
  verdicts = []
  for v in vectors:
    hit = index.query(v)
    verdicts.append(None if hit is None else hit[0])
    if hit is None:
      index.insert(v)
  return verdicts, index


def test_bands_reach_the_promised_recall_at_the_threshold():
  for threshold in (0.8, 0.9, 0.95, 0.99):
    bands = semantic.bands_for(threshold)
    p = 1 - math.acos(threshold) / math.pi
    assert 1 - (1 - p ** semantic.ROWS) ** bands >= semantic.RECALL
    assert 1 - (1 - p ** semantic.ROWS) ** (bands - 1) < semantic.RECALL  # The fewest.
  # Measured: pairs exactly at the threshold share a band about that often.
  rng = np.random.default_rng(0)
  found = 0
  for _ in range(3000):
    index = semantic.SemanticIndex(0.95)
    base = _unit(rng.standard_normal(48))
    index.insert(base)
    found += index.query(_at_cosine(rng, base, 0.9501)) is not None
  assert found >= 2985  # 0.999 promised; 3000 trials (binomial sd ~1.7).


def test_decisions_equal_the_all_pairs_scan_and_compare_few_documents():
  rng = np.random.default_rng(1)
  originals = _unit(rng.standard_normal((1500, 64))).astype(np.float32)
  copies = [_at_cosine(rng, originals[i], rng.uniform(0.955, 0.999)) for i in range(0, 1500, 3)]
  # Near misses: related documents below the threshold must stay distinct.
  misses = [_at_cosine(rng, originals[i], rng.uniform(0.80, 0.94)) for i in range(1, 1500, 5)]
  vectors = np.concatenate([originals, np.asarray(copies), np.asarray(misses)]).astype(np.float32)
  vectors = vectors[rng.permutation(len(vectors))]
  reference = _brute_force(vectors, 0.95)
  found, index = _indexed(vectors, 0.95)
  duplicates = [i for i, r in enumerate(reference) if r is not None]
  recall = np.mean([found[i] is not None for i in duplicates])
  print(f"recall {recall:.4f} of {len(duplicates)}; scored {index.compared:,} embeddings "
        f"vs {len(vectors) * (len(vectors) - 1) // 2:,} pairs")
  assert len(duplicates) >= 450 and recall >= 0.99
  assert found == reference  # Equal decisions here (a miss has chance <= 0.001 per pair).
  # No all-pairs scan: lookups score a small fraction of the kept documents.
  assert index.compared < 0.02 * len(vectors) ** 2 / 2


def test_a_hot_bucket_is_capped_and_counted():
  rng = np.random.default_rng(2)
  center = _unit(rng.standard_normal(32))
  # Related documents (cosine ~0.8 to a common topic) share band keys with one another.
  vectors = [_at_cosine(rng, center, 0.8) for _ in range(400)]
  _, open_index = _indexed(vectors, 0.95)
  _, capped = _indexed(vectors, 0.95, max_bucket=16)
  assert open_index.buckets.largest > 16 and open_index.buckets.skipped == 0
  assert capped.buckets.capped > 0 and capped.buckets.skipped > 0
  assert capped.compared < open_index.compared
  assert max(len(b) for b in capped.buckets._stored.values()) == 16
