"""Exact duplicates: documents whose normalised text (text.normalize) is the same.

The key is a 16-byte blake2b digest of the normalised text, so copies that
differ only in case, Unicode normal form or white space are one document;
a collision needs 2^64 documents.
"""
from collections.abc import Sequence

from midtrain_jax.dedup import text as text_lib


def exact_keys(texts: Sequence[str]) -> list[bytes]:
  """The exact-duplicate key of every document.

  Args:
    texts: documents.

  Returns:
    One 16-byte key per document.
  """
  return [text_lib.digest(text_lib.normalize(t)) for t in texts]


class KeyIndex:
  """Documents by a key (exact or structural): the first stored wins a key."""

  def __init__(self):
    self._first: dict[bytes, int] = {}

  def query(self, key: bytes | None) -> tuple[int, float] | None:
    """(position of the document stored under `key`, similarity 1.0), or None."""
    if key is None or key not in self._first:
      return None
    return self._first[key], 1.0

  def insert(self, key: bytes | None, position: int) -> None:
    """Stores `position` under `key` unless the key is taken (or None)."""
    if key is not None:
      self._first.setdefault(key, position)
