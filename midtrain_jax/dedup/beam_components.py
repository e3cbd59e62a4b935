"""Connected-component deduplication on Beam: `components.resolve`'s result, no single-worker stage.

`items | Resolve(params, cross_task, reference)` gives (key, Verdict) for every
item, equal to `components.resolve` (the semantics are in components.py).
Every stage is keyed by something smaller than the corpus:

  reference   group keys of the reference set reduced to their smallest id (a
              combiner); its buckets reduced to their anchors (the smallest
              `max_bucket` ids, `Top.SmallestPerKey`) and their size
              (`Count.PerKey`); each item's bucket keys joined with them, the
              anchors of the buckets it met joined with its print and
              compared; per item the best match (a combiner). In
              reference mode "drop" the matched items leave here.
  groups      exact / code groups grouped by key; a group of more than one
              member pairs each member with its smallest key.
  buckets     MinHash / SimHash / semantic bucket memberships as keys only,
              grouped by bucket: a bucket of one member (nearly all of them)
              is dropped at once; in the others each member is paired with
              the anchors of smaller key (the anchors: the bucket's smallest
              `max_bucket` keys, found by a heap of that size); the
              pairs are joined with the member's fingerprint, then with the
              anchor's, and verified one by one (pairs.py), so a fingerprint
              travels with the candidate pairs it is in, not with each of its
              buckets.
  components  labels by rounds, unrolled into the pipeline: every node starts
              with the smallest key among itself and its neighbours; a round
              joins each verified pair with both labels and proposes the
              smaller one to both nodes and both labels (merging the label
              trees), keeps each node's minimum (a combiner), then jumps
              pointers twice (a label becomes its label's label). A component
              of n documents needs about 0.6 * log2(n) rounds when it is a path
              in key order, the worst case (measured: 8 rounds for 100,000),
              duplicate clusters (stars, cliques) 1-2. After the last round
              every pair is joined with its labels once more, and a pair whose
              two labels still differ fails the pipeline naming
              `component_rounds`.
  verdicts    per item its own best pair, counts, reference match and label (a
              join by key), then per component its members joined with the
              kept document (a join by label).

Memory per worker does not grow with the corpus: a combiner holds one key
or one count; a grouping holds one header (a group's smallest key, a bucket's
anchors (`max_bucket` keys) and size, a node's label, a document's
fingerprint: a MinHash signature is 4 * num_perm bytes, an embedding 4 * D)
while the values of its key are iterated (again where the header needs a
first pass: grouped values can be iterated more than once), never collected
into a list (runners that page large groups, such as Dataflow,
stream a hot key's values). A member's distinct candidates are at most
buckets x `max_bucket`. `max_bucket=0` (unbounded buckets) gives up that
bound: a bucket's anchors are all its members. Runners that hand a worker a
whole stage's input as one bundle (the local FnApiRunner) hold that input
instead; there the largest stage input is one element per (document, bucket)
of keys only.
"""
import bisect
import heapq

import apache_beam as beam

from midtrain_jax.dedup import components, pairs
from midtrain_jax.dedup.params import DedupParams


def _join(name: str, tagged: dict):
  """(key, iterable of (tag, value)) of PCollections of (key, value): one grouping."""
  parts = [pcoll | f"{name}: tag {tag}" >> beam.MapTuple(lambda k, v, t=tag: (k, (t, v)))
           for tag, pcoll in tagged.items()]
  return parts | f"{name}: flatten" >> beam.Flatten() | f"{name}: group" >> beam.GroupByKey()


def _first(values, tag: str):
  """The (single) value of `tag` among a join's values, or None."""
  for found, value in values:
    if found == tag:
      return value
  return None


def _smallest(pcoll, name: str, cap: int, key):
  """Per key the `cap` smallest values by `key`, sorted (all of them when cap is 0)."""
  if cap:
    found = pcoll | name >> beam.combiners.Top.SmallestPerKey(cap, key=key)
  else:
    found = pcoll | name >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
  return found | f"{name}: sort" >> beam.MapTuple(lambda k, v: (k, sorted(v, key=key)))


def _ref_key(ref):
  return ref[0], ref[1].exact


def _scope(item: components.Item, cross_task: bool):
  return None if cross_task else item.task


def _merge_reference(values):
  """Best reference match and total skipped comparisons of partial (best, skipped)."""
  best, skipped = None, 0
  for found, count in values:
    best = pairs.better(best, found)
    skipped += count
  return best, skipped


def _sum_counts(values):
  skipped = capped = 0
  for more_skipped, more_capped in values:
    skipped, capped = skipped + more_skipped, capped + more_capped
  return skipped, capped


