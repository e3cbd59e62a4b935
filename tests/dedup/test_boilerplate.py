"""Distinct documents that share boilerplate are kept; edited copies among them are found.

The documents (planted.boilerplate_documents) are drawn without a similarity
filter: whole standard library modules under one Apache licence header,
product pages of one store template, forum posts under one signature. The
bound on false positives, 1% of the distinct documents of a kind, was fixed
before measuring: about what a researcher accepts losing to deduplication.
"""
import collections
import random

import pytest

from midtrain_jax.dedup import params
from tests.dedup import planted
from tests.dedup.test_components import decide

_BOUND = 0.01
_VOCABULARY = " ".join(planted.prose_documents()[:50]).split()


# Edit rates of the planted copies: MinHash at Jaccard 0.4 is meant to find 5-10% edits,
# SimHash within 3 bits near-verbatim copies (dedup/params.py).
_EDITS = {"minhash": (0.05, 0.10), "simhash": (0.01, 0.02)}


def _corpus(edits):
  """(doc id, kind, text): the distinct documents, then an edited copy of every 8th."""
  rng = random.Random(11)
  docs = [(f"{kind}{i}", kind, text)
          for i, (kind, text) in enumerate(planted.boilerplate_documents())]
  copies = [(f"copy-{doc_id}", kind, planted.edit_words(text, rng, rng.uniform(*edits),
                                                        _VOCABULARY))
            for doc_id, kind, text in docs[::8]]
  return docs, copies


def _removed(settings):
  """({kind: distinct documents removed}, {kind: count}, found copies, copies)."""
  docs, copies = _corpus(_EDITS[settings.get("near_method", "minhash")])
  stream = [(doc_id, text) for doc_id, _, text in docs + copies]
  verdicts = decide([("t", stream)], params.DedupParams(**settings))
  removed = collections.Counter(kind for doc_id, kind, _ in docs if not verdicts[doc_id].kept)
  sizes = collections.Counter(kind for _, kind, _ in docs)
  found = sum(not verdicts[doc_id].kept for doc_id, _, _ in copies)
  return removed, sizes, found, len(copies)


@pytest.mark.parametrize(("kind", "near_method"), [
    ("licensed", "minhash"), ("forum", "simhash"),
    pytest.param("forum", "minhash", marks=pytest.mark.xfail(strict=True, reason=(
        "Duplicates are connected components: forum371 is estimated at Jaccard 0.41 with "
        "forum322 and with forum353, so both are removed (2 of 150 posts, 1.3%); comparing "
        "each post only with kept ones removed forum371 alone"))),
    pytest.param("licensed", "simhash", marks=pytest.mark.xfail(strict=True, reason=(
        "SimHash compares word bags: wave.py is within 3 bits of a sibling audio-file module "
        "written from the same pattern (1 of 99 modules, just over the 1% bound)")))])
def test_distinct_documents_under_shared_boilerplate_are_kept(kind, near_method):
  removed, sizes, found, copies = _removed({"near_method": near_method})
  print(f"{near_method}: removed {dict(removed)} of {dict(sizes)}; copies found {found}/{copies}")
  assert removed[kind] <= _BOUND * sizes[kind]
  assert found >= 0.9 * copies  # The edited copies are still found.


@pytest.mark.xfail(strict=True, reason=(
    "Known limitation of comparing whole pages: the Jaccard 0.4 rule joins template pages "
    "whose own text is shorter than the template, and their components chain through them "
    "(57 of 150 removed, measured); strip boilerplate before deduplicating, or compare such "
    "a source by exact copies (exact_only)."))
def test_product_pages_of_one_template_are_kept():
  removed, sizes, _, _ = _removed({})
  assert removed["product"] <= _BOUND * sizes["product"]


def test_loose_rules_fail_the_check():
  # The check can fail: rules that over-match remove distinct documents of every kind.
  for settings in ({"jaccard": 0.2}, {"near_method": "simhash", "simhash_distance": 10}):
    removed, sizes, _, _ = _removed(settings)
    assert all(removed[k] > _BOUND * sizes[k] for k in ("licensed", "forum")), (settings, removed)
