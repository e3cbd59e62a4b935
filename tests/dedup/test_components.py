"""Components over verified pairs: chains, the best copy kept, the reference set, the cap."""
import collections
import random

import pytest

from midtrain_jax.dedup import components, counts, deduplicator, minhash, pairs, params
from tests.dedup import planted


def _words(start, stop):
  return " ".join(f"w{i}" for i in range(start, stop))


def _items(docs, settings, exact_only=()):
  """Items of (key, doc id, task, text) tuples, fingerprinted with `settings`."""
  dedup = deduplicator.Deduplicator(settings)
  out = []
  for key, doc_id, task, text in docs:
    fp = dedup.fingerprint([text], exact_only=task in exact_only)[0]
    out.append(components.Item(key, doc_id, task, fp))
  return out


def decide(groups, settings=None, reference=(), cross_task=True, exact_only=()):
  """{doc id: Verdict} of (task, [(doc id, text)]) groups, best first (key: group, position).

  `reference` holds (doc id, text) pairs.
  """
  settings = settings or params.DedupParams()
  dedup = deduplicator.Deduplicator(settings)
  items = []
  for rank, (task, docs) in enumerate(groups):
    prints = dedup.fingerprint([text for _, text in docs], exact_only=task in exact_only)
    items += [components.Item((rank, i), doc_id, task, fp)
              for i, ((doc_id, _), fp) in enumerate(zip(docs, prints))]
  refs = list(zip([doc_id for doc_id, _ in reference],
                  dedup.fingerprint([text for _, text in reference]))) if reference else ()
  return {v.doc_id: v for v in components.resolve(items, settings, refs, cross_task).values()}


def test_a_chain_is_one_component_kept_at_its_best_copy():
  settings = params.DedupParams()
  a, b, c = _words(0, 200), _words(50, 250), _words(100, 300)
  items = _items([((0, 2), "C", "t", c), ((0, 0), "A", "t", a), ((0, 1), "B", "t", b)], settings)
  fps = {item.doc_id: item.fp for item in items}
  assert minhash.jaccard(fps["A"].signature, fps["C"].signature) < settings.jaccard  # A !~ C.
  verdicts = components.resolve(items, settings)
  assert verdicts[(0, 0)].kept and verdicts[(0, 0)].match is None
  for key, similar_to in (((0, 1), "A"), ((0, 2), "B")):
    verdict = verdicts[key]
    assert not verdict.kept and verdict.match.duplicate_of == "A"  # The component's best copy.
    assert verdict.match.level == "near"
    # Its own best pair gives the similarity.
    assert verdict.match.similarity == minhash.jaccard(fps[verdict.doc_id].signature,
                                                       fps[similar_to].signature)


def test_the_copy_of_the_higher_priority_task_is_kept():
  texts = planted.prose_documents()[:6]
  docs = [((1, 0, i), f"web{i}", "web", t) for i, t in enumerate(texts)]
  docs += [((0, 0, 0), "math0", "math", texts[4].upper()),  # An exact copy in math.
           ((0, 0, 1), "math1", "math", texts[5] + " Read more.")]  # A near copy.
  settings = params.DedupParams()
  verdicts = components.resolve(_items(docs, settings), settings)
  assert verdicts[(0, 0, 0)].kept and verdicts[(0, 0, 1)].kept
  assert verdicts[(1, 0, 4)].match == deduplicator.Match("math0", "math", "exact", 1.0)
  assert verdicts[(1, 0, 5)].match.duplicate_of == "math1"
  assert verdicts[(1, 0, 5)].match.level == "near"
  # Without cross_task each task keeps its own copy.
  alone = components.resolve(_items(docs, settings), settings, cross_task=False)
  assert all(v.kept for v in alone.values())


def test_the_strictest_level_of_the_documents_own_pairs_is_reported():
  text = planted.prose_documents()[0]
  docs = [((0,), "a", "t", text), ((1,), "b", "t", text + " Read more."),
          ((2,), "c", "t", text.upper() + " Read more.")]
  settings = params.DedupParams()
  verdicts = components.resolve(_items(docs, settings), settings)
  assert verdicts[(1,)].match.level == "exact"  # b = c exactly (normalised), b ~ a near.
  assert verdicts[(2,)].match.level == "exact"
  assert {v.match.duplicate_of for k, v in verdicts.items() if k != (0,)} == {"a"}