def _group_hits(joined):
  """(item key, (match, 0)) for the items in a reference group."""
  (level, _), values = joined
  ref_id = _first(values, "ref")
  if ref_id is not None:
    for tag, key in values:
      if tag == "item":
        yield key, ((pairs.RANK[level], -1.0, ref_id), 0)


def _bucket_meets(joined):
  """(item key, (kind, the bucket's reference anchors, skipped)) for the items of a
  bucket the reference set is in: keys only travel to the bucket, its anchors
  (at most `max_bucket` reference prints) to the item."""
  (kind, _), values = joined
  anchors = _first(values, "anchors")
  if not anchors:
    return
  skipped = _first(values, "size") - len(anchors)
  for tag, key in values:
    if tag == "item":
      yield key, (kind, anchors, skipped)


def _bucket_hits(joined, params: DedupParams):
  """(item key, (best match or None, skipped)) of an item that met reference buckets."""
  key, values = joined
  fp = _first(values, "fp")
  best, skipped = None, 0
  for tag, value in values:
    if tag != "meet":
      continue
    kind, anchors, more_skipped = value
    skipped += more_skipped
    scores = pairs.similarities(kind, fp, [other for _, other in anchors], params)
    for (ref_id, _), score in zip(anchors, scores):
      if score is not None:
        best = pairs.better(best, (pairs.RANK[pairs.LEVEL_OF[kind]], -score, ref_id))
  if best is not None or skipped:
    yield key, (best, skipped)


def _match_reference(items, reference, params: DedupParams):
  """(item key, (best match, skipped)) of the items that meet the reference set."""
  ref_groups = (reference | "ref groups" >> beam.FlatMap(
      lambda r: [(g, r[0]) for g in pairs.group_keys(r[1], params)])
                | "ref group smallest" >> beam.CombinePerKey(min))
  item_groups = items | "item ref groups" >> beam.FlatMap(
      lambda it: [(g, it.key) for g in pairs.group_keys(it.fp, params)])
  group_hits = (_join("ref group join", {"ref": ref_groups, "item": item_groups})
                | "ref group hits" >> beam.FlatMap(_group_hits))
  ref_members = reference | "ref buckets" >> beam.FlatMap(
      lambda r: [(b, r) for b in pairs.bucket_keys(r[1], params)])
  anchors = _smallest(ref_members, "ref anchors", params.max_bucket, _ref_key)
  sizes = ref_members | "ref bucket sizes" >> beam.combiners.Count.PerKey()
  # Bucket memberships carry keys only; an item's print joins the buckets it met.
  item_buckets = items | "item ref buckets" >> beam.FlatMap(
      lambda it: [(b, it.key) for b in pairs.bucket_keys(it.fp, params)])
  meets = (_join("ref bucket join", {"anchors": anchors, "size": sizes, "item": item_buckets})
           | "ref bucket meets" >> beam.FlatMap(_bucket_meets))
  prints = items | "ref item prints" >> beam.Map(lambda it: (it.key, it.fp))
  bucket_hits = (_join("ref item join", {"fp": prints, "meet": meets})
                 | "ref bucket hits" >> beam.FlatMap(_bucket_hits, params))
  return ((group_hits, bucket_hits) | "ref hits" >> beam.Flatten()
          | "ref best" >> beam.CombinePerKey(_merge_reference))


def _live(joined):
  """The item of a key unless the reference set dropped it."""
  _, values = joined
  item, dropped = None, False
  for tag, value in values:
    if tag == "item":
      item = value
    elif value[0] is not None:
      dropped = True
  if item is not None and not dropped:
    yield item


def _alone(members) -> bool:
  """True for a group of one member (most buckets): nothing to pair, decided at once."""
  found = iter(members)
  next(found)
  return next(found, None) is None


def _group_pairs(grouped):
  """(smallest key, member key, level rank, -1) for each other member of a group.

  The group's members are iterated twice (a grouping's values can be), so
  only the smallest key is held.
  """
  (_, level, _), members = grouped
  if _alone(members):
    return
  smallest = min(members)
  for key in members:
    if key != smallest:
      yield smallest, key, pairs.RANK[level], -1.0


