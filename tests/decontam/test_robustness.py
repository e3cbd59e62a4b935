"""Held-out robustness of the decontaminator (the suite of benchmarks/decontam_harness/).

Real benchmark items are planted with realistic edits into demo-corpus text
and scanned with an index of every benchmark item except a held-out clean
pool; clean near-topic text (held-out items, educational code, math lessons)
must stay clean. Rules, thresholds and the bounds below are chosen on the
TUNE split: each bound is the tune figure measured on this sample less a
margin. The TEST split (other items, other clean documents, other textbook
exercises) is printed beside it and only held to loose floors that were not
fitted to anything (recall 0.5, false positives 5%), so a broken scanner
still fails while the figure stays a reported, not a tuned, one. Items that
pin a rule below are tune-split items (`test_pinned_items_are_tune_items`).
"""
import json
import random

import numpy as np
import pytest

from benchmarks.decontam_harness import cases, edits, splits, textbook
from benchmarks.decontam_harness import report as harness_report
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data.mixtures.corpora import demo
from midtrain_jax.decontam import decontaminator, normalize, params
from midtrain_jax.decontam import index as decontam_index

_PER_KIND = 25  # Items per benchmark and edit kind: 87..175 per kind.
_EDUCATIONAL = 60  # Documents per educational kind and split.
# Measured on the tune split of this sample: 0.983, 0.971, 1.0, 1.0, 0.993,
# 1.0, 0.993, 0.94, 1.0 (in this order).
_MIN_RECALL = {
    # Misses: generic questions ("What causes sound?") need their answer.
    "web_question": 0.95,
    # Misses: the replaced word is the gist of the question, or breaks every
    # 5-gram of an 8-word one.
    "short_substitution": 0.93,
    "numbers_latex": 0.95,
    "chat_template": 0.98,
    "partial_quote": 0.97,
    "split_first": 0.97,
    "split_second": 0.97,
    # Misses: solutions no more informative than textbook code (HumanEval's
    # Fibonacci and prime check, a palindrome loop) are no keys.
    "answer_only": 0.9,
    "answer_separated": 0.98,
}
# (benchmark, item id) of the items the tests below pin rules with.
_PINNED = (("arc_easy", "VASoL_2010_5_18"), ("arc_challenge", "Mercury_SC_LBS10027"),
           ("humaneval", "HumanEval/55"), ("humaneval", "HumanEval/31"))


def _texts(task: str) -> list[str]:
  texts = []
  for path in demo.materialise(task):
    with open(path, encoding="utf-8") as f:
      texts += [json.loads(line)["text"] for line in f if line.strip()]
  return texts


@pytest.fixture(scope="module")
def items():
  return {name: benchmarks.load_items(name) for name in benchmarks.EVAL_SUITE}


@pytest.fixture(scope="module")
def texts():
  web = [t for task in ("web_c4", "web_wikipedia", "web_openwebtext")
         for t in _texts(task) if len(t) >= 200]
  code = [t[i:i + 4000] for t in _texts("code_python_stdlib")
          for i in range(0, len(t), 4000)]
  return {"clean_web": web, "clean_code": code,
          "clean_math_synthetic": _texts("math_synthetic"),
          "clean_program_traces": _texts("thinking_program_traces")}


@pytest.fixture(scope="module")
def deco():
  index = splits.suite_index(benchmarks.DEFAULT_SUITE, benchmarks.EVAL_SUITE,
                             params.DecontamParams())
  return decontaminator.Decontaminator(index)


def _report(deco, items, texts, split):
  ctx = edits.Context(web=texts["clean_web"], code=texts["clean_code"])
  planted = cases.make_cases(items, ctx, split, _PER_KIND)
  clean = cases.clean_cases(items, ctx, texts, split, per_kind=100)
  clean += cases.educational_cases(split, _EDUCATIONAL)
  return harness_report.evaluate(deco, planted + clean)


@pytest.fixture(scope="module")
def reports(deco, items, texts):
  found = {split: _report(deco, items, texts, split) for split in splits.SPLITS}
  print(harness_report.format_side_by_side(found))
  return found


