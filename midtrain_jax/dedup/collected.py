"""The documents of a one-process deduplication, collected as numpy columns.

`Collector` takes documents as they are fingerprinted and keeps of each only
what the decision (components.py) reads, as rows of numpy columns: its key,
doc id and task; its group keys (exact, code: fixed-width digests, so equal
bytes are the same key, with no hashing that could merge two); its bucket keys
and prints per bucket kind (MinHash: int64 band keys and the uint32
signature; SimHash: its band keys and the uint64 print; semantic: band keys
and the float32 embedding); its best reference match. With the default
MinHash settings that is about 0.9 KB per document, against ~10 KB as objects.
`finish` orders them by key (`Collected`): index i is the i-th smallest key.
"""
import dataclasses
from collections.abc import Sequence

import numpy as np

from midtrain_jax.dedup import columns, deduplicator, pairs
from midtrain_jax.dedup import reference as reference_lib
from midtrain_jax.dedup.params import DedupParams

GROUP_LEVELS = ("exact", "code")


@dataclasses.dataclass
class Table:
  """The documents with keys of one group level or bucket kind.

  Attributes:
    docs: int64 [m]: each row's document (its index in key order).
    keys: [m, width]: its group key (uint64 words of the digest, an array) or
      bucket keys (int64, in blocks).
    prints: what its pairs are verified on (bucket kinds, in blocks; None for groups).
  """
  docs: np.ndarray
  keys: np.ndarray | columns.Blocks
  prints: columns.Blocks | None = None


@dataclasses.dataclass
class Collected:
  """Every document's columns; documents are numbered in key order.

  Attributes:
    keys: the keys in order: int64 [n, k] when every key is a tuple of k ints,
      else an object array [n].
    rows: int64 [n]: each document's row in the per-row columns below.
    doc_ids: the doc ids, by row.
    tasks: int32 [n]: each document's task (a number into task_names), in key order.
    task_names: the tasks.
    reference: each document's best reference match, in key order: level rank
      (int8, -1 for none), -similarity (float64) and id (int32 into reference_ids).
    reference_ids: the reference documents that some document matches.
    skipped: int64 [n]: comparisons the reference set's cap skipped, in key order.
    groups: {level: Table} of the group levels on.
    kinds: {kind: Table} of the bucket kinds documents landed in.
  """
  keys: np.ndarray
  rows: np.ndarray
  doc_ids: columns.StringTable
  tasks: np.ndarray
  task_names: list[str]
  reference: tuple[np.ndarray, np.ndarray, np.ndarray]
  reference_ids: list[str]
  skipped: np.ndarray
  groups: dict[str, Table]
  kinds: dict[str, Table]

  def __len__(self) -> int:
    return len(self.rows)

  def doc_id(self, i: int) -> str:
    return self.doc_ids[int(self.rows[i])]


class _Rows:
  """The columns of one group level or bucket kind, filled as documents come."""

  def __init__(self, key_dtype, prints: bool):
    self.docs = columns.Column(np.int64)
    self.keys = columns.Column(key_dtype, None)
    self.prints = columns.Column(None, None) if prints else None  # The kind's own dtype.

  def append(self, docs, keys, prints=None) -> None:
    self.docs.append(docs)
    self.keys.append(keys)
    if self.prints is not None:
      self.prints.append(prints)

  def finish(self, order: np.ndarray) -> Table:
    """The table, its documents renumbered from rows to key order (`order[row]`)."""
    docs = order[self.docs.finish()]
    if self.prints is None:  # Group keys: small; a digest as uint64 words, sortable.
      keys = self.keys.finish()
      keys = np.pad(keys, ((0, 0), (0, -keys.shape[1] % 8)))
      return Table(docs, np.ascontiguousarray(keys).view(np.uint64))
    # Bucket keys and prints are most of the memory: left in their blocks.
    return Table(docs, self.keys.blocks(), self.prints.blocks())


