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

from midtrain_jax.dedup import deduplicator, pairs
from midtrain_jax.dedup.params import DedupParams

REFERENCE_TASK = "reference"  # The task named in matches against the reference set.


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


class _Graph:
  """Union-find whose root is the smallest index of its set; each node's best pair."""

  def __init__(self, size: int):
    self.parent = list(range(size))
    self.own: list[tuple | None] = [None] * size

  def find(self, node: int) -> int:
    while self.parent[node] != node:
      self.parent[node] = self.parent[self.parent[node]]  # Path halving.
      node = self.parent[node]
    return node

  def union(self, a: int, b: int, level: str, similarity: float) -> None:
    record = (pairs.RANK[level], -similarity)
    self.own[a] = pairs.better(self.own[a], record)
    self.own[b] = pairs.better(self.own[b], record)
    root_a, root_b = self.find(a), self.find(b)
    if root_a != root_b:
      low, high = min(root_a, root_b), max(root_a, root_b)
      self.parent[high] = low


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
                 cross_task: bool, graph: _Graph) -> None:
  """Joins every member of an exact / code group to the group's smallest key."""
  first: dict = {}
  for i in live:
    scope = None if cross_task else items[i].task
    for level, key in pairs.group_keys(items[i].fp, params):
      smallest = first.setdefault((scope, level, key), i)
      if smallest != i:
        graph.union(smallest, i, level, 1.0)


def _bucket_pairs(items: Sequence[Item], live: Sequence[int], params: DedupParams,
                  cross_task: bool, graph: _Graph, skipped: list[int],
                  capped: list[int]) -> None:
  """Compares each bucket member with the bucket's anchors of smaller key; joins duplicates."""
  buckets = collections.defaultdict(list)
  for i in live:  # In key order: each bucket's members end up sorted by key.
    scope = None if cross_task else items[i].task
    for kind, key in pairs.bucket_keys(items[i].fp, params):
      buckets[(scope, kind, key)].append(i)
  verified = set()  # A pair sharing several buckets is verified once.
  for (_, kind, _), members in buckets.items():
    limit = params.max_bucket or len(members)
    for m in members[limit:]:
      capped[m] += 1
      skipped[m] += len(members) - 1 - limit
    for position in range(1, len(members)):
      m = members[position]
      todo = [a for a in members[:min(position, limit)] if (kind, a, m) not in verified]
      verified.update((kind, a, m) for a in todo)
      scores = pairs.similarities(kind, items[m].fp, [items[a].fp for a in todo], params)
      for a, score in zip(todo, scores):
        if score is not None:
          graph.union(a, m, pairs.LEVEL_OF[kind], score)


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
  skipped = [count for _, count in found]
  capped = [0] * len(items)
  drop = params.reference_mode == "drop"
  live = [i for i in range(len(items)) if not (drop and references[i] is not None)]
  graph = _Graph(len(items))
  _group_pairs(items, live, params, cross_task, graph)
  _bucket_pairs(items, live, params, cross_task, graph, skipped, capped)
  out = {}
  for i, item in enumerate(items):
    root = graph.find(i)
    kept_of = None if root == i else (items[root].doc_id, items[root].task)
    out[item.key] = make_verdict(item.doc_id, item.task, kept_of, graph.own[i], references[i],
                                 skipped[i], capped[i], params)
  return out
