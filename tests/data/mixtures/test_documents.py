"""The held-out sample: a bottom-k hash sample of the whole source, in any read order."""
import hashlib
import math

import numpy as np

from midtrain_jax.data.mixtures import documents


def _texts(n: int) -> list[str]:
  return [f"document {i}: " + "word " * (i % 7) for i in range(n)]


def _split(texts: list[str], fraction: float, max_docs: int) -> tuple[list[str], list[str]]:
  """(held out, trained on) as the preparation routes them."""
  sample = documents.HeldoutSample(fraction, max_docs)
  train = [t for t in (sample.offer(text) for text in texts) if t is not None]
  return sample.documents(), train


def _hash(text: str) -> int:
  return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _candidate(text: str, fraction: float) -> bool:
  """The candidate rule, computed here independently of the module (the one
  every format has used: the hash's millionth under the fraction)."""
  return _hash(text) % 1_000_000 < fraction * 1_000_000


def _key(text: str) -> tuple[int, int]:
  """The sample's order: the hash's millionth, then the whole hash."""
  return _hash(text) % 1_000_000, _hash(text)


def test_under_the_cap_about_the_fraction_is_held_out():
  texts = _texts(40_000)
  held, train = _split(texts, 0.05, 10_000)
  expected, sd = 0.05 * len(texts), math.sqrt(len(texts) * 0.05 * 0.95)
  assert abs(len(held) - expected) < 4 * sd
  assert sorted(held + train) == sorted(texts)  # Every document in exactly one split.
  assert set(held) == {t for t in texts if _candidate(t, 0.05)}


def test_over_the_cap_the_smallest_keys_of_the_whole_source_are_held_out():
  """The cap keeps the k smallest keys: spread over the whole source, not its
  first candidates in read order (what stopping at the cap gave)."""
  texts = _texts(20_000)
  held, train = _split(texts, 0.05, 100)
  candidates = sorted((t for t in texts if _candidate(t, 0.05)), key=_key)
  assert len(candidates) > 500
  assert held == candidates[:100]  # By increasing key.
  assert sorted(held + train) == sorted(texts)
  where = np.asarray([texts.index(t) for t in held])
  first_candidates = [i for i, t in enumerate(texts) if t in set(candidates)][:100]
  assert max(first_candidates) < 0.25 * len(texts)
  assert where.max() > 0.9 * len(texts) and abs(where.mean() / len(texts) - 0.5) < 0.1


def test_the_sample_is_the_same_in_any_read_order():
  texts = _texts(5_000)
  held, train = _split(texts, 0.1, 50)
  for seed in range(3):
    order = np.random.default_rng(seed).permutation(len(texts))
    held_p, train_p = _split([texts[i] for i in order], 0.1, 50)
    assert held_p == held and sorted(train_p) == sorted(train)


def test_no_candidates_or_no_room_means_everything_is_trained_on():
  texts = _texts(300)
  for fraction, max_docs in ((0.0, 100), (0.5, 0)):
    held, train = _split(texts, fraction, max_docs)
    assert held == [] and train == texts