@pytest.mark.parametrize("mode", ["drop", "count"])
def test_reference_matches_are_dropped_first_or_counted_and_not_transitive(mode):
  texts = planted.prose_documents()[:10]
  settings = params.DedupParams(reference_mode=mode)
  dedup = deduplicator.Deduplicator(settings)
  reference = list(zip(["base1", "base0"], dedup.fingerprint([texts[1], texts[0]])))
  docs = [((0,), "d0", "t", texts[0] + " Read more."), ((1,), "d0-copy", "t", texts[0]),
          ((2,), "d2", "t", texts[2]), ((3,), "d2-copy", "t", texts[2].upper())]
  verdicts = components.resolve(_items(docs, settings), settings, reference)
  assert verdicts[(0,)].match.reference and verdicts[(0,)].match.duplicate_of == "base0"
  assert verdicts[(0,)].match.level == "near" and verdicts[(0,)].match.task == "reference"
  if mode == "drop":
    assert not verdicts[(0,)].kept and not verdicts[(1,)].kept
    assert verdicts[(1,)].match.level == "exact" and verdicts[(1,)].match.reference
  else:  # Kept in the components: d0-copy is a near copy of d0, which is kept.
    assert verdicts[(0,)].kept
    assert verdicts[(1,)].match == deduplicator.Match(
        "d0", "t", "near", verdicts[(1,)].match.similarity)
  assert verdicts[(2,)].kept and verdicts[(2,)].match is None
  assert verdicts[(3,)].match == deduplicator.Match("d2", "t", "exact", 1.0)


def test_exact_only_documents_join_only_exact_groups():
  texts = planted.prose_documents()[:3]
  docs = [((0,), "w0", "web", texts[0]), ((1,), "t0", "templated", texts[0] + " Read more."),
          ((2,), "t1", "templated", texts[1]), ((3,), "t1-again", "templated", texts[1].upper())]
  settings = params.DedupParams()
  verdicts = components.resolve(_items(docs, settings, exact_only=("templated",)), settings)
  assert verdicts[(1,)].kept and verdicts[(2,)].kept
  assert verdicts[(3,)].match.duplicate_of == "t1" and verdicts[(3,)].match.level == "exact"


def test_duplicate_keys_are_an_error_naming_them():
  items = _items([((0,), "a", "t", "one"), ((0,), "b", "t", "two")], params.DedupParams())
  with pytest.raises(ValueError, match="'a' and 'b' have the same key"):
    components.resolve(items, params.DedupParams())


def _hot_docs(n=120, seed=0):
  """n documents of one shared header (hot buckets, distinct by the rule), then copies."""
  rng = random.Random(seed)
  vocabulary = " ".join(planted.prose_documents()[:80]).split()
  header = " ".join(rng.choice(vocabulary) for _ in range(150))
  docs = [header + "\n\n" + " ".join(rng.choice(vocabulary) for _ in range(250))
          for _ in range(n)]
  docs += [planted.edit_words(docs[i], rng, 0.05, vocabulary) for i in range(0, n, 10)]
  return [((i,), f"d{i}", "t", text) for i, text in enumerate(docs)]


def test_hot_buckets_hold_to_the_cap_and_count_what_it_skipped():
  docs = _hot_docs()
  capped_settings = params.DedupParams(max_bucket=8)
  items = _items(docs, capped_settings)
  open_verdicts = components.resolve(items, params.DedupParams(max_bucket=0))
  verdicts = components.resolve(items, capped_settings)
  sizes = collections.Counter(k for item in items for k in item.fp.band_keys)
  assert max(sizes.values()) > 8  # The header makes hot buckets.
  expected_skipped = sum((n - 8) * (n - 9) for n in sizes.values() if n > 8)
  expected_capped = sum(n - 8 for n in sizes.values() if n > 8)
  total = sum((counts.document_counts(v, 1) for v in verdicts.values()), collections.Counter())
  assert total["skipped_comparisons"] == expected_skipped  # Each uncompared pair twice.
  assert total["capped_inserts"] == expected_capped
  assert not any(v.skipped or v.capped for v in open_verdicts.values())
  # The distinct documents are kept and the copies found, capped or not.
  for found in (verdicts, open_verdicts):
    assert all(found[(i,)].kept for i in range(120))
    assert sum(not found[(i,)].kept for i in range(120, 132)) >= 11