def _bucket_candidates(grouped, params: DedupParams):
  """A bucket's candidate pairs, by keys only: each member with its anchors of smaller key.

  The members are iterated three times: their number, their `max_bucket`
  smallest keys (the anchors: a heap of that size), then the pairs; only the
  anchors are held (all members when `max_bucket` is 0).

  Yields (member key, (anchor key, kind)), and to the "counts" output (member
  key, (skipped, capped)) for a member beyond the anchors.
  """
  (_, kind, _), members = grouped
  if _alone(members):
    return
  size = sum(1 for _ in members)
  cap = params.max_bucket
  keys = heapq.nsmallest(cap, members) if cap else sorted(members)
  limit = cap or size
  for key in members:
    below = bisect.bisect_left(keys, key)
    if below == len(keys) or keys[below] != key:  # Not an anchor.
      yield beam.pvalue.TaggedOutput("counts", (key, (size - 1 - limit, 1)))
    for anchor in keys[:below]:
      yield key, (anchor, kind)


def _with_member_print(joined):
  """(anchor key, (member key, kind, member fingerprint)) per distinct candidate of a member.

  A pair sharing several buckets of a kind is verified once (the same score).
  """
  key, values = joined
  fp = _first(values, "fp")
  for anchor, kind in sorted({value for tag, value in values if tag == "candidate"}):
    yield anchor, (key, kind, fp)


def _verify(joined, params: DedupParams):
  """(anchor key, member key, level rank, -similarity) of an anchor's verified candidates.

  Each pair is scored on its own (`pairs.similarities` of one print against
  one): the score `components.resolve` gives it.
  """
  anchor, values = joined
  fp = _first(values, "fp")
  for tag, value in values:
    if tag != "candidate":
      continue
    member, kind, member_fp = value
    score = pairs.similarities(kind, member_fp, [fp], params)[0]
    if score is not None:
      yield anchor, member, pairs.RANK[pairs.LEVEL_OF[kind]], -score


def _verified_pairs(live, params: DedupParams, cross_task: bool):
  """(verified pairs (a, b, level rank, -similarity) with a < b, (key, (skipped, capped)))."""
  group_pairs = (live | "group keys" >> beam.FlatMap(
      lambda it: [((_scope(it, cross_task), *g), it.key) for g in pairs.group_keys(it.fp, params)])
                 | "groups" >> beam.GroupByKey()
                 | "group pairs" >> beam.FlatMap(_group_pairs))
  # Bucket memberships carry keys only: a document is in ~num_bands buckets,
  # and its fingerprint travels only with the candidate pairs it is in. One
  # grouping: nearly every bucket holds one document and is dropped there.
  found = (live | "bucket keys" >> beam.FlatMap(
      lambda it: [((_scope(it, cross_task), *b), it.key) for b in pairs.bucket_keys(it.fp, params)])
           | "buckets" >> beam.GroupByKey()
           | "bucket candidates" >> beam.FlatMap(_bucket_candidates, params).with_outputs(
               "counts", main="pairs"))
  prints = live | "prints" >> beam.Map(lambda it: (it.key, it.fp))
  with_print = (_join("member prints", {"fp": prints, "candidate": found.pairs})
                | "with member print" >> beam.FlatMap(_with_member_print))
  verified = (_join("anchor prints", {"fp": prints, "candidate": with_print})
              | "verify" >> beam.FlatMap(_verify, params))
  return (group_pairs, verified) | "pairs" >> beam.Flatten(), found.counts


def _label_first(joined):
  a, values = joined
  label = _first(values, "label")
  for tag, b in values:
    if tag == "edge":
      yield b, (a, label)


def _label_second(joined):
  b, values = joined
  label = _first(values, "label")
  for tag, value in values:
    if tag == "half":
      yield value[0], b, value[1], label


def _edge_labels(links, labels, name: str):
  """(a, b, label of a, label of b) of every pair."""
  half = (_join(f"{name} by a", {"label": labels, "edge": links})
          | f"{name} label a" >> beam.FlatMap(_label_first))
  return (_join(f"{name} by b", {"label": labels, "half": half})
          | f"{name} label b" >> beam.FlatMap(_label_second))


def _proposals(quad):
  a, b, label_a, label_b = quad
  if label_a != label_b:
    low = min(label_a, label_b)
    for node in (a, b, label_a, label_b):
      yield node, low


def _hop(joined):
  node, values = joined
  label = _first(values, "self")
  for tag, child in values:
    if tag == "child":
      yield child, label


def _jump(labels, name: str):
  """Each node's label replaced by its label's label."""
  children = labels | f"{name}: children" >> beam.MapTuple(lambda node, label: (label, node))
  return (_join(name, {"self": labels, "child": children})
          | f"{name}: hop" >> beam.FlatMap(_hop))


class NotConverged(RuntimeError):
  """The distributed connected components needed more rounds than given."""


