"""The local and the Beam preparation write the same folder; both resume.

A small mixture of two tasks of two files each, built from real documents with
planted copies: exact and near copies within a task and across tasks, a
benchmark item (twice: one copy is deduplicated, the other decontaminated)
and a malformed record. Every stage is on: cross-task deduplication,
decontamination, the held-out split, sharding and quality scores (QAU).
"""
import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from unittest import mock

import numpy as np
import pytest
from etils import epath

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import pipeline
from midtrain_jax.data.prepare import beam_stages, progress, qau_scores, staging
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.decontam import decontaminator
from tests.dedup import planted

_MIX = """\
name: prep_mix
description: two tasks of two files sharing documents
tasks:
  curated: {files: ["curated-*.jsonl"], capability: qa, weight: 0.5, max_epochs: 2}
  web: {files: ["web-*.jsonl"], capability: web, weight: 0.5, max_epochs: 2}
"""
_ONE_WORKER = "--runner=FnApiRunner --direct_num_workers=1"
_TWO_WORKERS = ("--runner=FnApiRunner --direct_num_workers=2 "
                "--direct_running_mode=multi_processing")


def _write(path: pathlib.Path, texts: list[str], extra: tuple[str, ...] = ()) -> None:
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts) +
                  "".join(line + "\n" for line in extra))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> pathlib.Path:
  """curated: 31 records, 1 exact copy; web: 66 records, 1 malformed, 1 benchmark item
  left after 4 copies (exact within web, near within web, near of curated, exact item)."""
  root = tmp_path_factory.mktemp("prep_mix")
  texts = list(planted.prose_documents()[:90])
  leak = "Solutions blog.\n" + benchmarks.load_items("humaneval")[0].question + "\nThanks!"
  _write(root / "curated-0.jsonl", texts[:15])
  _write(root / "curated-1.jsonl", texts[15:30] + [texts[3]])
  _write(root / "web-0.jsonl", texts[30:60] + [texts[31].lower()], ("{broken",))
  _write(root / "web-1.jsonl", [leak] + texts[60:90] + [texts[5] + " Share this.", texts[40],
                                                        leak])
  _write(root / "base.jsonl", [texts[50], texts[2].upper()])  # A "pretraining" reference.
  (root / "mix.yaml").write_text(_MIX)
  return root


def _cfg(root: pathlib.Path, **overrides):
  cfg = config_lib.data_config()
  cfg.mixture = str(root / "mix.yaml")
  cfg.update({"heldout_fraction": 0.2, "heldout_max_docs": 4, "shard_docs": 7, **overrides})
  cfg.dedup.levels = ("exact", "near")
  cfg.decontam.benchmarks = ("humaneval",)
  cfg.qau.update(enabled=True, positive_tasks=("curated",), negative_tasks=("web",),
                 scorer_docs=30)
  return cfg


def _prepare(cfg, out, runner="local", options=(), log=lambda _: None):
  return preparation.prepare(cfg, out, log=log, runner=runner, beam_options=options)


def _content(path: pathlib.Path):
  """A file's bytes; arrays for .npz (zip entries carry a time); no timing in scorer.json."""
  if path.suffix == ".npz":
    with np.load(path) as arrays:
      return {name: arrays[name].tolist() for name in arrays.files}
  if path.name == "scorer.json":
    return {k: v for k, v in json.loads(path.read_text()).items() if k != "seconds"}
  return path.read_bytes()