@pytest.mark.parametrize("kind", sorted(_MIN_RECALL))
def test_recall_per_edit_kind_on_the_tune_split(reports, kind):
  report = reports["tune"]
  total = sum(v[1] for (k, _), v in report.found.items() if k == kind)
  assert total >= 80
  assert report.recall(kind) >= _MIN_RECALL[kind], [
      f"{c.benchmark}/{c.item_id}" for c in report.misses if c.kind == kind]


def test_recall_per_benchmark_on_the_tune_split(reports):
  for name in benchmarks.EVAL_SUITE:
    assert reports["tune"].recall(benchmark=name) >= 0.95, name


def test_false_positive_rate_on_clean_near_topic_text(reports):
  # Held-out items (other word problems, functions, quiz questions), rendered
  # like leaks; synthetic math and program traces; web pages and code;
  # textbook functions, utility modules, code tutorials and math lessons.
  report = reports["tune"]
  clean = sum(v[1] for v in report.flagged.values())
  assert clean > 1000
  assert report.false_positive_rate() <= 0.005, report.false_hits
  assert report.false_positive_rate("clean_items") <= 0.01
  # Educational code: what remains is HumanEval/13's prompt (a gcd signature
  # and docstring) with Euclid's loop after it, about 0.5% of code tutorials.
  for kind in textbook.KINDS:
    assert report.false_positive_rate(kind) <= 0.02, report.false_hits


def test_test_split_is_reported_and_only_held_to_unfitted_floors(reports):
  report = reports["test"]
  assert sum(v[1] for v in report.found.values()) > 800
  assert report.recall() > 0.5
  assert report.false_positive_rate() < 0.05


def test_split_is_seeded_deterministic_and_disjoint(items):
  roles = splits.split_items(items)
  again = splits.split_items(items)
  ids = {role: {(b, it.id) for b, its in by.items() for it in its}
         for role, by in roles.items()}
  assert ids == {role: {(b, it.id) for b, its in by.items() for it in its}
                 for role, by in again.items()}
  total = sum(map(len, ids.values()))
  assert len(set().union(*ids.values())) == total  # Disjoint.
  assert abs(len(ids["test"]) / total - 0.45) < 0.02
  assert abs(len(ids["clean_test"]) / total - 0.05) < 0.01
  assert splits.split_items(items, seed=1)["test"] != roles["test"]


def test_math_is_read_the_same_however_it_is_typed():
  same = [(r"$\frac{1}{2} \cdot \left(x^2 + 1{,}000\right) \le \sqrt{3}\pi$",
           "1/2 * (x² + 1{,}000) <= √3·π"),
          ("12,345 apples cost $1,000.", "12345 apples cost $1000."),
          ("a₁ − b³ × 2πr", "a_1 - b^3 * 2 pi r"),
          (r"\dfrac{7}{16} \times \text{5 cm}", "7/16 × 5 cm")]
  for latex, plain in same:
    np.testing.assert_array_equal(normalize.token_hashes(latex), normalize.token_hashes(plain))
  # Lists and decimals are not thousands: 1, 2, and, 3, 500.
  assert normalize.token_hashes("1,2 and 3.500").size == 5


def test_answer_only_leaks_are_found_by_rule_answer(deco, items):
  tune = splits.split_items(items)["tune"]
  gsm = next(it for it in tune["gsm8k"] if len(it.answer) > 200)
  code = next(it for it in tune["mbpp"] if len(it.answer) > 150)
  for item in (gsm, code):
    text = f"Notes from class.\n{item.answer}\nSee you next week."
    hits = deco.check(text)
    assert [(h.item_id, h.rule) for h in hits] == [(item.id, "answer")]
    cleaned, _ = deco.clean(text, mode="cut")
    assert cleaned.startswith("Notes") and len(cleaned) < 50
  # With its question before it, it is part of the question's hit.
  hits = deco.check(f"{gsm.question}\n{gsm.answer}")
  assert [(h.item_id, h.rule, h.answer_score) for h in hits] == [
      (gsm.id, "overlap", 1.0)]


def test_a_long_verbatim_half_counts_and_boilerplate_does_not(deco, items):
  tune = splits.split_items(items)["tune"]
  item = next(it for it in tune["gsm8k"] if len(it.question.split()) > 60)
  half = " ".join(item.question.split()[:30])
  hits = deco.check(f"Intro.\n{half}\nOutro.")
  assert [(h.item_id, h.rule) for h in hits] == [(item.id, "partial")]
  prompt = next(it for it in items["mmlu"]
                if it.id.startswith("moral_scenarios")).question
  assert not deco.check(prompt.split("Scenario 1")[0])


