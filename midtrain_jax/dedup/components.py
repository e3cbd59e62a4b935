"""Deduplication decided as connected components over verified pairs; the best copy is kept.

The one semantics of every runner (prepare, the `python -m midtrain_jax.dedup`
command, locally here and on Beam in beam_components.py):

  keys      every document has a canonical key, a sortable tuple, unique; a
            smaller key is the better copy (prepare: task rank in the dedup
            priority order, file rank, position in the file).
  pairs     within a scope (one task, or the whole mixture with cross_task):
            documents with the same exact key or code key are duplicates at
            that level; documents sharing a MinHash / SimHash / semantic bucket
            (pairs.py) are candidates, verified by estimated Jaccard, Hamming
            distance or cosine. A bucket's members, sorted by key, are compared
            only with its anchors, the first `max_bucket` of them, that have a
            smaller key: the work and memory of a hot bucket stay bounded.
  cap       a member beyond the anchors counts one capped insertion
            (`capped`) and the `size - 1 - max_bucket` members of that bucket
            it was not compared with (`skipped`): each uncompared pair is
            counted at both of its documents.
  verdict   the components of the graph of verified pairs (all levels
            together): the smallest key of a component is kept and every other
            member is removed, pointing to it (`duplicate_of`). A chain A~B~C
            with A not ~C removes B and C. The level of a removed document is
            the strictest level (exact, code, near, semantic) of its own
            verified pairs, its similarity the best at that level.
  reference each document is also compared with a reference set (the same
            levels, verification and cap; the reference documents ordered by
            id). In reference mode "drop" a matching document is removed before
            the components are formed (it joins none); in "count" it stays and
            the match is counted. Reference matches are not transitive.

`resolve` runs it in one process (`Accumulator`: documents are added as they
are fingerprinted): the fingerprints are numpy columns (collected.py), buckets
and groups are found by sorting them, and the components by a vectorised
union-find; memory is about the fingerprints' own bytes: with the default
MinHash settings ~0.9 KB held per document, ~1.3 KB at the decision's peak.
"""
import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from midtrain_jax.dedup import collected, columns, deduplicator, pairs
from midtrain_jax.dedup.params import DedupParams
from midtrain_jax.dedup.verdicts import Verdicts

REFERENCE_TASK = "reference"  # The task named in matches against the reference set.
PAIR_VALUES = 1 << 20  # Fingerprint values of the candidate pairs verified at once (~8 MB).
ENTRY_CHUNK = 1 << 18  # Bucket memberships matched against the shared keys at once (~2 MB).
BATCH = 1024  # Items `resolve` adds to the accumulator at once.


@dataclasses.dataclass(frozen=True)
class Item:
  """One document to deduplicate.

  Attributes:
    key: canonical key, sortable and unique; smaller = the better copy.
    doc_id: reported in `duplicate_of` of its removed copies.
    task: its task (the scope without cross_task).
    fp: its fingerprint (`Deduplicator.fingerprint`).
  """
  key: tuple
  doc_id: str
  task: str
  fp: deduplicator.Fingerprint


def make_verdict(doc_id: str, task: str, kept_of: tuple[str, str] | None, own: tuple | None,
                 reference: tuple | None, skipped: int, capped: int,
                 params: DedupParams) -> deduplicator.Verdict:
  """The verdict on one document from what the runners found.

  Args:
    doc_id: the document's id.
    task: its task.
    kept_of: (doc id, task) of its component's kept document; None when it
      is kept itself (or joins no component).
    own: (level rank, -similarity) of its strictest, best verified pair.
    reference: (level rank, -similarity, reference id) of its best reference
      match, or None.
    skipped: comparisons the cap skipped (see the module docstring).
    capped: its bucket memberships beyond the anchors.
    params: the settings (the reference mode).
  """
  ref = None
  if reference is not None:
    ref = deduplicator.Match(reference[2], REFERENCE_TASK, pairs.STRICTNESS[reference[0]],
                             -reference[1], reference=True)
    if params.reference_mode == "drop":
      return deduplicator.Verdict(doc_id, task, False, ref, skipped, capped)
  if kept_of is None:
    return deduplicator.Verdict(doc_id, task, True, ref, skipped, capped)
  match = deduplicator.Match(kept_of[0], kept_of[1], pairs.STRICTNESS[own[0]], -own[1])
  return deduplicator.Verdict(doc_id, task, False, match, skipped, capped)


