"""The reference set of the one-process deduplication: each document's best match in it.

The reference set is small (held-out or evaluation documents), so it is kept as
objects: its group keys and its capped buckets (the rules of components.py).
"""
import collections
from collections.abc import Sequence

from midtrain_jax.dedup import deduplicator, pairs
from midtrain_jax.dedup.params import DedupParams


class Reference:
  """The reference set's group keys and capped buckets; finds a fingerprint's best match.

  Args:
    reference: (doc id, fingerprint) of the reference documents.
    params: the settings.
  """

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

  def __bool__(self) -> bool:
    return bool(self.groups or self.buckets)

  def match(self, fp: deduplicator.Fingerprint) -> tuple[tuple | None, int]:
    """((level rank, -similarity, reference id) of the best match or None, skipped)."""
    best, skipped = None, 0
    if not self:
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
