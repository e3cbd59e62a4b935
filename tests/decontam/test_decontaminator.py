"""Quality and behaviour tests of the decontaminator on real text and items.

Real benchmark items are planted into clean real documents (CPython standard
library source and docstrings; C4, Wikipedia, OpenWebText and Alpaca prose
from the llamafactory sdist and the evals wheel), verbatim and lightly
edited; recall and the
false-positive rate on the clean documents are asserted.
"""
import json
import os
import random
import re
import sysconfig
import tarfile
import zipfile

import numpy as np
import pytest

from midtrain_jax import cache
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.decontam import decontaminator, hashing, normalize, params

_PLANTS_PER_BENCHMARK = 200
_FILLER = "river lamp quietly seven orange window market violet engine".split()


@pytest.fixture(scope="module")
def deco():
  return decontaminator.Decontaminator.from_benchmarks()


def _stdlib_docs(chunk=4000):
  root = sysconfig.get_paths()["stdlib"]
  docs = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d not in (
        "site-packages", "dist-packages", "test", "tests", "idlelib",
        "__pycache__"))
    for name in sorted(files):
      if name.endswith(".py"):
        with open(os.path.join(folder, name), encoding="utf-8",
                  errors="replace") as f:
          text = f.read()
        docs += [text[i:i + chunk] for i in range(0, len(text), chunk)]
  return docs


def _prose_docs(chunk=4000):
  archive = cache.fetch_package_archive("llamafactory", "0.9.5", sdist=True)
  with tarfile.open(archive) as tar:
    def member(name):
      return tar.extractfile(f"llamafactory-0.9.5/data/{name}").read().decode()
    docs = [json.loads(l)["text"] for l in member("c4_demo.jsonl").splitlines()
            if l.strip()]
    wiki = member("wiki_demo.txt")
    docs += [wiki[i:i + chunk] for i in range(0, len(wiki), chunk)]
    docs += [f"{r['instruction']}\n{r['input']}\n{r['output']}"
             for r in json.loads(member("alpaca_en_demo.json"))]
  # Wikipedia and OpenWebText snippets: where trivia and passages live.
  with zipfile.ZipFile(cache.fetch_package_archive("evals",
                                                   "3.0.1.post1")) as wheel:
    for name in ("wikipedia_5.jsonl", "owt_5.jsonl"):
      data = wheel.read(f"evals/registry/data/schelling_point/{name}")
      docs += [json.loads(l)["0"] for l in data.splitlines() if l.strip()]
  return docs


@pytest.fixture(scope="module")
def clean_docs():
  return {"stdlib": _stdlib_docs(), "prose": _prose_docs()}


