"""The semantic level: documents whose embeddings are close in cosine similarity.

Bring your own embedding model: an `EmbedFn` maps a list of texts to a float
array [N, D] (any D; rows are L2-normalised here). Name it in config or on the
command line as "package.module:function"; the function is imported where the
deduplicator runs (in every Beam worker too), so it must be importable there.
A document is a semantic duplicate of a kept one when their cosine similarity
reaches the threshold (0.95 by default, the setting of OLMo 3's Duplodocus).

The index is random-hyperplane LSH (Charikar's SimHash over the embedding),
banded: a vector's sign against each of `bands * ROWS` seeded Gaussian
hyperplanes gives one bit, `ROWS` bits make a band key, and a document is
compared (exact cosine, one matrix product over the candidates) only with the
kept documents that share a band key with it; no lookup scans every kept
embedding. Two unit vectors at cosine c agree on one bit with probability
p = 1 - arccos(c) / pi and share some band with probability
1 - (1 - p^ROWS)^bands; `bands` is the fewest that make this at least
`RECALL` at the threshold (more similar pairs are found more surely): at 0.95
that is 22 bands of 12 bits, missing a pair at exactly the threshold with
probability <= 0.001 (measured recall against the all-pairs scan in
tests/dedup/test_semantic.py and benchmarks/dedup.py). A pair at cosine 0
shares a band with probability 22 / 4096 = 0.5%, so unrelated documents
rarely cost a comparison. Buckets are capped like the others (buckets.py).
"""
import functools
import importlib
import math
from collections.abc import Callable, Sequence

import numpy as np

from midtrain_jax.dedup import buckets as buckets_lib

EmbedFn = Callable[[Sequence[str]], np.ndarray]

_GROW = 1024
ROWS = 12  # Bits per band key: a pair at cosine 0 shares a band with chance 2^-12.
RECALL = 0.999  # Chance that a pair exactly at the threshold shares a band.
_MAX_BANDS = 256


def load_embedder(path: str) -> EmbedFn:
  """Imports an embedding function named "package.module:function".

  Raises:
    ValueError: when `path` is not of that form or does not name a callable.
  """
  module_name, sep, attr = path.partition(":")
  if not sep or not module_name or not attr:
    raise ValueError(f"Embedder {path!r} must be 'package.module:function'.")
  fn = getattr(importlib.import_module(module_name), attr, None)
  if not callable(fn):
    raise ValueError(f"Embedder {path!r}: {module_name} has no function {attr!r}.")
  return fn


def embed(fn: EmbedFn, texts: Sequence[str]) -> np.ndarray:
  """Embeds `texts` with `fn`; returns float32 [N, D] rows of unit length (zero rows stay 0).

  Raises:
    ValueError: when `fn` does not return one row per text.
  """
  vectors = np.asarray(fn(list(texts)), np.float32)
  if vectors.ndim != 2 or len(vectors) != len(texts):
    raise ValueError(f"The embedder returned shape {vectors.shape} for {len(texts)} texts; "
                     "expected [N, D].")
  norms = np.linalg.norm(vectors, axis=1, keepdims=True)
  return vectors / np.maximum(norms, 1e-12)


@functools.cache
def bands_for(threshold: float, rows: int = ROWS, recall: float = RECALL) -> int:
  """The fewest bands of `rows` hyperplane bits finding a pair at cosine `threshold`
  with probability `recall` (at most _MAX_BANDS)."""
  p = 1.0 - math.acos(min(max(threshold, -1.0), 1.0)) / math.pi
  hit = p ** rows
  if hit >= 1.0:
    return 1
  return min(_MAX_BANDS, max(1, math.ceil(math.log(1.0 - recall) / math.log(1.0 - hit))))


@functools.cache
def _planes(dim: int, count: int, seed: int) -> np.ndarray:
  """float32 [dim, count] Gaussian hyperplanes, the same for a seed in every process."""
  return np.random.default_rng(seed).standard_normal((dim, count)).astype(np.float32)


def band_keys(vectors: np.ndarray, bands: int, seed: int = 1) -> np.ndarray:
  """int64 [N, bands] band keys of unit vectors [N, D] (band number above ROWS sign bits).

  A batch is one matrix product, so `Deduplicator.fingerprint` computes them
  with the embeddings (on the workers, under Beam).
  """
  bits = (vectors @ _planes(vectors.shape[1], bands * ROWS, seed) >= 0)
  codes = bits.reshape(len(vectors), bands, ROWS) @ (1 << np.arange(ROWS, dtype=np.int64))
  return codes + (np.arange(bands, dtype=np.int64) << ROWS)


class SemanticIndex:
  """Unit embeddings of kept documents; finds the most similar above a threshold.

  Args:
    threshold: cosine similarity of duplicates.
    max_bucket: the most documents one band key stores (0: unbounded).
    seed: seed of the hyperplanes (the same index in every process).
  """

  def __init__(self, threshold: float = 0.95, max_bucket: int = 0, seed: int = 1):
    self.threshold = threshold
    self.bands = bands_for(threshold)
    self.seed = seed
    self.buckets = buckets_lib.Buckets(max_bucket)
    self._matrix: np.ndarray | None = None
    self._size = 0
    self.compared = 0  # Embeddings scored by lookups (an all-pairs scan scores all).

  def band_keys(self, vector: np.ndarray) -> list[int]:
    """One vector's band keys (`band_keys` of a batch of one)."""
    if self._matrix is not None and len(vector) != self._matrix.shape[1]:
      raise ValueError(f"Embedding of size {len(vector)}; the index holds size "
                       f"{self._matrix.shape[1]}: one embedder per deduplication.")
    return band_keys(vector[None], self.bands, self.seed)[0].tolist()

  def query(self, vector: np.ndarray, keys: list[int] | None = None
            ) -> tuple[int, float] | None:
    """(stored position, cosine) of the most similar stored embedding sharing a band
    at or above the threshold (ties to the earliest stored), or None."""
    if not self._size:
      return None
    if len(vector) != self._matrix.shape[1]:
      raise ValueError(f"Embedding of size {len(vector)}; the index holds size "
                       f"{self._matrix.shape[1]}: one embedder per deduplication.")
    found = set()
    for key in keys if keys is not None else self.band_keys(vector):
      found.update(self.buckets.get(key))
    if not found:
      return None
    candidates = np.fromiter(sorted(found), np.int64, len(found))
    self.compared += len(candidates)
    scores = self._matrix[candidates] @ vector
    best = int(np.argmax(scores))  # The first (earliest stored) of the most similar.
    similarity = float(scores[best])
    return (int(candidates[best]), similarity) if similarity >= self.threshold else None

  def insert(self, vector: np.ndarray, keys: list[int] | None = None) -> int:
    """Stores a unit embedding; returns its position in insertion order."""
    if self._matrix is None:
      self._matrix = np.zeros((_GROW, len(vector)), np.float32)
    elif self._size == len(self._matrix):
      self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
    position = self._size
    self._matrix[position] = vector
    self._size += 1
    for key in keys if keys is not None else self.band_keys(vector):
      self.buckets.add(key, position)
    return position