def _files(folder: pathlib.Path) -> dict[str, object]:
  return {str(p.relative_to(folder)): _content(p)
          for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_run(sources, tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("local") / "out"
  _prepare(_cfg(sources), out)
  return out


def test_the_local_run_applies_every_stage(local_run):
  curated, web = (layout.read_stats(local_run, t) for t in ("curated", "web"))
  assert curated["dedup"]["counts"]["removed_docs"] == 1
  counts = web["dedup"]["counts"]
  assert counts["docs"] == 65 and counts["removed_docs"] == 4 and counts["cross_task"] == 1
  assert web["malformed"] == 1 and web["records_read"] == 66
  assert web["decontam"]["counts"]["dropped_docs"] == 1
  assert web["heldout_docs"] == curated["heldout_docs"] == 4
  # Every kept document is trained on or held out, but the one decontaminated.
  assert web["train_docs"] + web["heldout_docs"] == 65 - 4 - 1
  assert web["train_shards"] == -(-web["train_docs"] // 7)
  shard = layout.finished_shards(local_run / "web")[1]
  assert shard["docs"] == web["train_docs"] and shard["records"] == web["train_docs"] + 1
  scores = layout.read_quality_scores(local_run, "web")
  assert len(scores["scores"]) == web["train_docs"] and 0 < scores["scores"].min()


@pytest.mark.parametrize("options", [_ONE_WORKER, _TWO_WORKERS], ids=["1worker", "2workers"])
def test_beam_writes_the_local_folder(sources, local_run, tmp_path, options, monkeypatch):
  def no_rescoring(*args):
    raise AssertionError(f"the pipeline left documents to score: {args}")

  # The pipeline scores the documents itself: nothing is left to score from the shards.
  monkeypatch.setattr(qau_scores, "train_documents", no_rescoring)
  if options == _ONE_WORKER:
    # In this process (the workers of the other run import their own): files of 15 to
    # 33 records are numbered in many blocks, shards and blocks cut across each other.
    monkeypatch.setattr(beam_stages, "BLOCK", 3)
  logs = []
  _prepare(_cfg(sources), tmp_path / "beam", "beam", options, logs.append)
  assert _files(tmp_path / "beam") == _files(local_run)
  assert any("beam: duplicates_removed 5" in line for line in logs)
  block = 3 if options == _ONE_WORKER else beam_stages.BLOCK
  largest = {line.split()[-2]: int(line.split()[-1].replace(",", ""))
             for line in logs if "beam: largest" in line}
  assert largest["records_per_block"] <= block and largest["records_per_shard"] <= 7 + 1


def _batches(sources, folder: pathlib.Path, n: int = 6) -> list[dict]:
  cfg = _cfg(sources)
  cfg.update(data_dir=str(folder), seq_len=64, batch_size=4)
  it = pipeline.make_train_iterator(cfg, seed=3)
  return [next(it) for _ in range(n)]


def test_training_batches_from_either_folder_are_identical(sources, local_run, tmp_path):
  _prepare(_cfg(sources), tmp_path / "beam", "beam", _ONE_WORKER)
  for want, got in zip(_batches(sources, local_run), _batches(sources, tmp_path / "beam")):
    assert sorted(want) == sorted(got)
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_the_task_cap_is_the_same_on_both_runners(sources, tmp_path):
  cfg = _cfg(sources, max_docs_per_task=40)  # web's cap falls in its second file.
  _prepare(cfg, tmp_path / "local")
  _prepare(cfg, tmp_path / "beam", "beam", _ONE_WORKER)
  assert layout.read_stats(tmp_path / "local", "web")["records_read"] == 40
  assert _files(tmp_path / "beam") == _files(tmp_path / "local")


@pytest.mark.parametrize("mode", ["drop", "count"])
def test_the_reference_set_and_exact_only_tasks_are_the_same_on_both_runners(sources, tmp_path,
                                                                             mode):
  cfg = _cfg(sources)
  cfg.dedup.update(reference=(str(sources / "base.jsonl"),), reference_mode=mode,
                   exact_only=("curated",))
  _prepare(cfg, tmp_path / "local")
  _prepare(cfg, tmp_path / "beam", "beam", _ONE_WORKER)
  curated, web = (layout.read_stats(tmp_path / "local", t)["dedup"]["counts"]
                  for t in ("curated", "web"))
  assert web["reference/exact"] == 1 and curated["reference/exact"] == 1
  # The near copy of a curated document stays: curated is compared by exact copies only.
  assert "duplicates/near" not in web and web["removed_docs"] == (4 if mode == "drop" else 3)
  assert _files(tmp_path / "beam") == _files(tmp_path / "local")


def test_an_interrupted_local_run_resumes_to_the_same_folder(sources, local_run, tmp_path,
                                                              monkeypatch):
  written, real = [], layout.write_shard

  def crash_after_five(*args):
    if len(written) == 5:
      raise RuntimeError("killed")
    written.append(args[1])
    real(*args)

  monkeypatch.setattr(layout, "write_shard", crash_after_five)
  with pytest.raises(RuntimeError, match="killed"):
    _prepare(_cfg(sources), tmp_path / "out")
  monkeypatch.setattr(layout, "write_shard", real)
  saved = json.loads((tmp_path / "out" / "web" / "decisions.json").read_text())
  # The removed and held-out keys are saved, not the train ones: every other document trains.
  assert "train" not in saved
  assert saved["train_docs"] + len(saved["removed"]) + len(saved["heldout"]) == saved["dedup"][
      "counts"]["docs"]
  assert len(saved["removed"]) == layout.read_stats(local_run, "web")["dedup"]["counts"][
      "removed_docs"] > 0
  logs = []
  _prepare(_cfg(sources), tmp_path / "out", log=logs.append)
  assert any("web: resuming after 1 finished shards" in line for line in logs)
  assert not any("decided" in line for line in logs)  # The saved decisions were reused.
  assert _files(tmp_path / "out") == _files(local_run)


@contextlib.contextmanager
def _bucket(root: pathlib.Path):
  """gs://BUCKET/... served from root/BUCKET/... to every epath operation of this process."""
  def local(value):
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    return f"{root}/{text[len('gs://'):]}" if text and text.startswith("gs://") else value

  def on_local_disk(original, path, *args, **kwargs):
    return original(local(path), *(local(a) for a in args), **kwargs)

  names = ("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove",
           "rename", "replace", "rmtree", "stat", "walk")
  # This etils serves gs:// from tf.io.gfile whenever TensorFlow is installed, mocked or not.
  with epath.testing.mock_epath(**dict.fromkeys(names, on_local_disk)), \
       mock.patch.object(epath.gpath, "_is_tf_installed", lambda: False):
    yield


def test_beam_writes_the_local_folder_into_a_bucket_reading_nothing_else(
    sources, local_run, tmp_path, monkeypatch):
  """As on Dataflow: the folder at a URL, and the workers read no file of the launcher's.

  Once the launcher has staged the tokenizer and the decontamination index in
  the folder, loading either from anywhere else fails until the pipeline ends
  (the workers of this runner run in this process).
  """
  copies = os.path.join(tempfile.gettempdir(), "midtrain_jax-copies")  # files.local_copy
  forbidden = []

  def from_cache(*args, **kwargs):
    raise AssertionError(f"a worker read the launcher's decontamination cache: {args}")

  def tokenizer_from(spec):
    assert not forbidden or spec.startswith(copies), f"a worker read the launcher's {spec}"
    return load_tokenizer(spec)

  def stage_then_forbid(*args):
    staged = stage(*args)
    forbidden.append(True)
    assert staged.folder == "gs://bucket/prep/_staged"
    monkeypatch.setattr(decontaminator.Decontaminator, "from_benchmarks", from_cache)
    return staged

  def remove_then_allow(folder):
    forbidden.clear()
    monkeypatch.undo()
    remove(folder)

  stage, remove, load_tokenizer = staging.stage, staging.remove, tokenizer_lib.load_tokenizer
  monkeypatch.setattr(staging, "stage", stage_then_forbid)
  monkeypatch.setattr(staging, "remove", remove_then_allow)
  monkeypatch.setattr(tokenizer_lib, "load_tokenizer", tokenizer_from)
  logs = []
  with _bucket(tmp_path):
    _prepare(_cfg(sources), "gs://bucket/prep", "beam", _ONE_WORKER, logs.append)
  assert any("beam: duplicates_removed 5" in line for line in logs)
  assert _files(tmp_path / "bucket" / "prep") == _files(local_run)  # No _staged left.
  assert not pathlib.Path("gs:").exists()  # Nothing written to a local "gs:" folder.


def test_a_beam_rerun_reuses_finished_tasks(sources, local_run, tmp_path):
  out = tmp_path / "beam"
  _prepare(_cfg(sources), out, "beam", _ONE_WORKER)
  # Interrupted: web's stats.json never written, a shard half there.
  (out / "web" / "stats.json").unlink()
  (out / "web" / "train-00002.array_record").unlink()
  (out / "manifest.json").unlink()
  curated = {p: os.stat(p).st_mtime_ns for p in sorted((out / "curated").iterdir())}
  logs = []
  _prepare(_cfg(sources), out, "beam", _ONE_WORKER, logs.append)
  assert "[prepare] curated: already prepared" in logs
  assert any("preparing ['web']" in line for line in logs)
  assert {p: os.stat(p).st_mtime_ns for p in sorted((out / "curated").iterdir())} == curated
  assert _files(out) == _files(local_run)


def test_changed_settings_are_an_error_on_both_runners(sources, local_run, tmp_path):
  shutil.copytree(local_run, tmp_path / "out")
  for runner, options in (("local", ()), ("beam", _ONE_WORKER)):
    with pytest.raises(ValueError, match="prepared with other settings"):
      _prepare(_cfg(sources, shard_docs=5), tmp_path / "out", runner, options)


def test_too_many_malformed_records_fail_both_runners_naming_them(sources, tmp_path):
  cfg = _cfg(sources, max_malformed=0)
  for runner, options in (("local", ()), ("beam", _ONE_WORKER)):
    with pytest.raises(Exception, match=r"(?s)Task web: 1 malformed records, more than "
                       r"data.max_malformed=0.*web-0.jsonl:32: bad JSON"):
      _prepare(cfg, tmp_path / runner, runner, options)
    assert not (tmp_path / runner / "web" / "stats.json").exists()


def test_bad_runner_and_beam_options_are_clear_errors(sources, tmp_path):
  with pytest.raises(ValueError, match="Unknown prepare runner 'spark'"):
    _prepare(_cfg(sources), tmp_path, "spark")
  with pytest.raises(ValueError, match=r"not Beam pipeline options: \['direct_num_wrkers'\]"):
    _prepare(_cfg(sources), tmp_path, "beam", "--runner=FnApiRunner --direct_num_wrkers=2")
  assert preparation.parse_beam_options(_TWO_WORKERS)[1] == "--direct_num_workers=2"
  dataflow = "--project=p --region=r --temp_location=gs://b/t"
  for name in ("DataflowRunner", "dataflow"):
    with pytest.raises(ValueError, match=f"{name}: its workers share no filesystem.*"
                       r"--out=gs://BUCKET/FOLDER"):
      _prepare(_cfg(sources), tmp_path / "df", "beam", f"--runner={name} {dataflow}")
    # A bucket its workers reach is what it needs.
    assert preparation.parse_beam_options(f"--runner={name} {dataflow}", "gs://b/prepared")
  assert not (tmp_path / "df").exists()  # Refused before anything is written.
  with pytest.raises(ValueError, match=r"--out=gs://b/prepared: a folder at a URL is written by "
                     r"the Beam runner \(--runner=beam\)"):
    _prepare(_cfg(sources), "gs://b/prepared")


def test_progress_lines_give_documents_tokens_rate_and_eta():
  now, lines = [0.0], []
  meter = progress.Meter("web", 1000, lines.append, every=10, clock=lambda: now[0])
  now[0] = 5.0
  meter.update(100, 90, 9000, 2_000_000)
  assert not lines  # Not due yet.
  now[0] = 20.0
  meter.update(300, 280, 28_000, 6_000_000)
  assert lines == ["[prepare] web: 400/1,000 records, 370 docs, 37,000 tokens, "
                   "0.40 MB/s, ETA 30s"]
  first_pass = progress.Meter("web (deciding)", None, lines.append, every=1,
                              clock=lambda: now[0])
  now[0] = 22.0
  first_pass.update(10, 9, 0, 4_000_000)  # Its total is unknown: no ETA.
  assert lines[-1] == "[prepare] web (deciding): 10 records, 9 docs, 2.00 MB/s"
