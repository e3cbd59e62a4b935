"""A user-registered seqio Task trains through the Grain pipeline (the seqio-to-Grain bridge).

tests/data/user_seqio_tasks.py registers a Task with its own source and a
preprocessor; a mixture file names it (`seqio_task`) next to a JSONL task.
"""
import json
import pathlib

import grain
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import pipeline
from midtrain_jax.data.mixtures import catalog, mixture_file
from midtrain_jax.data.prepare import tasks as preparation
from tests import helpers
from tests.data import demo_data
from tests.helpers import small_config

_MODULE = "tests.data.user_seqio_tasks"
_TASK = "user_test_titled_paragraphs"


def _write_mix(folder, seqio_task=_TASK, **top) -> str:
  web = [{"text": f"A web page about {p}"} for p in demo_data.package_paragraphs()]
  (folder / "web.jsonl").write_text("".join(json.dumps(r) + "\n" for r in web))
  path = folder / "seqio_mix.yaml"
  path.write_text(json.dumps({  # JSON is YAML too.
      "name": "seqio_mix", "tasks": {
          "my_web": {"files": "web.jsonl", "capability": "web", "weight": 0.5},
          "my_titled": {"seqio_task": seqio_task, "capability": "qa", "weight": 0.5}},
      **top}))
  return str(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(mix.yaml, prepared folder): registry module named by the file."""
  folder = tmp_path_factory.mktemp("seqio_bridge")
  path = _write_mix(folder, registry_modules=[_MODULE])
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=str(folder / "prepared"), tokenizer="demo_spm")
  preparation.prepare(cfg, log=lambda _: None)
  return path, cfg.data_dir


def _expected_docs(tok) -> set[tuple[int, ...]]:
  from tests.data import user_seqio_tasks
  texts = [user_seqio_tasks.preprocessed_text(t, b)
           for t, b in user_seqio_tasks.titled_paragraphs()]
  return {tuple(layout.encode_document(ids, tok).tolist())
          for ids in tok.encode_batch(texts)}


def _docs(data_dir, task, split):
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, split))
  return [tuple(layout.decode_record(source[i]).tolist()) for i in range(len(source))]


def test_prepared_shards_hold_the_preprocessed_text(prepared):
  path, data_dir = prepared
  spec = catalog.get_task("my_titled")
  assert (spec.seqio_task, spec.registry_modules) == (_TASK, (_MODULE,))
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  train, heldout = _docs(data_dir, "my_titled", "train"), _docs(data_dir, "my_titled",
                                                                "heldout")
  # Every document, train or held out, is the preprocessor's output, and all are there.
  assert set(train) | set(heldout) == _expected_docs(tok) and len(train) > 100
  assert tok.decode(list(train[0][1:-1])).startswith("TITLE: PARAGRAPH ")
  stats = layout.read_stats(data_dir, "my_titled")
  assert stats["malformed"] == 0 and stats["source_files"] == []
  assert "seqio task " + _TASK in stats["provenance"]


def test_grain_batches_feed_the_preprocessed_text(prepared):
  path, data_dir = prepared
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=data_dir, prepare_if_missing=False, seq_len=64,
             batch_size=8)
  it = pipeline.make_train_iterator(cfg, seed=0)
  task_id = it.task_names.index("my_titled")
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  haystack = [np.asarray(d, np.int32).tobytes() for d in _expected_docs(tok)]
  seen = 0
  for _ in range(4):
    batch = next(it)
    for row in range(batch["inputs"].shape[0]):
      mask = batch["task_ids"][row] == task_id
      for segment in np.unique(batch["segment_ids"][row][mask]):
        piece = batch["inputs"][row][mask & (batch["segment_ids"][row] == segment)]
        assert any(piece.astype(np.int32).tobytes() in doc for doc in haystack)
        seen += 1
  assert seen > 0


@pytest.mark.slow
def test_training_on_a_seqio_task_resumes_exactly(tmp_path, prepared):
  path, data_dir = prepared
  def config(steps):
    return small_config(steps, mixture=path, data_dir=data_dir, prepare_if_missing=False)
  helpers.assert_resumes_exactly(config, tmp_path)


def test_config_registry_modules_are_imported_too(tmp_path):
  path = _write_mix(tmp_path)
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=str(tmp_path / "out"), registry_modules=(_MODULE,),
             max_docs_per_task=5, heldout_fraction=0.0)
  preparation.prepare(cfg, log=lambda _: None)
  assert layout.read_stats(tmp_path / "out", "my_titled")["train_docs"] == 5


def test_unknown_seqio_task_is_named(tmp_path):
  path = _write_mix(tmp_path, seqio_task="no_such_seqio_task", registry_modules=[_MODULE])
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=str(tmp_path / "out"))
  with pytest.raises(ValueError, match="seqio task 'no_such_seqio_task' is not registered"):
    preparation.prepare(cfg, log=lambda _: None)


def test_missing_registry_module_is_named(tmp_path):
  path = _write_mix(tmp_path, registry_modules=["my_pkg_not_installed.tasks"])
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=str(tmp_path / "out"))
  with pytest.raises(ImportError, match="Registry module 'my_pkg_not_installed.tasks'"):
    preparation.prepare(cfg, log=lambda _: None)


@pytest.mark.parametrize("task, message", [
    ({"seqio_task": _TASK, "files": "web.jsonl"}, r"keys \['seqio_task', 'files'\] conflict"),
    ({"seqio_task": _TASK, "template": "{x}"}, r"keys \['seqio_task', 'template'\] conflict"),
    ({"seqio_task": ""}, r"key 'seqio_task': must be a non-empty string"),
    ({"files": "web.jsonl", "split": "train"}, r"key 'split': only a seqio_task task"),
])
def test_bad_seqio_task_settings_are_named(tmp_path, task, message):
  path = tmp_path / "bad.yaml"
  path.write_text(json.dumps({"tasks": {"bad_t": {"capability": "qa", "weight": 1, **task}}}))
  with pytest.raises(mixture_file.MixtureFileError, match=f"^{path}: task 'bad_t': {message}"):
    catalog.get_mixture(str(path))
  path.write_text(json.dumps({"tasks": {"ok": {"seqio_task": _TASK, "capability": "qa",
                                               "weight": 1}}, "registry_modules": [3]}))
  with pytest.raises(mixture_file.MixtureFileError, match="key 'registry_modules': must be"):
    catalog.get_mixture(str(path))


def test_the_beam_preparation_reads_the_seqio_task_alike(prepared, tmp_path):
  """A seqio task is read as one unit on a Beam worker: the same folder as the local run."""
  path, data_dir = prepared
  cfg = config_lib.data_config()
  cfg.update(mixture=path, tokenizer="demo_spm")
  preparation.prepare(cfg, tmp_path / "beam", log=lambda _: None, runner="beam",
                      beam_options="--runner=FnApiRunner --direct_num_workers=1")

  def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}

  found = files(tmp_path / "beam")
  assert "my_titled/train-00000.array_record" in found
  assert found == files(pathlib.Path(data_dir))
