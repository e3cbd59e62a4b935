"""Components over verified pairs: chains, the best copy kept, the reference set, the cap."""
import collections
import random

import pytest

from midtrain_jax.dedup import components, counts, deduplicator, minhash, params
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
