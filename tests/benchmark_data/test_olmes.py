"""OLMES request files: names, variants, validation, the stratified sample."""
import gzip
import json

import pytest

from midtrain_jax.benchmark_data import olmes

CONFIG = json.dumps({"task_config": {"primary_metric": "acc_per_char", "split": "test",
                                     "num_shots": 0,
                                     "metric_kwargs": {"uncond_docid_offset": 1000}}})


def _line(doc_id, idx, label=0, context="Q: 1+1?\nAnswer:", continuation=" 2"):
  return json.dumps({"doc_id": doc_id, "idx": idx, "label": label,
                     "request": {"context": context, "continuation": continuation}})


def _file(*lines) -> bytes:
  return gzip.compress("\n".join(lines).encode())


def test_short_names_resolve_to_the_official_variants():
  names = olmes.task_names()
  for name in ("arc_easy:rc", "arc_easy:mc", "hellaswag:rc", "winogrande:rc", "boolq:rc",
               "piqa:rc", "csqa:rc", "socialiqa:rc", "openbookqa:rc", "sciq:rc", "mmlu:rc",
               "mmlu:mc"):
    assert name in names
  arc = olmes.load_task("arc_easy:rc")
  assert (arc.variant, arc.split, arc.primary_metric, arc.num_shots) == (
      "arc_easy/test_rc_5shot", "test", "acc_per_char", 5)
  assert len(arc.docs) == 2376 and all(d.uncond is not None for d in arc.docs)
  doc = arc.docs[0]
  assert doc.choices[doc.label].continuation == " Sunlight is the source of energy for " \
      "nearly all ecosystems."
  assert doc.uncond[0].context == "Answer:"
  boolq = olmes.load_task("boolq:rc")
  assert (boolq.variant, boolq.primary_metric, boolq.split) == ("boolq/rc_5shot", "acc_raw",
                                                                 "validation")
  assert olmes.load_task("arc_easy:mc").docs[0].choices[1].continuation == " B"


def test_mmlu_is_built_olmes_style_and_sampled_over_every_subject():
  rc, mc = olmes.load_task("mmlu:rc"), olmes.load_task("mmlu:mc")
  assert len(rc.docs) == len(mc.docs) == 14042 and rc.macro_average
  assert (rc.primary_metric, mc.primary_metric) == ("acc_per_char", "acc_raw")
  context = mc.docs[0].choices[0].context
  assert context.startswith("The following are multiple choice questions (with answers) "
                            "about abstract algebra.\n\nQuestion: ")
  assert context.count("Question: ") == 6 and context.endswith("\n D. 6\nAnswer:")
  sample = olmes.sample(rc, 100, seed=3)
  assert len(sample.docs) == 100 and len({d.subset for d in sample.docs}) == 57
  assert sample.docs == olmes.sample(rc, 100, seed=3).docs  # The same for every model.
  assert sample.docs != olmes.sample(rc, 100, seed=4).docs
  assert len(olmes.sample(rc, 0).docs) == 14042


@pytest.mark.parametrize("name, message", [
    ("nope:rc", "Unknown OLMES task 'nope:rc'"),
    ("arc_easy", "Unknown OLMES task 'arc_easy'"),
    ("arc_easy:xx", "has no 'xx' variant"),
    ("mmlu:rc0", "MMLU has the formats"),
])
def test_unknown_names_fail_naming_them(name, message):
  with pytest.raises(ValueError, match=message):
    olmes.load_task(name)


def test_a_request_file_is_read_with_its_unconditioned_requests():
  task = olmes.read_request_file(CONFIG, _file(
      _line(0, 0, 1), _line(0, 1, 1, continuation=" 3"),
      _line(1000, 0, 1, "Answer:"), _line(1000, 1, 1, "Answer:", " 3")), "t:rc", "t/rc")
  assert len(task.docs) == 1 and task.docs[0].label == 1 and task.docs[0].doc_id == "0"
  assert [r.continuation for r in task.docs[0].uncond] == [" 2", " 3"]


@pytest.mark.parametrize("lines, message", [
    (["{not json"], "line 1: malformed request, not JSON"),
    ([json.dumps({"doc_id": 0, "idx": 0, "label": 0})], "line 1: malformed request, no "
     "'request.context'"),
    ([_line(0, 0), _line("0", 1)], "line 2: malformed request, 'doc_id' is not int"),
    ([_line(0, 0), _line(0, 0)], "line 2: doc_id 0 has choice 0 twice"),
    ([_line(0, 0), _line(0, 2)], r"doc_id 0 has choices \[0, 2\]"),
    ([_line(0, 0, 5), _line(0, 1, 5)], "doc_id 0 has label 5 of 2 choices"),
])
def test_malformed_request_files_name_the_line(lines, message):
  with pytest.raises(ValueError, match=message):
    olmes.read_request_file(CONFIG, _file(*lines), "t:rc", "t/rc")


def test_a_broken_config_or_archive_member_is_named():
  with pytest.raises(ValueError, match="t/rc/config.json: malformed"):
    olmes.read_request_file("{}", _file(_line(0, 0)), "t:rc", "t/rc")
  with pytest.raises(ValueError, match="not a gzip file"):
    olmes.read_request_file(CONFIG, b"plain", "t:rc", "t/rc")


@pytest.mark.parametrize("name", ["arc_easy:rc", "arc_challenge:rc", "arc_easy:val_rc_5shot",
                                  "hellaswag:rc", "piqa:rc", "winogrande:rc", "csqa:rc",
                                  "socialiqa:rc", "openbookqa:rc", "sciq:rc", "boolq:rc",
                                  "mmlu:rc"])
def test_the_decontaminator_finds_every_scored_item_planted_in_training_text(name):
  """Decontaminating against the task's benchmark finds the items the evaluation
  scores: each sampled item (its last prompt and gold answer, as OLMES shows it)
  planted in unrelated text is a hit of that benchmark."""
  from midtrain_jax.decontam import decontaminator
  task = olmes.load_task(name)
  benchmark = olmes.decontam_benchmark(task)
  deco = decontaminator.Decontaminator.from_benchmarks([benchmark])
  filler = ("The weather report for the coming week calls for mild temperatures and "
            "light winds along the coast, with rain expected on Thursday evening.")
  texts = []
  for doc in olmes.sample(task, 20, seed=5).docs[:20]:
    gold = doc.choices[doc.label]
    texts.append(f"{filler}\n\n{gold.context.split(chr(10) * 2)[-1]}{gold.continuation}"
                 f"\n\n{filler}")
  found = [any(h.benchmark == benchmark for h in hits) for hits in deco.check_batch(texts)]
  assert all(found), f"{found.count(False)} of {len(found)} planted items not found"
