"""Planted duplicates of each kind are found, distinct documents are kept, the keep rule holds."""
import random

import pytest

from midtrain_jax.dedup import deduplicator, minhash, params
from midtrain_jax.dedup import text as text_lib
from tests.dedup import planted
from tests.dedup.test_components import decide

_EMBEDDER = "tests.dedup.planted:bag_embedder"


def _run(docs, **settings):
  """Deduplicates (doc id, text) pairs in one task; returns {doc id: Verdict}."""
  return decide([("task", docs)], params.DedupParams(**settings))


def _plant(originals, make_copy, seed):
  """Originals o0.. then one copy c<i> of each of the first half (in shuffled places)."""
  rng = random.Random(seed)
  docs = [(f"o{i}", text) for i, text in enumerate(originals)]
  half = originals[:len(originals) // 2]
  copies = [(f"c{i}", make_copy(text, rng)) for i, text in enumerate(half)]
  return docs + copies


def _rates(verdicts, level):
  """(recall of the copies at `level`, false-positive rate on the distinct originals)."""
  copies = [v for k, v in verdicts.items() if k.startswith("c")]
  found = sum(not v.kept and v.match.level == level and v.match.duplicate_of == "o" + v.doc_id[1:]
              for v in copies)
  originals = [v for k, v in verdicts.items() if k.startswith("o")]
  return found / len(copies), sum(not v.kept for v in originals) / len(originals)


_VOCABULARY = " ".join(planted.prose_documents()[:50]).split()
_KINDS = {
    "exact": (lambda t, rng: "  " + t.lower().replace(" ", "\n ", 3) + "\n", {}),
    "near_edits": (lambda t, rng: planted.edit_words(t, rng, rng.uniform(0.05, 0.10),
                                                     _VOCABULARY), {}),
    "near_reordered": (planted.reorder_paragraphs, {}),
    "near_simhash_reordered": (planted.reorder_paragraphs, {"near_method": "simhash"}),
    "semantic": (planted.shuffle_words, {"levels": ("exact", "near", "semantic"),
                                         "embedder": _EMBEDDER}),
}


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_planted_prose_duplicates_are_found_and_distinct_documents_kept(kind):
  make_copy, settings = _KINDS[kind]
  docs = _plant(list(planted.prose_documents()), make_copy, seed=sorted(_KINDS).index(kind))
  verdicts = _run(docs, **settings)
  level = kind.split("_")[0]
  recall, false_positives = _rates(verdicts, level)
  print(f"{kind}: recall {recall:.3f}, false positives {false_positives:.4f}")
  assert recall >= 0.95 and false_positives <= 0.01


def test_semantic_copies_need_the_semantic_level():
  docs = _plant(list(planted.prose_documents()[:100]), planted.shuffle_words, seed=5)
  recall, _ = _rates(_run(docs), "near")
  assert recall < 0.2  # Word order is gone: n-gram fingerprints cannot see these.


def test_renamed_python_functions_are_structural_duplicates():
  functions = list(planted.functions())
  docs = _plant(functions, planted.rename_function, seed=3)
  recall, false_positives = _rates(_run(docs, levels=("exact", "code")), "code")
  print(f"code: recall {recall:.3f}, false positives {false_positives:.4f}")
  assert recall >= 0.95 and false_positives <= 0.01
  # The renamed copies are not near duplicates as text.
  near_recall, _ = _rates(_run(docs), "near")
  assert near_recall < 0.5


def test_other_languages_by_token_shape():
  c_function = ("int sum(int *values, int n) {\n  int total = 0;\n  for (int i = 0; i < n; i++) {"
                "\n    total += values[i];  // add\n  }\n  return total;\n}\n")
  renamed = c_function.replace("values", "xs").replace("total", "acc").replace("// add", "")
  renamed = renamed.replace("= 0", "= 7")
  changed = c_function.replace("+=", "-=")
  verdicts = _run([("a", c_function), ("b", renamed), ("c", changed)], levels=("code",))
  assert not verdicts["b"].kept and verdicts["b"].match.duplicate_of == "a"
  assert verdicts["c"].kept


def test_keep_rule_highest_priority_source_then_first_seen():
  texts = list(planted.prose_documents()[:30])
  web_docs = [(f"w{i}", t) for i, t in enumerate(texts)] + [
      (f"w{i}-again", t) for i, t in enumerate(texts[10:20], start=10)]
  groups = [("curated", [(f"m{i}", t) for i, t in enumerate(texts[:10])]), ("web", web_docs)]
  # The curated task comes first (it has priority), so its copy is kept.
  by_id = decide(groups)
  assert all(by_id[f"m{i}"].kept for i in range(10))
  for i in range(10):
    assert by_id[f"w{i}"].match.duplicate_of == f"m{i}" and by_id[f"w{i}"].match.task == "curated"
  for i in range(10, 20):
    assert by_id[f"w{i}"].kept and by_id[f"w{i}-again"].match.duplicate_of == f"w{i}"
  assert decide(groups) == by_id  # Deterministic.


@pytest.mark.parametrize("mode", ["drop", "count"])
def test_reference_set_drops_or_counts(mode):
  texts = list(planted.prose_documents()[:40])
  docs = [(f"d{i}", t) for i, t in enumerate(texts)] + [("d0-again", texts[0])]
  by_id = decide([("task", docs)], params.DedupParams(reference_mode=mode),
                 reference=[(f"base{i}", t) for i, t in enumerate(texts[:10])])
  matched = [by_id[f"d{i}"] for i in range(10)]
  assert all(v.match.reference and v.match.task == "reference" for v in matched)
  assert all(v.kept == (mode == "count") for v in matched)
  assert all(by_id[f"d{i}"].kept and by_id[f"d{i}"].match is None for i in range(10, 40))
  # A second copy is a duplicate of the first kept one (count), or of the reference (drop).
  again = by_id["d0-again"]
  assert not again.kept
  assert again.match.duplicate_of == ("d0" if mode == "count" else "base0")


def test_minhash_estimates_jaccard():
  hasher = minhash.MinHasher(256, seed=3)
  a = " ".join(f"w{i}" for i in range(400))
  b = " ".join(f"w{i}" for i in range(100, 500))  # 300 shared of 500 words.
  sig = hasher.signatures(text_lib.shingle_hashes(text_lib.word_hashes([a, b]), 1))
  assert abs(minhash.jaccard(sig[0], sig[1]) - 0.6) < 0.08


def test_settings_are_validated_naming_the_key():
  with pytest.raises(ValueError, match="jaccard"):
    params.DedupParams(jaccard=1.5)
  with pytest.raises(ValueError, match="embedder"):
    params.DedupParams(levels=("semantic",))
  with pytest.raises(ValueError, match=r"data\.dedup\.levels.*fuzzy"):
    params.from_config({**params.DedupParams().as_dict(), "levels": ("exact", "fuzzy")})


@pytest.mark.parametrize("near_method", ["minhash", "simhash", "both"])
def test_documents_without_words_are_compared_by_exact_copies_only(near_method):
  prose = planted.prose_documents()[0]
  docs = [("a", "!!! ??? --- ..."), ("b", "*** +++ ### ==="), ("c", prose),
          ("d", prose + " Read more."), ("e", "!!!   ???\n--- ...")]
  verdicts = _run(docs, near_method=near_method)
  # No words, no shingles: different symbol runs are not near duplicates of each other.
  assert verdicts["a"].kept and verdicts["b"].kept and verdicts["c"].kept
  assert verdicts["d"].match.level == "near" and verdicts["d"].match.duplicate_of == "c"
  assert verdicts["e"].match.level == "exact" and verdicts["e"].match.duplicate_of == "a"
  fp = deduplicator.Deduplicator(params.DedupParams(near_method=near_method)).fingerprint(
      ["!!! ???"])[0]
  assert fp.signature is None and fp.band_keys is None and fp.simhash is None


def test_exact_only_task_keeps_near_copies_and_loses_exact_ones():
  texts = list(planted.prose_documents()[:20])
  templated = ([(f"t{i}", t + " Share this.") for i, t in enumerate(texts[:5])]  # Near web.
               + [(f"t{i}", t) for i, t in enumerate(texts[10:20], start=5)]
               + [("t5-again", texts[10].upper()), ("t6-near", texts[11] + " Read more.")])
  # Exact-only documents join only exact groups: a later near copy does not match them.
  later = [("x", texts[12] + " Read more."), ("y", texts[13])]
  by_id = decide([("web", [(f"w{i}", t) for i, t in enumerate(texts[:10])]),
                  ("templated", templated), ("web-later", later)], exact_only=("templated",))
  assert all(by_id[f"w{i}"].kept for i in range(10))
  assert all(by_id[f"t{i}"].kept for i in range(15)) and by_id["t6-near"].kept
  assert by_id["t5-again"].match.level == "exact" and by_id["t5-again"].match.duplicate_of == "t5"
  assert by_id["x"].kept and by_id["y"].match.duplicate_of == "t8"
