"""Tests of the batch decontamination command and the seqio preprocessor."""
import functools
import gzip
import json
import os
import subprocess
import sys

import pytest

from midtrain_jax import logs
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data.mixtures import seqio_tasks
from midtrain_jax.decontam import batch, decontaminator, seqio_preprocessor
from midtrain_jax.documents import readers as sources
from tests.data import demo_data

_BENCHMARKS = ("gsm8k", "humaneval", "mmlu")


def _clean_texts(count):
  """Real, clean text: paragraphs of this package's own sources."""
  paragraphs = demo_data.package_paragraphs()
  return [paragraphs[i % len(paragraphs)] for i in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A JSONL file of 40 documents; documents 3, 10 and 17 carry items."""
  gsm = benchmarks.load_items("gsm8k")[7]
  human = benchmarks.load_items("humaneval")[11]
  mmlu = benchmarks.load_items("mmlu")[100]
  texts = _clean_texts(40)
  texts[3] += f"\n\nQuestion: {gsm.question}\nAnswer: {gsm.answer}\n"
  texts[10] = f"{human.question}{human.answer}\n# trailing comment\n" + texts[10]
  texts[17] += f"\n{mmlu.question.upper()}\n{mmlu.answer}\nEnd of quiz."
  path = tmp_path_factory.mktemp("in") / "synthetic_qa.jsonl.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      f.write(json.dumps({"id": f"doc{i}", "text": text, "source": "x"}) + "\n")
  expected = {"doc3": ("gsm8k", gsm.id), "doc10": ("humaneval", human.id),
              "doc17": ("mmlu", mmlu.id)}
  return path, texts, expected


def _read_shards(directory):
  records = []
  for name in sorted(os.listdir(directory)):
    with gzip.open(os.path.join(directory, name), "rt", encoding="utf-8") as f:
      records += [json.loads(line) for line in f]
  return records


def _scan(inputs, out, mode="drop", benchmarks=_BENCHMARKS):
  """What the command does for --input files (decontam/__main__.py), as library calls."""
  deco = decontaminator.Decontaminator.from_benchmarks(benchmarks)
  docs = [(sources.file_task_name(str(p)), sources.keyed_records(str(p))) for p in inputs]
  return batch.write_summary(batch.run_local(deco, docs, str(out), mode, "text", 100_000),
                             str(out))


@pytest.mark.parametrize("mode", ["drop", "cut"])
def test_input_files_are_cleaned_and_reported(corpus, tmp_path, mode):
  path, texts, expected = corpus
  out = tmp_path / "out"
  table = _scan([path], out, mode)
  report = [json.loads(l) for l in open(out / "report.jsonl", encoding="utf-8")]
  assert {r["doc_id"]: (r["benchmark"], r["item_id"]) for r in report} == expected
  assert all(set(r) >= {"doc_id", "benchmark", "item_id", "score", "span"}
             and r["score"] >= 0.8 for r in report)
  records = _read_shards(out / "synthetic_qa")
  by_id = {r["id"]: r for r in records}
  if mode == "drop":
    assert len(records) == 37 and not set(expected) & set(by_id)
  else:
    assert len(records) == 40
    for doc_id in expected:
      assert len(by_id[doc_id]["text"]) < len(texts[int(doc_id[3:])])
    assert "trailing comment" in by_id["doc10"]["text"]
    assert by_id["doc17"]["text"].endswith("End of quiz.")
  assert by_id["doc0"] == {"id": "doc0", "text": texts[0], "source": "x"}
  summary = {(s["task"], s["benchmark"]): s
             for s in json.load(open(out / "summary.json", encoding="utf-8"))}
  assert summary[("synthetic_qa", "*")]["docs"] == 40
  assert summary[("synthetic_qa", "*")]["contaminated_docs"] == 3
  assert summary[("synthetic_qa", "*")]["dropped_docs" if mode == "drop" else "cut_docs"] == 3
  assert summary[("synthetic_qa", "gsm8k")]["hits"] == 1
  assert "synthetic_qa" in table and "humaneval" in table
  assert (out / "summary.tsv").read_text().startswith("task\tbenchmark")


def test_command_line_scans_files(corpus, tmp_path):
  """The command itself: absl flags, the printed table, the files it writes."""
  path, _, expected = corpus
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "midtrain_jax.decontam", f"--input={path}", f"--out={out}",
       "--benchmarks=gsm8k,humaneval,mmlu", "--mode=drop"],
      capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "synthetic_qa" in result.stdout and "contaminated_docs" in result.stdout
  report = [json.loads(l) for l in open(out / "report.jsonl", encoding="utf-8")]
  assert {r["doc_id"] for r in report} == set(expected)
  help_text = subprocess.run([sys.executable, "-m", "midtrain_jax.decontam", "--help"],
                             capture_output=True, text=True, check=False).stdout
  assert "--benchmarks" in help_text and "--log_level" in help_text


def test_mixture_tasks_are_read_through_the_registry(corpus, tmp_path):
  _, texts, _ = corpus
  tf = logs.tensorflow()
  seqio = logs.quiet_import("seqio")

  def dataset_fn(split, shuffle_files):
    del split, shuffle_files
    return tf.data.Dataset.from_tensor_slices({"text": texts})

  name = "decontam_cli_test_task"
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
      output_features={})
  out = tmp_path / "out"
  deco = decontaminator.Decontaminator.from_benchmarks(_BENCHMARKS)
  batch.run_local(deco, seqio_tasks.mixture_records(name), str(out), "drop", "text", 1000)
  report = [json.loads(l) for l in open(out / "report.jsonl", encoding="utf-8")]
  assert sorted(r["doc_id"] for r in report) == [
      f"{name}:{i}" for i in (10, 17, 3)]
  assert len(_read_shards(out / name)) == 37
  with pytest.raises(ValueError, match="'no_such_mixture' is not registered"):
    seqio_tasks.mixture_records("no_such_mixture")


def test_bad_input_is_named_in_the_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.jsonl"):
    _scan([tmp_path / "missing.jsonl"], tmp_path / "o", benchmarks=("humaneval",))
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"id": 1, "content": "x"}\n')
  with pytest.raises(ValueError, match="bad.jsonl:1: no string field 'text'"):
    _scan([bad], tmp_path / "o", benchmarks=("humaneval",))
  broken = tmp_path / "broken.jsonl"
  broken.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": \n')
  with pytest.raises(ValueError, match="broken.jsonl:2: bad JSON"):
    _scan([broken], tmp_path / "o", benchmarks=("humaneval",))
  with pytest.raises(ValueError, match="Unknown benchmark 'gsm9k'"):
    _scan([bad], tmp_path / "o", benchmarks=("gsm9k",))


def test_seqio_preprocessor_drops_or_cuts(corpus):
  tf = logs.tensorflow()
  _, texts, _ = corpus
  ds = tf.data.Dataset.from_tensor_slices({"text": texts[:20],
                                           "n": list(range(20))})
  drop = functools.partial(seqio_preprocessor.decontaminate, benchmarks=_BENCHMARKS)
  kept = list(drop(ds).as_numpy_iterator())
  assert [ex["n"] for ex in kept] == [i for i in range(20) if i not in (3, 10, 17)]
  assert kept[0]["text"].decode() == texts[0]
  cut = seqio_preprocessor.decontaminate(ds, benchmarks=_BENCHMARKS, mode="cut")
  cut = {int(ex["n"]): ex["text"].decode() for ex in cut.as_numpy_iterator()}
  assert len(cut) == 20 and cut[4] == texts[4]
  assert all(len(cut[i]) < len(texts[i]) for i in (3, 10, 17))