def _fail(quad, rounds: int):
  """Raises NotConverged naming the setting to raise."""
  raise NotConverged(
      f"Connected components did not converge in {rounds} rounds: documents {quad[0]!r} and "
      f"{quad[1]!r} are duplicates but still carry different labels; raise "
      f"data.dedup.component_rounds (--component_rounds) above {rounds}.")


def _components(links, rounds: int):
  """(node, smallest key of its component) of every node of a pair, and the check: a
  singleton list of a pair whose labels still differ, empty when converged."""
  labels = (links | "init" >> beam.FlatMap(lambda ab: [(ab[0], ab[0]), (ab[1], ab[0])])
            | "init min" >> beam.CombinePerKey(min))
  for r in range(rounds):
    proposed = (_edge_labels(links, labels, f"round {r}")
                | f"round {r} propose" >> beam.FlatMap(_proposals))
    labels = ((labels, proposed) | f"round {r} flatten" >> beam.Flatten()
              | f"round {r} min" >> beam.CombinePerKey(min))
    labels = _jump(_jump(labels, f"round {r} jump 1"), f"round {r} jump 2")
  unjoined = (_edge_labels(links, labels, "check")
              | "check differ" >> beam.Filter(lambda q: q[2] != q[3]))
  _ = unjoined | "check fail" >> beam.Map(_fail, rounds)
  # The verdicts wait for the check (at most one pair of it), so no verdict is
  # written from labels that have not converged.
  check = unjoined | "check one" >> beam.combiners.Top.Smallest(1)
  return labels, check


def _by_label(joined):
  """(label, (key, (doc id, task), own, reference, skipped, capped)) of one item."""
  key, values = joined
  doc, own, reference, skipped, capped, label = None, None, None, 0, 0, key
  for tag, value in values:
    if tag == "item":
      if doc is not None:
        raise ValueError(f"Documents {doc[0]!r} and {value[0]!r} have the same key {key!r}: "
                         "every document needs a unique key.")
      doc = value
    elif tag == "own":
      own = value
    elif tag == "reference":
      reference, skipped = value[0], skipped + value[1]
    elif tag == "counts":
      skipped, capped = skipped + value[0], capped + value[1]
    elif tag == "label":
      label = value
  yield label, (key, doc, own, reference, skipped, capped)


def _verdicts(joined, params: DedupParams, check: list, rounds: int):
  if check:
    _fail(check[0], rounds)
  label, members = joined
  kept = next(m[1] for m in members if m[0] == label)
  for key, doc, own, reference, skipped, capped in members:
    kept_of = None if key == label else kept
    yield key, components.make_verdict(doc[0], doc[1], kept_of, own, reference, skipped,
                                       capped, params)


class Resolve(beam.PTransform):
  """items (PCollection[components.Item]) -> PCollection[(key, Verdict)], as `resolve`.

  Args:
    params: the settings.
    cross_task: compare documents of different tasks (else each task alone).
    reference: an optional PCollection of (doc id, Fingerprint): the reference set.
    rounds: rounds of the connected components (default: `params.component_rounds`).
  """

  def __init__(self, params: DedupParams, cross_task: bool = True, reference=None,
               rounds: int | None = None):
    super().__init__()
    self.params, self.cross_task, self.reference = params, cross_task, reference
    self.rounds = params.component_rounds if rounds is None else rounds

  def expand(self, items):
    params = self.params
    keyed = items | "by key" >> beam.Map(lambda it: (it.key, it))
    if self.reference is None:
      reference = items.pipeline | "no reference" >> beam.Create([])
    else:
      reference = _match_reference(items, self.reference, params)
    live = items
    if params.reference_mode == "drop" and self.reference is not None:
      live = (_join("drop", {"item": keyed, "ref": reference})
              | "live" >> beam.FlatMap(_live))
    found, counts = _verified_pairs(live, params, self.cross_task)
    own = (found | "own" >> beam.FlatMap(lambda p: [(p[0], p[2:]), (p[1], p[2:])])
           | "own best" >> beam.CombinePerKey(min))
    links = found | "links" >> beam.Map(lambda p: (p[0], p[1]))
    labels, check = _components(links, self.rounds)
    counts = counts | "counts sum" >> beam.CombinePerKey(_sum_counts)
    docs = items | "docs" >> beam.Map(lambda it: (it.key, (it.doc_id, it.task)))
    return (_join("item info", {"item": docs, "own": own, "reference": reference,
                                "counts": counts, "label": labels})
            | "by label" >> beam.FlatMap(_by_label) | "components" >> beam.GroupByKey()
            | "verdicts" >> beam.FlatMap(_verdicts, params, beam.pvalue.AsSingleton(check),
                                         self.rounds))