class _Edges:
  """Verified pairs (a, b) of documents (numbered in key order), their level rank and similarity."""

  def __init__(self):
    self.parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []

  def add(self, a, b, level: str, similarity) -> None:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    self.parts.append((a, b, pairs.RANK[level],
                       np.broadcast_to(np.asarray(similarity, np.float64), a.shape)))

  def own(self, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each document's strictest level rank over its pairs (int8, -1: none) and -best
    similarity there (float64)."""
    rank_of = np.full(size, -1, np.int8)
    score_of = np.zeros(size, np.float64)
    for rank in range(len(pairs.STRICTNESS)):
      found = [(a, b, sim) for a, b, r, sim in self.parts if r == rank]
      if not found:
        continue
      nodes = np.concatenate([np.concatenate([a, b]) for a, b, _ in found])
      sims = np.concatenate([np.concatenate([sim, sim]) for _, _, sim in found])
      best = np.full(size, -np.inf)
      np.maximum.at(best, nodes, sims)
      new = (best > -np.inf) & (rank_of < 0)  # Not where a stricter level has pairs.
      rank_of[new] = rank
      score_of[new] = -best[new]
    return rank_of, score_of

  def roots(self, size: int) -> np.ndarray:
    """int64 [size]: each document's component root, the smallest document joined to it.

    A vectorised union-find: every round hooks the larger root of each
    unjoined pair under the smaller and compresses the paths; labels only
    decrease and stay in their component, so its smallest member ends as the root.
    """
    label = np.arange(size, dtype=np.int64)
    if not self.parts:
      return label
    a = np.concatenate([p[0] for p in self.parts])
    b = np.concatenate([p[1] for p in self.parts])
    while True:
      root_a, root_b = label[a], label[b]
      apart = root_a != root_b
      if not apart.any():
        return label
      low = np.minimum(root_a[apart], root_b[apart])
      np.minimum.at(label, root_a[apart], low)
      np.minimum.at(label, root_b[apart], low)
      while True:  # Path compression: every label points at its root.
        up = label[label]
        if np.array_equal(up, label):
          break
        label = up


def _group_pairs(level: str, table: collected.Table, live: np.ndarray, scope: np.ndarray,
                 edges: _Edges) -> None:
  """Joins every member of an exact / code group to the group's smallest key.

  A group is one (scope, key); its members are found by sorting, not hashing.
  """
  usable = live[table.docs]
  docs, keys = table.docs[usable], table.keys[usable]
  if not len(docs):
    return
  where = scope[docs]
  order = np.lexsort((docs, *keys.T[::-1], where))
  docs, keys, where = docs[order], keys[order], where[order]
  first = np.r_[True, (keys[1:] != keys[:-1]).any(axis=1) | (where[1:] != where[:-1])]
  smallest = docs[first][np.cumsum(first) - 1]
  edges.add(smallest[~first], docs[~first], level, 1.0)


def _shared_entries(keys: columns.Blocks, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(row, key) of the bucket memberships of usable rows whose key another shares.

  A bucket of one member pairs nothing, and nearly every bucket has one: the
  keys found twice (among all scopes: a superset) are found by sorting a copy of
  the keys, then the memberships are matched against them a chunk at a time.
  """
  values = np.empty(int(np.count_nonzero(usable)) * keys.shape[1], np.int64)
  filled = 0
  for first, block in keys.parts():  # Filled block by block: one copy of the keys.
    part = block[usable[first:first + len(block)]].ravel()
    values[filled:filled + len(part)] = part
    filled += len(part)
  values.sort()
  shared = np.unique(values[1:][values[1:] == values[:-1]])
  del values
  rows, found = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
  if not len(shared):
    return rows[0], found[0]
  step = max(1, ENTRY_CHUNK // max(1, keys.shape[1]))
  for first, block in keys.parts():
    for lo in range(0, len(block), step):
      part = block[lo:lo + step]
      at = np.minimum(np.searchsorted(shared, part), len(shared) - 1)
      start = first + lo
      row, column = np.nonzero((shared[at] == part) & usable[start:start + len(part), None])
      rows.append(row + start)
      found.append(part[row, column])
  return np.concatenate(rows).astype(np.int64), np.concatenate(found)


def _sorted_buckets(table: collected.Table, live: np.ndarray, scope: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(table row, document) of the shared bucket memberships sorted by (scope, key,
  document), and where each bucket starts: a bucket is one (scope, key)."""
  rows, keys = _shared_entries(table.keys, live[table.docs])
  member = table.docs[rows]
  order = np.lexsort((member, keys, scope[member]))
  rows, keys, member = rows[order], keys[order], member[order]
  del order
  where = scope[member]
  new = np.r_[True, (keys[1:] != keys[:-1]) | (where[1:] != where[:-1])]
  return rows, member, np.flatnonzero(new)


def _bucket_pairs(kind: str, table: collected.Table, live: np.ndarray, scope: np.ndarray,
                  params: DedupParams, edges: _Edges, skipped: np.ndarray,
                  capped: np.ndarray) -> None:
  """Compares each bucket member with the bucket's anchors of smaller key; keeps duplicates.

  The buckets are found by sorting, then taken in chunks of whole buckets of
  about ENTRY_CHUNK memberships, so their pairs' arrays stay bounded.
  """
  rows, member, starts = _sorted_buckets(table, live, scope)
  if not len(member):
    return
  limit = params.max_bucket or len(member)
  marks = np.searchsorted(starts, np.arange(ENTRY_CHUNK, len(member), ENTRY_CHUNK))
  bounds = np.unique(np.r_[0, starts[marks[marks < len(starts)]], len(member)])
  for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
    first = starts[(starts >= lo) & (starts < hi)] - lo
    _chunk_pairs(kind, table.prints, rows[lo:hi], member[lo:hi], first, limit, params, edges,
                 skipped, capped)


def _chunk_pairs(kind: str, prints: columns.Blocks, rows: np.ndarray, member: np.ndarray,
                 starts: np.ndarray, limit: int, params: DedupParams, edges: _Edges,
                 skipped: np.ndarray, capped: np.ndarray) -> None:
  """The pairs of whole buckets (sorted memberships, `starts` of each bucket), vectorised:
  the member at position p of a bucket is paired with positions 0 .. min(p, limit) - 1."""
  sizes = np.diff(np.r_[starts, len(member)])
  start_of = np.repeat(starts, sizes)
  position = np.arange(len(member)) - start_of
  over = position >= limit
  np.add.at(capped, member[over], 1)
  np.add.at(skipped, member[over], np.repeat(sizes, sizes)[over] - 1 - limit)
  count = np.minimum(position, limit)
  entry_b = np.repeat(np.arange(len(member)), count)
  entry_a = start_of[entry_b] + np.arange(len(entry_b)) - np.repeat(np.cumsum(count) - count, count)
  step = max(1, PAIR_VALUES // (prints.shape[1] if prints.ndim == 2 else 1))
  for lo in range(0, len(entry_a), step):
    part_a, part_b = entry_a[lo:lo + step], entry_b[lo:lo + step]
    scores = pairs.pair_scores(kind, prints, rows[part_a], rows[part_b], params)
    hit = scores >= 0
    edges.add(member[part_a[hit]], member[part_b[hit]], pairs.LEVEL_OF[kind], scores[hit])


@dataclasses.dataclass
class _Decided:
  """What a Verdict is made of, per document in key order (no fingerprints)."""
  docs: collected.Collected
  roots: np.ndarray
  own: tuple[np.ndarray, np.ndarray]
  skipped: np.ndarray
  capped: np.ndarray
  params: DedupParams

  def verdict(self, i: int) -> deduplicator.Verdict:
    docs = self.docs
    rank, score, ref = (column[i] for column in docs.reference)
    reference = (int(rank), float(score), docs.reference_ids[ref]) if rank >= 0 else None
    root = int(self.roots[i])
    kept_of = None if root == i else (docs.doc_id(root), docs.task_names[docs.tasks[root]])
    own = (int(self.own[0][i]), float(self.own[1][i])) if self.own[0][i] >= 0 else None
    return make_verdict(docs.doc_id(i), docs.task_names[docs.tasks[i]], kept_of, own,
                        reference, int(self.skipped[i]), int(self.capped[i]), self.params)


def decide(docs: collected.Collected, params: DedupParams, cross_task: bool) -> Verdicts:
  """The verdicts of collected documents: components over verified pairs (module docstring).

  The fingerprint tables of `docs` are released once the pairs are found: the
  verdicts keep only what they are made of.
  """
  n = len(docs)
  live = docs.reference[0] < 0 if params.reference_mode == "drop" else np.ones(n, bool)
  scope = np.zeros(n, np.int32) if cross_task else docs.tasks
  skipped, capped = docs.skipped.copy(), np.zeros(n, np.int64)
  edges = _Edges()
  for level, table in docs.groups.items():
    _group_pairs(level, table, live, scope, edges)
  for kind, table in docs.kinds.items():
    _bucket_pairs(kind, table, live, scope, params, edges, skipped, capped)
  docs.groups, docs.kinds = {}, {}
  decided = _Decided(docs, edges.roots(n), edges.own(n), skipped, capped, params)
  return Verdicts(docs.keys, decided.verdict)


class Accumulator(collected.Collector):
  """Documents taken as they are fingerprinted (`add`), then decided (`resolve`).

  Args:
    params: the settings.
    reference: (doc id, fingerprint) of the reference set.
    cross_task: compare documents of different tasks (else each task alone).
  """

  def __init__(self, params: DedupParams,
               reference: Sequence[tuple[str, deduplicator.Fingerprint]] = (),
               cross_task: bool = True):
    super().__init__(params, reference)
    self.cross_task = cross_task

  def resolve(self) -> Verdicts:
    """{key: Verdict} of every document added, in key order; the accumulator is emptied.

    Raises:
      ValueError: when two documents share a key.
    """
    return decide(self.finish(), self.params, self.cross_task)


def _task_batches(items: Iterable[Item]) -> Iterator[tuple[str, list[Item]]]:
  """Consecutive items of one task, up to BATCH at once."""
  for task, run in itertools.groupby(items, key=lambda item: item.task):
    while batch := list(itertools.islice(run, BATCH)):
      yield task, batch


def resolve(items: Iterable[Item], params: DedupParams,
            reference: Sequence[tuple[str, deduplicator.Fingerprint]] = (),
            cross_task: bool = True) -> Verdicts:
  """Decides which documents are kept: components over verified pairs (module docstring).

  Args:
    items: the documents, in any order.
    params: the settings.
    reference: (doc id, fingerprint) of the reference set.
    cross_task: compare documents of different tasks (else each task alone).

  Returns:
    {key: Verdict} for every item (`Verdicts`, in key order).

  Raises:
    ValueError: when two items share a key.
  """
  accumulator = Accumulator(params, reference, cross_task)
  for task, batch in _task_batches(items):
    accumulator.add([item.key for item in batch], [item.doc_id for item in batch], task,
                    [item.fp for item in batch])
  return accumulator.resolve()
