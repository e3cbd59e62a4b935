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

`resolve` runs it in one process with a union-find: memory O(documents).
"""
import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from midtrain_jax.dedup import deduplicator, pairs
from midtrain_jax.dedup.params import DedupParams

REFERENCE_TASK = "reference"  # The task named in matches against the reference set.
CHUNK = 64  # Bucket members compared with the anchors at once: [64, max_bucket, num_perm].
PAIR_VALUES = 1 << 22  # Fingerprint values of the candidate pairs verified at once (~32 MB).


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
  """Verified pairs (a, b) of item indices with a < b, their level rank and similarity."""

  def __init__(self):
    self.parts: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []

  def add(self, a, b, level: str, similarity) -> None:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    self.parts.append((a, b, pairs.RANK[level],
                       np.broadcast_to(np.asarray(similarity, np.float64), a.shape)))

  def own(self, size: int) -> list[tuple | None]:
    """Each item's (strictest level rank, -best similarity there) over its pairs, or None."""
    own = [None] * size
    for rank in range(len(pairs.STRICTNESS)):
      found = [(a, b, sim) for a, b, r, sim in self.parts if r == rank]
      if not found:
        continue
      nodes = np.concatenate([np.concatenate([a, b]) for a, b, _ in found])
      sims = np.concatenate([np.concatenate([sim, sim]) for _, _, sim in found])
      best = np.full(size, -np.inf)
      np.maximum.at(best, nodes, sims)
      for node in np.flatnonzero(best > -np.inf).tolist():
        if own[node] is None:
          own[node] = (rank, -float(best[node]))
    return own

  def roots(self, size: int) -> list[int]:
    """Each item's component root: the smallest index joined to it (union-find)."""
    parent = list(range(size))

    def find(node):
      while parent[node] != node:
        parent[node] = parent[parent[node]]  # Path halving.
        node = parent[node]
      return node

    if self.parts:  # Each distinct pair once (a pair shares several buckets).
      a = np.concatenate([p[0] for p in self.parts])
      b = np.concatenate([p[1] for p in self.parts])
      unique = np.unique(a * size + b)
      for x, y in zip((unique // size).tolist(), (unique % size).tolist()):
        root_x, root_y = find(x), find(y)
        if root_x != root_y:
          parent[max(root_x, root_y)] = min(root_x, root_y)
    return [find(node) for node in range(size)]


class _Reference:
  """The reference set's group keys and capped buckets; finds a fingerprint's best match."""

  def __init__(self, reference: Sequence[tuple[str, deduplicator.Fingerprint]],
               params: DedupParams):
    self.params = params
    self.groups: dict = {}
    self.buckets = collections.defaultdict(list)
    for doc_id, fp in sorted(reference, key=lambda r: (r[0], r[1].exact)):
      for group in pairs.group_keys(fp, params):
        self.groups.setdefault(group, doc_id)
      for bucket in pairs.bucket_keys(fp, params):
        self.buckets[bucket].append((doc_id, fp))

  def match(self, fp: deduplicator.Fingerprint) -> tuple[tuple | None, int]:
    """((level rank, -similarity, reference id) of the best match or None, skipped)."""
    best, skipped = None, 0
    if not self.groups and not self.buckets:
      return best, skipped
    for level, key in pairs.group_keys(fp, self.params):
      found = self.groups.get((level, key))
      if found is not None:
        best = pairs.better(best, (pairs.RANK[level], -1.0, found))
    for kind, key in pairs.bucket_keys(fp, self.params):
      members = self.buckets.get((kind, key), ())
      anchors = members[:self.params.max_bucket or len(members)]
      skipped += len(members) - len(anchors)
      scores = pairs.similarities(kind, fp, [other for _, other in anchors], self.params)
      for (doc_id, _), score in zip(anchors, scores):
        if score is not None:
          best = pairs.better(best, (pairs.RANK[pairs.LEVEL_OF[kind]], -score, doc_id))
    return best, skipped


def _group_pairs(items: Sequence[Item], live: Sequence[int], params: DedupParams,
                 cross_task: bool, edges: _Edges) -> None:
  """Joins every member of an exact / code group to the group's smallest key."""
  first: dict = {}
  found = collections.defaultdict(lambda: ([], []))
  for i in live:
    scope = None if cross_task else items[i].task
    for level, key in pairs.group_keys(items[i].fp, params):
      smallest = first.setdefault((scope, level, key), i)
      if smallest != i:
        found[level][0].append(smallest)
        found[level][1].append(i)
  for level, (a, b) in found.items():
    edges.add(a, b, level, 1.0)


def _bucket_entries(items: Sequence[Item], live: Sequence[int], params: DedupParams,
                    cross_task: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{kind: (bucket number, item index)} of every bucket membership, sorted by both."""
  numbers: dict = {}
  found = collections.defaultdict(lambda: ([], []))
  for i in live:
    scope = None if cross_task else items[i].task
    for kind, key in pairs.bucket_keys(items[i].fp, params):
      found[kind][0].append(numbers.setdefault((scope, kind, key), len(numbers)))
      found[kind][1].append(i)
  out = {}
  for kind, (bucket, member) in found.items():
    bucket, member = np.array(bucket, np.int64), np.array(member, np.int64)
    order = np.lexsort((member, bucket))
    out[kind] = bucket[order], member[order]
  return out


def _bucket_pairs(items: Sequence[Item], live: Sequence[int], params: DedupParams,
                  cross_task: bool, edges: _Edges, skipped: np.ndarray,
                  capped: np.ndarray) -> None:
  """Compares each bucket member with the bucket's anchors of smaller key; keeps duplicates.

  Vectorised over all buckets of a kind: the member at position p of a bucket
  (members sorted by key) is paired with positions 0 .. min(p, max_bucket) - 1.
  """
  for kind, (bucket, member) in _bucket_entries(items, live, params, cross_task).items():
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(bucket)])
    start_of = np.repeat(starts, sizes)
    position = np.arange(len(bucket)) - start_of
    limit = params.max_bucket or len(bucket)
    over = position >= limit
    np.add.at(capped, member[over], 1)
    np.add.at(skipped, member[over], np.repeat(sizes, sizes)[over] - 1 - limit)
    count = np.minimum(position, limit)
    member_entry = np.repeat(np.arange(len(bucket)), count)
    offset = np.arange(len(member_entry)) - np.repeat(np.cumsum(count) - count, count)
    a, b = member[start_of[member_entry] + offset], member[member_entry]
    table = pairs.table(kind, items)
    step = max(1, PAIR_VALUES // (table.shape[1] if table.ndim == 2 else 1))
    for lo in range(0, len(a), step):
      part_a, part_b = a[lo:lo + step], b[lo:lo + step]
      scores = pairs.pair_scores(kind, table, part_a, part_b, params)
      hit = scores >= 0
      edges.add(part_a[hit], part_b[hit], pairs.LEVEL_OF[kind], scores[hit])


def check_unique(keys: Sequence[tuple], doc_ids: Sequence[str]) -> None:
  """Raises ValueError naming two documents of the same key (`keys` sorted)."""
  for i in range(1, len(keys)):
    if keys[i] == keys[i - 1]:
      raise ValueError(f"Documents {doc_ids[i - 1]!r} and {doc_ids[i]!r} have the same "
                       f"key {keys[i]!r}: every document needs a unique key.")


def resolve(items: Iterable[Item], params: DedupParams,
            reference: Sequence[tuple[str, deduplicator.Fingerprint]] = (),
            cross_task: bool = True) -> dict[tuple, deduplicator.Verdict]:
  """Decides which documents are kept: components over verified pairs (module docstring).

  Args:
    items: the documents, in any order.
    params: the settings.
    reference: (doc id, fingerprint) of the reference set.
    cross_task: compare documents of different tasks (else each task alone).

  Returns:
    {key: Verdict} for every item.

  Raises:
    ValueError: when two items share a key.
  """
  items = sorted(items, key=lambda item: item.key)
  check_unique([item.key for item in items], [item.doc_id for item in items])
  index = _Reference(reference, params)
  found = [index.match(item.fp) for item in items]
  references = [best for best, _ in found]
  skipped = np.array([count for _, count in found], np.int64)
  capped = np.zeros(len(items), np.int64)
  drop = params.reference_mode == "drop"
  live = [i for i in range(len(items)) if not (drop and references[i] is not None)]
  edges = _Edges()
  _group_pairs(items, live, params, cross_task, edges)
  _bucket_pairs(items, live, params, cross_task, edges, skipped, capped)
  roots, own = edges.roots(len(items)), edges.own(len(items))
  out = {}
  for i, item in enumerate(items):
    root = roots[i]
    kept_of = None if root == i else (items[root].doc_id, items[root].task)
    out[item.key] = make_verdict(item.doc_id, item.task, kept_of, own[i], references[i],
                                 int(skipped[i]), int(capped[i]), params)
  return out