def test_informative_short_questions_count_alone_whatever_is_indexed(deco):
  arc = {name: benchmarks.load_items(name) for name in ("arc_easy",
                                                        "arc_challenge")}
  small = decontaminator.Decontaminator(decontam_index.build_index(
      arc, deco.index.params))
  informative = next(it for it in arc["arc_easy"]  # "Photosynthesis occurs in
                     if it.id == "VASoL_2010_5_18")  # which of these organisms?"
  generic = next(it for it in arc["arc_challenge"]
                 if it.id == "Mercury_SC_LBS10027")  # What is potential energy?
  for d in (deco, small):
    found = lambda text, d=d: {h.item_id for h in d.check(text)}
    assert informative.id in found(
        f"Someone asked me:\n{informative.question}\nNo idea.")
    # A generic question counts only with its answer right after it.
    assert generic.id not in found(f"Quiz.\n{generic.question}\nNo idea.")
    assert generic.id in found(f"Quiz.\n{generic.question}\n{generic.answer}")


def test_pinned_items_are_tune_items(items):
  # A rule pinned on an item makes that item a tuning item: it must not be
  # one whose recall the test split reports.
  for name, item_id in _PINNED:
    assert splits.item_role(name, item_id) == "tune", (name, item_id)
  tune = splits.split_items(items)["tune"]
  gsm = next(it for it in tune["gsm8k"] if len(it.question.split()) > 60)
  assert splits.item_role("gsm8k", gsm.id) == "tune"


def _tutorial(code: str) -> str:
  return ("# Recursion and loops in Python\n\nA classic first exercise. Here is the "
          f"usual solution:\n\n```python\n{code}```\n\nTry it with a few inputs.\n")


def test_textbook_code_is_no_contamination_but_distinctive_solutions_are(deco, items):
  humaneval = {it.id: it for it in items["humaneval"]}
  # HumanEval's Fibonacci and prime check are every tutorial's: their
  # answers carry no more information than textbook code, so they are no keys.
  generic = [humaneval["HumanEval/55"], humaneval["HumanEval/31"]]
  texts = [_tutorial(f"def {it.entry_point}(n):\n{it.answer}") for it in generic]
  assert deco.check_batch(texts) == [[], []]
  ids = list(deco.index.item_ids)
  assert not any(deco.index.answer_key[ids.index(it.id)] for it in generic)
  # Counting by length alone (the former rule) calls both HumanEval.
  by_length = decontaminator.Decontaminator(decontam_index.build_index(
      {"humaneval": items["humaneval"]}, params.DecontamParams(answer_min_info=0)))
  assert [[h.item_id for h in hits] for hits in by_length.check_batch(texts)] == [
      ["HumanEval/55"], ["HumanEval/31"]]
  # A solution with its own vocabulary (11, 13 and '7' in a counting loop) is
  # still found alone, in the same tutorial.
  item = humaneval["HumanEval/36"]
  assert splits.item_role("humaneval", item.id) == "tune"
  hits = deco.check(_tutorial(f"def count_sevens(n):\n{item.answer}"))
  assert [(h.item_id, h.rule) for h in hits] == [(item.id, "answer")]


def test_textbook_functions_run_and_agree_across_styles():
  # Every style of a family computes the same thing: the suite's textbook
  # code is working code, and its outputs are real.
  rng = random.Random(0)
  known = {"fibonacci": "55", "factorial": "120", "prime_check": "True", "gcd": "6",
           "bubble_sort": "[1, 2, 3, 5, 8, 9]", "palindrome": "True", "sum_list": "28",
           "count_vowels": "3", "sum_and_product": "(28, 2160)"}
  for family in textbook.FAMILIES:
    outputs = {tuple(out for _, out in textbook.function(family, rng, style)[1])
               for style in range(len(family.styles))}
    assert len(outputs) == 1, (family.name, outputs)
    if family.name in known:
      assert outputs.pop()[0] == known[family.name], family.name
  # Families are split by name: disjoint halves, both sizeable.
  tune, test = ({f.name for f in textbook.families(s)} for s in splits.SPLITS)
  assert not tune & test and min(len(tune), len(test)) >= 20
