"""A user's own mixture file: loading, preparing, mixing by its weights, training, bad input."""
import json
import pathlib

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.load import pipeline
from midtrain_jax.data.mixtures import catalog, mixture_file
from midtrain_jax.data.mixtures.corpora import user_example
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.data.reports import listing
from tests import helpers
from tests.helpers import small_config

_SWITCH_STEP = 2


@pytest.fixture(scope="module")
def example(tmp_path_factory):
  """(mix.yaml, prepared folder) of the README's worked example."""
  folder = tmp_path_factory.mktemp("my_data")
  path = user_example.write(folder, switch_step=_SWITCH_STEP)
  data_dir = folder / "prepared"
  cfg = config_lib.data_config()
  cfg.mixture, cfg.data_dir = path, str(data_dir)
  preparation.prepare(cfg, log=lambda _: None)
  return path, str(data_dir)


def _data_cfg(path, data_dir, **overrides):
  cfg = config_lib.data_config()
  cfg.update(mixture=path, data_dir=data_dir, prepare_if_missing=False, seq_len=64,
             batch_size=8, **overrides)
  return cfg


def test_file_gives_tasks_mixture_stages_and_microanneals(example):
  path, data_dir = example
  mix = catalog.get_mixture(path)
  assert mix.name == "my_mix" and mix.rates == user_example.WEIGHTS
  assert mix.stages == ((0, {"my_web": 1.0}), (_SWITCH_STEP, user_example.WEIGHTS))
  assert catalog.get_task("my_code").fim and catalog.get_task("my_qa").capability == "qa"
  anneal = catalog.get_mixture(path + "#microanneal/my_qa")
  assert anneal.rates == {"my_web": 0.5, "my_qa": 0.5}
  with pytest.raises(mixture_file.MixtureFileError, match="no mixture 'microanneal/my_web'"):
    catalog.get_mixture(path + "#microanneal/my_web")
  manifest = layout.read_manifest(data_dir)
  assert manifest["mixture"] == "my_mix" and set(manifest["tasks"]) == set(mix.rates)
  first = layout.read_stats(data_dir, "my_qa")
  assert first["train_docs"] > 500 and first["malformed"] == 0
  assert first["max_epochs"] == 4 and first["licence"] == "PSF-2.0"


def test_records_are_rendered_by_the_file_s_templates(example):
  import grain

  from midtrain_jax.data import tokenizer as tokenizer_lib
  path, data_dir = example
  catalog.get_mixture(path)
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  for task, marker in (("my_qa", "Answer:"), ("my_chat", "<|im_start|>assistant")):
    source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, "train"))
    text = tok.decode(layout.decode_record(source[0])[1:-1].tolist())
    assert marker in text, (task, text)


def test_edited_file_gets_its_own_prepared_folder(tmp_path, example):
  path, _ = example
  copy = tmp_path / "mix.yaml"
  text = pathlib.Path(path).read_text().replace('"web/*', f'"{pathlib.Path(path).parent}/web/*')
  copy.write_text(text)
  before = layout.default_dir(str(copy))
  assert before.name.startswith("my_mix-") and len(before.name) == len("my_mix-") + 8
  copy.write_text(text.replace("Answer: {answer}", "A: {answer}"))
  assert layout.default_dir(str(copy)) != before
  assert layout.default_dir(f"{copy}#microanneal/my_qa").parent.parent == layout.default_dir(
      str(copy))


def test_token_shares_follow_the_file_s_weights_and_stages(example):
  cfg = _data_cfg(*example)
  it = pipeline.make_train_iterator(cfg, seed=0)
  names = it.task_names
  tokens = np.zeros(len(names))
  for step in range(160):
    ids = next(it)["task_ids"]
    if step >= 20:  # Past the stage switch and the packing window's lag.
      tokens += np.bincount(ids[ids >= 0], minlength=len(names))
  shares = dict(zip(names, tokens / tokens.sum()))
  print("configured", user_example.WEIGHTS, "seen", {k: round(v, 4) for k, v in shares.items()})
  # Deficit round-robin keeps shares within a document or two of the weights:
  # ~70k tokens here, documents of a few hundred tokens.
  for name, weight in user_example.WEIGHTS.items():
    assert abs(shares[name] - weight) < 0.02, (name, shares)


def test_first_stage_of_the_file_applies_before_its_switch(example):
  path, data_dir = example
  late = pathlib.Path(path).with_name("mix_late.yaml")  # Same folder: same data files.
  late.write_text(pathlib.Path(path).read_text().replace(
      f"start: {_SWITCH_STEP},", "start: 2000,"))
  it = pipeline.make_train_iterator(_data_cfg(str(late), data_dir), seed=0)
  ids = np.concatenate([next(it)["task_ids"] for _ in range(20)])
  assert set(ids[ids >= 0].tolist()) == {it.task_names.index("my_web")}


def test_config_weights_override_the_file_s_stages(example):
  cfg = _data_cfg(*example)
  cfg.weights = {"my_code": 1.0}
  it = pipeline.make_train_iterator(cfg, seed=0)
  ids = next(it)["task_ids"]
  assert set(ids[ids >= 0].tolist()) == {it.task_names.index("my_code")}