def _brute_reference_match(fp, refs, settings):
  """(level rank, -similarity, id) of fp's best reference match, and the comparisons skipped:
  every reference document holding one of fp's group or bucket keys, looked up one by one."""
  refs = sorted(refs, key=lambda r: (r[0], r[1].exact))
  best, skipped = None, 0
  for level, key in pairs.group_keys(fp, settings):
    holders = [doc_id for doc_id, other in refs
               if (level, key) in pairs.group_keys(other, settings)]
    if holders:
      best = min(x for x in (best, (pairs.RANK[level], -1.0, holders[0])) if x is not None)
  for kind, key in pairs.bucket_keys(fp, settings):
    members = [(doc_id, other) for doc_id, other in refs
               for found in pairs.bucket_keys(other, settings) if found == (kind, key)]
    cap = settings.max_bucket or len(members)
    skipped += max(0, len(members) - cap)
    for doc_id, other in members[:cap]:
      score = pairs.similarities(kind, fp, [other], settings)[0]
      if score is not None:
        record = (pairs.RANK[pairs.LEVEL_OF[kind]], -score, doc_id)
        best = record if best is None else min(best, record)
  return best, skipped


def _brute_pairs(items, live, settings, cross_task):
  """{(i, j): [(level rank, similarity)]} of the verified pairs (i < j, positions in key order),
  and each position's skipped and capped counts, from plain dicts of buckets and groups."""
  found, skipped, capped = collections.defaultdict(list), [0] * len(items), [0] * len(items)
  groups, buckets = collections.defaultdict(list), collections.defaultdict(list)
  for i, item in enumerate(items):
    if live[i]:
      scope = None if cross_task else item.task
      for level, key in pairs.group_keys(item.fp, settings):
        groups[(scope, level, key)].append(i)
      for kind, key in pairs.bucket_keys(item.fp, settings):
        buckets[(scope, kind, key)].append(i)
  for (_, level, _), members in groups.items():
    for x, i in enumerate(members):  # Every pair of a group: the same as a star.
      for j in members[x + 1:]:
        found[(i, j)].append((pairs.RANK[level], 1.0))
  for (_, kind, _), members in buckets.items():
    cap = settings.max_bucket or len(members)
    for position, j in enumerate(members):
      if position >= cap:
        capped[j] += 1
        skipped[j] += len(members) - 1 - cap
      for i in members[:min(position, cap)]:
        score = pairs.similarities(kind, items[j].fp, [items[i].fp], settings)[0]
        if score is not None:
          found[(i, j)].append((pairs.RANK[pairs.LEVEL_OF[kind]], score))
  return found, skipped, capped


def _brute_resolve(items, settings, refs, cross_task):
  """The module docstring's semantics, written plainly: every pair by its buckets and groups,
  components by a graph search, the smallest key kept."""
  items = sorted(items, key=lambda item: item.key)
  matches = [_brute_reference_match(item.fp, refs, settings) for item in items]
  drop = settings.reference_mode == "drop"
  live = [not (drop and best is not None) for best, _ in matches]
  found, skipped, capped = _brute_pairs(items, live, settings, cross_task)
  neighbours, own = collections.defaultdict(set), {}
  for (i, j), records in found.items():
    neighbours[i].add(j)
    neighbours[j].add(i)
    for node in (i, j):
      for rank, score in records:
        own[node] = min(own.get(node, (rank, -score)), (rank, -score))
  out = {}
  for i, item in enumerate(items):
    component, frontier = {i}, [i]
    while frontier:
      frontier = [n for node in frontier for n in neighbours[node] if n not in component]
      component.update(frontier)
    best, ref_skipped = matches[i]
    ref = None if best is None else deduplicator.Match(
        best[2], "reference", pairs.STRICTNESS[best[0]], -best[1], reference=True)
    counts_ = (skipped[i] + ref_skipped, capped[i])
    root = min(component)
    if ref is not None and drop:
      out[item.key] = deduplicator.Verdict(item.doc_id, item.task, False, ref, *counts_)
    elif root == i:
      out[item.key] = deduplicator.Verdict(item.doc_id, item.task, True, ref, *counts_)
    else:
      match = deduplicator.Match(items[root].doc_id, items[root].task,
                                 pairs.STRICTNESS[own[i][0]], -own[i][1])
      out[item.key] = deduplicator.Verdict(item.doc_id, item.task, False, match, *counts_)
  return out