class Collector:
  """Collects documents for the decision as they are fingerprinted.

  Args:
    params: the settings (the levels on).
    reference: (doc id, fingerprint) of the reference set; each document's
      best match is found as it is added.
  """

  def __init__(self, params: DedupParams,
               reference: Sequence[tuple[str, deduplicator.Fingerprint]] = ()):
    self.params = params
    self._reference = reference_lib.Reference(reference, params)
    self._keys, self._ids = columns.Keys(), columns.Strings()
    self._tasks = columns.Column(np.int32)
    self._matches = [columns.Column(np.int8), columns.Column(np.float64),
                     columns.Column(np.int32), columns.Column(np.int64)]
    self._task_names: dict[str, int] = {}
    self._reference_ids: dict[str, int] = {}
    self._tables: dict[str, _Rows] = {}
    self.rows = 0

  def add(self, keys: Sequence[tuple], doc_ids: Sequence[str], task: str,
          fps: Sequence[deduplicator.Fingerprint]) -> None:
    """Adds a batch of one task's documents (any order; keys unique over all batches).

    Raises:
      ValueError: when the batch's lists differ in length, or a group key's
        width differs from its level's.
    """
    keys, doc_ids, fps = list(keys), list(doc_ids), list(fps)
    if not len(keys) == len(doc_ids) == len(fps):
      raise ValueError(f"A batch of {len(keys)} keys, {len(doc_ids)} doc ids and {len(fps)} "
                       "fingerprints: one of each per document.")
    if not fps:
      return
    rows = np.arange(self.rows, self.rows + len(fps), dtype=np.int64)
    self._keys.append(keys)
    self._ids.append(doc_ids)
    self._tasks.append(np.full(len(fps), self._task_names.setdefault(task, len(self._task_names)),
                               np.int32))
    self._add_matches(fps)
    for level in GROUP_LEVELS:
      found = [(i, key) for i, fp in enumerate(fps)
               for name, key in pairs.group_keys(fp, self.params) if name == level]
      if found:
        self._add_group(level, rows[[i for i, _ in found]], [key for _, key in found])
    for kind in pairs.KINDS:
      found, bucket_keys, prints = pairs.kind_rows(kind, fps, self.params)
      if found:
        self._table(kind, np.int64, True).append(rows[found], bucket_keys, prints)
    self.rows += len(fps)

  def _table(self, name: str, key_dtype, prints: bool) -> _Rows:
    if name not in self._tables:
      self._tables[name] = _Rows(key_dtype, prints)
    return self._tables[name]

  def _add_group(self, level: str, rows: np.ndarray, keys: list[bytes]) -> None:
    table = self._table(level, np.uint8, False)
    width = table.keys.shape[0] if table.keys.shape is not None else len(keys[0])
    if any(len(key) != width for key in keys):
      raise ValueError(f"{level} keys of {sorted({len(k) for k in keys} | {width})} bytes: "
                       "the keys of a level are digests of one width.")
    table.append(rows, np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), width))

  def _add_matches(self, fps) -> None:
    """Each document's best reference match (level rank, -similarity, id) and skipped."""
    found = [self._reference.match(fp) for fp in fps]
    ids = [self._reference_ids.setdefault(best[2], len(self._reference_ids))
           if best is not None else -1 for best, _ in found]
    self._matches[0].append([best[0] if best is not None else -1 for best, _ in found])
    self._matches[1].append([best[1] if best is not None else 0.0 for best, _ in found])
    self._matches[2].append(ids)
    self._matches[3].append([skipped for _, skipped in found])

  def finish(self) -> Collected:
    """The documents in key order; the collector is left empty.

    Raises:
      ValueError: naming two documents of the same key.
    """
    keys = self._keys.finish()
    doc_ids = self._ids.finish()
    rows = _key_order(keys)
    keys = keys[rows]
    _check_unique(keys, rows, doc_ids)
    order = np.empty(len(rows), np.int64)
    order[rows] = np.arange(len(rows))
    tables = {name: rows_.finish(order) for name, rows_ in self._tables.items()}
    self._tables = {}
    rank, score, ids, skipped = (column.finish()[rows] for column in self._matches)
    return Collected(
        keys=keys, rows=rows, doc_ids=doc_ids, tasks=self._tasks.finish()[rows],
        task_names=list(self._task_names), reference=(rank, score, ids),
        reference_ids=list(self._reference_ids), skipped=skipped,
        groups={k: v for k, v in tables.items() if k in GROUP_LEVELS},
        kinds={k: v for k, v in tables.items() if k in pairs.KINDS})


def _key_order(keys: np.ndarray) -> np.ndarray:
  """int64 [n]: the rows in key order (stable: equal keys in the order they came)."""
  if keys.dtype == object:
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), np.int64)
  return np.lexsort(keys.T[::-1]).astype(np.int64) if keys.shape[1] else \
      np.arange(len(keys), dtype=np.int64)


def _check_unique(keys: np.ndarray, rows: np.ndarray, doc_ids: columns.StringTable) -> None:
  """Raises ValueError naming two documents of the same key (`keys` sorted)."""
  if keys.dtype == object:
    same = [i for i in range(1, len(keys)) if keys[i] == keys[i - 1]][:1]
  else:
    same = np.flatnonzero((keys[1:] == keys[:-1]).all(axis=1))[:1] + 1
  for i in same:
    key = keys[i] if keys.dtype == object else tuple(keys[i].tolist())
    raise ValueError(f"Documents {doc_ids[int(rows[i - 1])]!r} and {doc_ids[int(rows[i])]!r} "
                     f"have the same key {key!r}: every document needs a unique key.")