def test_listing_shows_rates_tokens_epochs_and_decontamination(example):
  from midtrain_jax.data.mixtures import seqio_tasks
  path, data_dir = example
  cfg = config_lib.data_config()
  cfg.mixture = path
  seqio_tasks.register_all(cfg)
  assert "my_mix#microanneal:my_code" in seqio_tasks.seqio.MixtureRegistry.names()
  tasks = seqio_tasks.seqio.get_mixture_or_task("my_mix").tasks
  assert sorted(t.name for t in tasks) == sorted(user_example.WEIGHTS)
  text = listing.listing(path, data_dir)
  qa_tokens = layout.read_stats(data_dir, "my_qa")["train_tokens"]
  assert f"{qa_tokens:,}" in text
  line = next(l for l in text.splitlines() if l.strip().startswith("my_qa"))
  assert line.split()[:3] == ["my_qa", "0.200", "qa"] and "4x  none" in line
  assert "not prepared" in listing.listing(path, str(pathlib.Path(data_dir) / "nothing"))


@pytest.mark.slow
def test_training_on_a_mixture_file_resumes_exactly(tmp_path, example):
  path, data_dir = example
  def config(steps):
    return small_config(steps, mixture=path, data_dir=data_dir, prepare_if_missing=False)
  helpers.assert_resumes_exactly(config, tmp_path)


# Bad input: each case names the file, the task and the key.
_GOOD_TASK = {"files": ["docs.jsonl"], "capability": "web", "weight": 1.0}


def _write_mix(tmp_path, tasks, suffix=".yaml", **top):
  (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "a document"}) + "\n")
  path = tmp_path / f"bad{suffix}"
  path.write_text(json.dumps({"name": "bad", "tasks": tasks, **top}))  # JSON is YAML too.
  return str(path)


@pytest.mark.parametrize("task, message", [
    (dict(_GOOD_TASK, weigth=1.0), r"task 'bad_t': unknown key 'weigth' \(did you mean "
                                   r"'weight'\?\)"),
    (dict(_GOOD_TASK, weight=-0.5), r"task 'bad_t': key 'weight': must be a number >= 0, "
                                    r"got -0.5"),
    ({k: v for k, v in _GOOD_TASK.items() if k != "weight"},
     r"task 'bad_t': key 'weight' is missing"),
    (dict(_GOOD_TASK, capability="poetry"),
     r"task 'bad_t': key 'capability': 'poetry' is not one of \['web'"),
    (dict(_GOOD_TASK, template="Q: {question}", text_field="q"),
     r"task 'bad_t': keys \['text_field', 'template'\] conflict"),
    (dict(_GOOD_TASK, chat_template="llama9"),
     r"task 'bad_t': key 'chat_template': 'llama9' is not one of"),
])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_bad_task_settings_name_file_task_and_key(tmp_path, task, message, suffix):
  path = _write_mix(tmp_path, {"bad_t": task}, suffix)
  with pytest.raises(mixture_file.MixtureFileError, match=f"^{path}: {message}"):
    catalog.get_mixture(path)


def test_bad_file_level_input_is_named(tmp_path):
  path = _write_mix(tmp_path, {"bad_t": _GOOD_TASK}, weights={"bad_t": 1})
  with pytest.raises(mixture_file.MixtureFileError, match=f"^{path}: unknown key 'weights'"):
    catalog.get_mixture(path)
  path = _write_mix(tmp_path, {"bad_t": _GOOD_TASK},
                    stages=[{"start": 0, "weights": {"other": 1.0}}])
  with pytest.raises(mixture_file.MixtureFileError,
                     match=r"stages\[0\]: key 'weights': task 'other' is not a task"):
    catalog.get_mixture(path)
  path = _write_mix(tmp_path, {"web_c4": _GOOD_TASK})
  with pytest.raises(mixture_file.MixtureFileError, match="task 'web_c4': the name is taken"):
    catalog.get_mixture(path)
  (tmp_path / "broken.yaml").write_text("tasks: {a: [\n")
  with pytest.raises(mixture_file.MixtureFileError, match="broken.yaml: not valid YAML"):
    catalog.get_mixture(str(tmp_path / "broken.yaml"))
  with pytest.raises(mixture_file.MixtureFileError, match="missing.yaml does not exist"):
    catalog.get_mixture(str(tmp_path / "missing.yaml"))


def test_task_without_matching_files_names_file_task_and_key(tmp_path):
  path = _write_mix(tmp_path, {"bad_t": dict(_GOOD_TASK, files=["nowhere/*.jsonl.gz"])})
  cfg = config_lib.data_config()
  cfg.mixture, cfg.data_dir = path, str(tmp_path / "out")
  with pytest.raises(FileNotFoundError,
                     match=f"^{path}: task 'bad_t': key 'files': No files match "
                           f"'{tmp_path}/nowhere/"):
    preparation.prepare(cfg, log=lambda _: None)


def test_record_missing_a_template_field_is_counted_with_file_and_line(tmp_path):
  records = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(20)]
  del records[4]["answer"]
  lines = [json.dumps(r) for r in records]
  lines[9] = '{"question": "broken'
  (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
  path = tmp_path / "mix.yaml"
  path.write_text('tasks:\n  qa_t: {files: qa.jsonl, capability: qa, weight: 1,\n'
                  '         template: "Q: {question}\\nA: {answer}"}\n')
  cfg = config_lib.data_config()
  cfg.update(mixture=str(path), data_dir=str(tmp_path / "out"), heldout_fraction=0.0)
  logged = []
  preparation.prepare(cfg, log=logged.append)
  stats = layout.read_stats(tmp_path / "out", "qa_t")
  assert stats["train_docs"] == 18 and stats["malformed"] == 2
  assert stats["malformed_examples"][0] == (
      f"{tmp_path}/qa.jsonl:5: missing text field (no field 'answer' for the template)")
  assert stats["malformed_examples"][1].startswith(f"{tmp_path}/qa.jsonl:10: bad JSON")
  assert any("WARNING: task qa_t: 2 malformed records" in line and "qa.jsonl:5" in line
             for line in logged), logged