def _edit(text, kind, rng, n_tokens):
  """Applies one light edit of the kinds real leaks show."""
  if kind == "verbatim":
    return text
  if kind == "case":
    return rng.choice([text.upper(), text.lower(), text.title()])
  if kind == "lines":  # Split across lines, odd spacing.
    return "".join(w + rng.choice([" ", "  ", "\n", " \n  ", "\t"])
                   for w in text.split())
  if kind == "punct":
    if rng.random() < 0.5:  # Sentence punctuation dropped.
      return re.sub(r"[^\w\s]+(?=\s|$)|(?<=\s)[^\w\s]+|^[^\w\s]+", "", text)
    return (text.replace("'", "\u2019").replace('"', "\u201c")
            .replace(". ", " ... ").replace(", ", " , "))
  if kind == "words":  # A few words changed.
    words = text.split()
    for j in rng.sample(range(len(words)), min(3, max(1, n_tokens // 15))):
      words[j] = rng.choice(_FILLER)
    return " ".join(words)
  raise ValueError(kind)


def _render(item, kind, rng, n_tokens):
  """Formats an item the ways training data carries it."""
  other = "verbatim" if kind == "words" else kind
  question = _edit(item.question, kind, rng, n_tokens)
  answer = _edit(item.answer, other, rng, n_tokens)
  parts = [_edit(item.passage, other, rng, n_tokens)] if item.passage else []
  style = rng.randrange(3)
  if style == 1 and item.choices:
    options = "\n".join(f"{'ABCDEFGHIJ'[i]}. {c}"
                        for i, c in enumerate(item.choices))
    parts.append(f"{question}\n{options}\nThe answer is {answer}")
  elif style == 0:
    parts.append(f"Question: {question}\nAnswer: {answer}")
  else:
    parts.append(f"{question}\n\n{answer}")
  return "\n".join(parts)


def _plant(doc, snippet, rng):
  """Inserts `snippet` at a random line break of `doc`."""
  cut = doc.rfind("\n", 0, rng.randrange(len(doc) + 1)) + 1
  return doc[:cut] + snippet + "\n" + doc[cut:]


def test_recall_on_planted_items_is_at_least_99_percent(deco, clean_docs):
  rng = random.Random(0)
  hosts = clean_docs["stdlib"][::7] + clean_docs["prose"]
  short_len = deco.index.params.short_len
  docs, truth = [], []
  for name, items in benchmarks.load_suite().items():
    for item in rng.sample(items, min(len(items), _PLANTS_PER_BENCHMARK)):
      n = len(normalize.token_hashes(item.question))
      # Short questions get the exact-match rule: word changes are out of scope.
      kinds = ["verbatim", "case", "lines", "punct"] + (
          ["words"] if n > short_len else [])
      kind = rng.choice(kinds)
      docs.append(_plant(rng.choice(hosts), _render(item, kind, rng, n), rng))
      truth.append((name, item, kind, n <= short_len))
  found = [any(h.benchmark == name and h.item_id == item.id for h in hits)
           for (name, item, _, _), hits in zip(truth, deco.check_batch(docs))]
  recall = float(np.mean(found))
  short = [f for f, t in zip(found, truth) if t[3]]
  edited = [f for f, t in zip(found, truth) if t[2] == "words"]
  print(f"recall={recall:.4f} over {len(docs)} planted items; "
        f"short items {np.mean(short):.4f} ({len(short)}); "
        f"word-edited {np.mean(edited):.4f} ({len(edited)})")
  assert len(short) > 500 and len(edited) > 150
  assert recall >= 0.99
  assert np.mean(short) >= 0.99


@pytest.mark.parametrize("corpus", ["stdlib", "prose"])
def test_false_positive_rate_on_clean_text_is_at_most_0_1_percent(
    deco, clean_docs, corpus):
  docs = clean_docs[corpus]
  flagged = [(d, hits) for d, hits in zip(docs, deco.check_batch(docs)) if hits]
  rate = len(flagged) / len(docs)
  print(f"{corpus}: {len(flagged)} of {len(docs)} clean documents flagged "
        f"(rate {rate:.5f}); {[h for _, hs in flagged for h in hs][:5]}")
  assert len(docs) > 1000
  assert rate <= 0.001


def test_normalisation_ignores_case_whitespace_and_punctuation():
  a = normalize.tokenize("Janet\u2019s ducks, LAY 16 eggs!\n per-day\u00a0\u00abok\u00bb")
  b = normalize.token_hashes("janet s ducks lay 16 eggs per day ok")
  np.testing.assert_array_equal(a.hashes, b)
  assert a.starts.tolist()[:3] == [0, 8, 10]
  assert a.ends.tolist()[:3] == [5, 9, 15]
  # Hashes are part of the saved index format: they must never drift.
  assert int(normalize.token_hashes("Hello, WORLD!")[0]) == 0x449a4e4f885aef6b
  grams = hashing.ngram_hashes(
      normalize.token_hashes("the quick brown fox jumps"), 5)
  assert grams.size == 1 and int(grams[0]) == 0xd41c419a25d7b93c


def test_short_items_need_an_exact_match_or_their_answer(deco):
  # "Which ethical cosmetics company opened its first store in Poole, Dorset
  # in 1994?" (a tune-split item, see benchmarks/decontam_harness/splits.py).
  item = next(it for it in benchmarks.load_items("triviaqa")
              if it.id == "dpql_5290")
  text = f"Trivia night.\n{item.question}\n{item.answer}\nThanks all."
  hits = deco.check(text)
  assert [(h.benchmark, h.item_id, h.rule) for h in hits] == [
      ("triviaqa", "dpql_5290", "exact")]
  start, end = hits[0].span
  assert text[start:end].startswith(item.question[:-1])
  # One word changed: found only with the answer right after it.
  changed = text.replace("opened", "launched")
  hits = deco.check(changed)
  assert [(h.item_id, h.rule) for h in hits] == [("dpql_5290", "overlap")]
  assert 0.8 <= hits[0].score < 1.0 and hits[0].answer_score == 1.0
  assert not deco.check(changed.replace(item.answer, "Cats"))
  # A changed number makes another question.
  assert not deco.check(text.replace("1994", "1995"))


def test_generic_question_needs_its_answer_nearby(deco):
  generic = next(it for it in benchmarks.load_items("mmlu")
                 if it.question.strip() == "Which of the following is true?")
  # The same question text without the item's answer is ordinary prose.
  assert not deco.check("Which of the following is true? Nobody knew.")
  hits = deco.check(f"Which of the following is true?\n{generic.answer}")
  assert any(h.item_id == generic.id for h in hits)


def test_passage_alone_is_not_contamination_but_with_question_it_is(deco):
  item = benchmarks.load_items("boolq")[0]
  assert not deco.check(f"From the encyclopedia:\n{item.passage}\nEnd.")
  hits = deco.check(f"{item.passage}\nQ: {item.question}? A: {item.answer}")
  assert [(h.benchmark, h.item_id) for h in hits] == [("boolq", "0")]
  assert hits[0].passage_score >= 0.9
  assert not deco.check(f"Q: {item.question}? A: {item.answer}")


def test_clean_drops_or_cuts_only_the_item(deco):
  item = benchmarks.load_items("gsm8k")[7]  # A tune-split item.
  before, after = "An unrelated intro line.\n", "\nA closing remark on rivers."
  text = f"{before}Question: {item.question}\nAnswer: {item.answer}{after}"
  cleaned, hits = deco.clean(text, mode="drop")
  assert cleaned is None and hits[0].item_id == item.id
  assert hits[0].score == 1.0 and hits[0].answer_score == 1.0
  cleaned, hits = deco.clean(text, mode="cut")
  assert cleaned.startswith(before.strip()) and cleaned.endswith(after.strip())
  assert item.question[:30] not in cleaned and len(cleaned) < 80
  assert deco.clean("Nothing to see here.", mode="cut") == (
      "Nothing to see here.", [])
  with pytest.raises(ValueError, match="mode"):
    deco.clean(text, mode="erase")


def test_spans_are_character_offsets_in_non_ascii_text(deco):
  item = benchmarks.load_items("humaneval")[1]  # A tune-split item.
  text = "\u00c9t\u00e9 \u2014 caf\u00e9 na\u00efve \u4e2d\u6587\n" + item.question
  hits = deco.check(text)
  assert hits and text[hits[0].span[0]:].startswith("from typing import List")


def test_index_is_saved_reused_and_checked(tmp_path):
  small = decontaminator.Decontaminator.from_benchmarks(["humaneval"],
                                                  cache_dir=str(tmp_path))
  path = decontaminator.index_path(("humaneval",), params.DecontamParams(),
                             str(tmp_path))
  assert os.path.exists(path) and small.index.num_items == 164
  again = decontaminator.Decontaminator.from_index_file(path)
  np.testing.assert_array_equal(again.index.tables[-1].hashes,
                                small.index.tables[-1].hashes)
  with pytest.raises(ValueError, match="other parameters"):
    decontaminator.Decontaminator.from_index_file(path, threshold=0.5)
  with pytest.raises(ValueError, match="thresh"):
    decontaminator.Decontaminator.from_benchmarks(["humaneval"], thresh=0.5)


def test_threshold_and_weighting_are_configurable(tmp_path):
  item = benchmarks.load_items("humaneval")[4]  # A tune-split item.
  words = item.question.split()
  # Replace every fourth word: about 75% of the question survives.
  edited = " ".join("zzz" if i % 4 == 1 else w for i, w in enumerate(words))
  strict = decontaminator.Decontaminator.from_benchmarks(
      ["humaneval"], cache_dir=str(tmp_path), weighting="uniform")
  # Loose enough to verify a question with a single untouched 5-gram left.
  loose = decontaminator.Decontaminator.from_benchmarks(
      ["humaneval"], cache_dir=str(tmp_path), weighting="uniform",
      threshold=0.3, assisted_threshold=0.3, min_hit_fraction=0.0)
  assert not strict.check(edited)
  assert [h.item_id for h in loose.check(edited)] == [item.id]


def test_tiny_question_is_found_through_its_answer(deco):
  item = next(it for it in benchmarks.load_items("mmlu")
              if it.id == "anatomy/100")
  assert item.question == "Osteoclasts"
  options = "\n".join(f"({'ABCD'[i]}) {c}" for i, c in enumerate(item.choices))
  hits = deco.check(f"Quiz.\n{item.question}\n{options}\nAnswer: {item.answer}")
  assert {(h.benchmark, h.item_id) for h in hits} == {("mmlu", "anatomy/100")}
  assert not deco.check(f"Bone cells {item.answer}")


def test_provenance_tells_which_benchmarks_are_missing(deco):
  record = deco.provenance()
  assert record["benchmarks"] == list(benchmarks.DEFAULT_SUITE)
  assert record["params"]["threshold"] == 0.8
  assert decontaminator.missing_benchmarks(record, ["gsm8k", "mmlu"]) == []
  partial = {**record, "benchmarks": ["gsm8k"]}
  assert decontaminator.missing_benchmarks(partial, ["gsm8k", "mmlu"]) == ["mmlu"]
  assert decontaminator.missing_benchmarks(None, ["gsm8k"]) == ["gsm8k"]