def _mixed_corpus(seed=11):
  """(key, doc id, task, text) of three tasks: distinct prose, exact copies, near copies
  (words replaced; seven of one document: buckets beyond the cap), a chain A~B~C with
  A !~ C, documents of one shared header,
  and an exact-only task with copies of prose; keys shuffled against the order they come in."""
  rng = random.Random(seed)
  prose = list(planted.prose_documents()[:40])
  vocabulary = " ".join(prose).split()
  texts = [("web", t) for t in prose[:24]] + [("wiki", t) for t in prose[24:]]
  texts += [("wiki", prose[i].upper()) for i in range(0, 24, 6)]  # Exact, across tasks.
  texts += [("web", prose[i] + "  ") for i in range(1, 24, 8)]  # Exact, within a task.
  texts += [("wiki" if i < 24 else "web", planted.edit_words(prose[i], rng, 0.06, vocabulary))
            for i in range(2, 40, 5)]  # Near copies, in the other task.
  texts += [("web", planted.edit_words(prose[10], rng, 0.03, vocabulary))
            for _ in range(7)]  # Buckets beyond the cap.
  texts += [("web", _words(0, 200)), ("wiki", _words(50, 250)), ("web", _words(100, 300))]
  texts += [("wiki", text) for _, _, _, text in _hot_docs(24, seed)[:24]]
  texts += [("templated", prose[3]), ("templated", prose[3].lower()),
            ("templated", planted.edit_words(prose[5], rng, 0.03, vocabulary))]
  ranks = {"templated": 0, "web": 1, "wiki": 2}
  keys = list(range(len(texts)))
  rng.shuffle(keys)
  return [((ranks[task], k // 7, k % 7), f"{task}-{n}", task, text)
          for n, ((task, text), k) in enumerate(zip(texts, keys))]


@pytest.mark.parametrize("mode,cross_task,near_method,string_keys,cap", [
    ("drop", True, "minhash", False, 2), ("count", False, "both", False, 4),
    ("count", True, "minhash", True, 3), ("drop", False, "simhash", False, 2)])
def test_the_columnar_decision_equals_a_brute_force_one(mode, cross_task, near_method,
                                                          string_keys, cap):
  settings = params.DedupParams(levels=("exact", "near", "code"), max_bucket=cap,
                                reference_mode=mode, near_method=near_method)
  dedup = deduplicator.Deduplicator(settings)
  docs = _mixed_corpus()
  items = []
  for key, doc_id, task, text in docs:
    key = tuple(f"k{v:03d}" for v in key) if string_keys else key  # The object fallback.
    items.append(components.Item(key, doc_id, task, dedup.fingerprint(
        [text], exact_only=task == "templated")[0]))
  prose = planted.prose_documents()
  # The chain's first link is in the reference set: with "drop" its far end stays.
  refs = list(zip(["ref-b", "ref-a", "ref-c", "ref-d"],
                  dedup.fingerprint([prose[7], prose[9] + " Read more.", prose[30].upper(),
                                     _words(0, 200)])))
  expected = _brute_resolve(items, settings, refs, cross_task)
  found = components.resolve(items, settings, refs, cross_task)
  assert list(found) == sorted(expected)  # In key order.
  assert dict(found.items()) == expected
  # The corpus exercises what it plants: removals at each level, the cap, references.
  verdicts = list(expected.values())
  assert {v.match.level for v in verdicts if not v.kept and not v.match.reference} >= {
      "exact", "near"}
  assert any(v.capped for v in verdicts) and any(v.match and v.match.reference for v in verdicts)
  across = {v.match.level for v in verdicts
            if v.match and v.match.task != v.task and not v.match.reference}
  assert across == ({"exact", "near"} if cross_task else set())
  # Added in batches through the accumulator, in another order: the same.
  accumulator = components.Accumulator(settings, refs, cross_task)
  shuffled = list(items)
  random.Random(2).shuffle(shuffled)
  for item in shuffled:
    accumulator.add([item.key], [item.doc_id], item.task, [item.fp])
  assert dict(accumulator.resolve().items()) == expected
