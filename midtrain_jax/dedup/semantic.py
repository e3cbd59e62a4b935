"""The semantic level: documents whose embeddings are close in cosine similarity.

Bring your own embedding model: an `EmbedFn` maps a list of texts to a float
array [N, D] (any D; rows are L2-normalised here). Name it in config or on the
command line as "package.module:function"; the function is imported where the
deduplicator runs (in every Beam worker too), so it must be importable there.
A document is a semantic duplicate of a kept one when their cosine similarity
reaches the threshold (0.95 by default, the setting of OLMo 3's Duplodocus).

The index compares against every kept embedding with one matrix product per
lookup (exact, no approximate neighbours): fine for the hundreds of thousands
of documents of a task; past that, plug in an approximate index.
"""
import importlib
from collections.abc import Callable, Sequence

import numpy as np

EmbedFn = Callable[[Sequence[str]], np.ndarray]

_GROW = 1024


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


class SemanticIndex:
  """Unit embeddings of kept documents; finds the most similar above a threshold."""

  def __init__(self, threshold: float = 0.95):
    self.threshold = threshold
    self._matrix: np.ndarray | None = None
    self._size = 0

  def query(self, vector: np.ndarray) -> tuple[int, float] | None:
    """(stored position, cosine) of the most similar stored embedding at or above
    the threshold (ties to the earliest stored), or None."""
    if not self._size:
      return None
    scores = self._matrix[:self._size] @ vector
    best = int(np.argmax(scores))
    similarity = float(scores[best])
    return (best, similarity) if similarity >= self.threshold else None

  def insert(self, vector: np.ndarray) -> int:
    """Stores a unit embedding; returns its position in insertion order."""
    if self._matrix is None:
      self._matrix = np.zeros((_GROW, len(vector)), np.float32)
    elif self._size == len(self._matrix):
      self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
    self._matrix[self._size] = vector
    self._size += 1
    return self._size - 1
