"""The verdicts of a one-process deduplication as a mapping built on demand from arrays.

A dict of a Verdict object per document would cost more than the decision's
own arrays; `Verdicts` holds the sorted keys and makes a document's Verdict
when it is looked up (its callers read each once, in key order).
"""
import bisect
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from midtrain_jax.dedup import columns, deduplicator

_ITER_CHUNK = 4096  # Keys turned into tuples at once while iterating.


class Verdicts(Mapping):
  """{key: Verdict} of every document, iterated in key order.

  Args:
    keys: the sorted keys: int64 [n, k] (tuples of k ints) or an object array [n].
    verdict_at: the Verdict of the i-th document in key order.
  """

  def __init__(self, keys: np.ndarray, verdict_at: Callable[[int], deduplicator.Verdict]):
    self._objects = keys if keys.dtype == object else None
    # Column-major: each column is contiguous, so a binary search reads no copy.
    self._columns = None if keys.dtype == object else np.ascontiguousarray(keys.T)
    self._size = len(keys)
    self._verdict_at = verdict_at
    self._last = -1  # The last index found: lookups in key order check the next first.

  def __len__(self) -> int:
    return self._size

  def __iter__(self) -> Iterator[tuple]:
    if self._objects is not None:
      yield from self._objects
      return
    for start in range(0, self._size, _ITER_CHUNK):
      yield from map(tuple, self._columns[:, start:start + _ITER_CHUNK].T.tolist())

  def __getitem__(self, key) -> deduplicator.Verdict:
    return self._verdict_at(self.index(key))

  def index(self, key) -> int:
    """The position of `key` in key order.

    Raises:
      KeyError: when no document has `key`.
    """
    if self._objects is not None:
      return self._object_index(key)
    if not columns.int_row(key) or len(key) != len(self._columns):
      raise KeyError(key)
    following = self._last + 1
    if following < self._size and tuple(self._columns[:, following].tolist()) == key:
      self._last = following
      return following
    lo, hi = 0, self._size
    for column, value in zip(self._columns, key):
      part = column[lo:hi]
      lo, hi = lo + int(np.searchsorted(part, value, "left")), \
          lo + int(np.searchsorted(part, value, "right"))
      if lo == hi:
        raise KeyError(key)
    self._last = lo
    return lo

  def _object_index(self, key) -> int:
    try:
      i = bisect.bisect_left(self._objects, key)
    except TypeError:  # A key of another type than the documents': not one of them.
      raise KeyError(key) from None
    if i == self._size or self._objects[i] != key:
      raise KeyError(key)
    return i
