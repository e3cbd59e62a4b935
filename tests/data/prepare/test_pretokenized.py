"""Token-file tasks: OLMo-core's token files prepared without re-tokenising, then trained on.

Token files are written from real tokenizers (the demo SentencePiece model,
SmolLM2's own tokenizer) in both of OLMo-core's forms (a raw memmap, an .npy
with a header); the prepared documents must be exactly the ids the tokenizer
gave, laid out by the model tokenizer's BOS rule.
"""
import json
import pathlib

import grain
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog, documents, mixture_file
from midtrain_jax.data.prepare import pretokenized
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.documents import readers, token_files
from midtrain_jax.train import loop
from tests import helpers

_TEXT_TASK = {"files": ["web.jsonl"], "capability": "web", "weight": 0.5}


def _texts(n: int = 120) -> list[str]:
  """Real documents: the demo corpus's QA pairs."""
  spec = catalog.get_task("qa_python_docs")
  found = (i.text for i in readers.read_files(spec.files(), spec.text_fn)
           if isinstance(i, readers.Document))
  return [text for text, _ in zip(found, range(n))]


def _write_tokens(folder: pathlib.Path, ids: list[list[int]], dtype: str, eos: int,
                  form: str, parts: int = 1) -> list[str]:
  """Writes `ids` as OLMo-core token files (`form`: "memmap" or "npy"), split in `parts`."""
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for part, docs in enumerate(np.array_split(np.arange(len(ids)), parts)):
    flat = np.asarray([t for d in docs for t in ids[d] + [eos]], dtype)
    path = folder / f"part-{part:02d}.npy"
    if form == "npy":
      np.save(path, flat)
    else:
      out = np.memmap(path, mode="w+", dtype=dtype, shape=flat.shape)
      out[:] = flat
      out.flush()
    paths.append(str(path))
  return paths


def _mixture(folder: pathlib.Path, token_task: dict, text: bool = False) -> str:
  tasks = {"my_tokens": {"capability": "qa", "weight": 0.5, **token_task}}
  if text:
    (folder / "web.jsonl").write_text("".join(json.dumps({"text": t}) + "\n"
                                              for t in _texts(40)))
    tasks["my_web"] = _TEXT_TASK
  path = folder / "mix.yaml"
  path.write_text(json.dumps({"name": "tokmix", "tasks": tasks}))
  return str(path)


def _cfg(mixture: str, data_dir, tokenizer=tokenizer_lib.DEMO_SPM, **overrides):
  cfg = config_lib.data_config()
  settings = dict(heldout_fraction=0.2, heldout_max_docs=8)
  cfg.update(mixture=mixture, tokenizer=tokenizer, data_dir=str(data_dir),
             prepare_if_missing=False, seq_len=64, batch_size=8, **{**settings, **overrides})
  return cfg


def _split(data_dir, task: str, split: str) -> list[list[int]]:
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, split))
  return [layout.decode_record(source[i]).tolist() for i in range(len(source))]


@pytest.fixture(scope="module")
def demo():
  """(demo tokenizer, texts, their ids)."""
  preparation.ensure_demo_tokenizer(log=lambda _: None)
  tok = tokenizer_lib.load_tokenizer(tokenizer_lib.DEMO_SPM)
  texts = _texts()
  return tok, texts, tok.encode_batch(texts)


@pytest.mark.parametrize("form, dtype", [("memmap", "uint16"), ("npy", "uint32")])
def test_prepared_documents_are_the_tokenizer_s_ids(tmp_path, demo, form, dtype):
  tok, texts, ids = demo
  _write_tokens(tmp_path / "tokens", ids, dtype, tok.eos_id, form, parts=2)
  path = _mixture(tmp_path, {"token_files": "tokens/*.npy", "token_dtype": dtype,
                             "tokenizer": "demo_spm"})
  cfg = _cfg(path, tmp_path / "prepared", shard_docs=25)
  preparation.prepare(cfg, log=lambda _: None)
  stored = _split(cfg.data_dir, "my_tokens", "train")
  heldout = _split(cfg.data_dir, "my_tokens", "heldout")
  expected = [layout.encode_document(d, tok).tolist() for d in ids]
  assert expected[0][0] == tok.bos_id and expected[0][-1] == tok.eos_id
  # Every document once; the train split in file order, a candidate that a
  # smaller hash pushes out of the held-out sample coming when it is pushed out.
  assert sorted(stored + heldout) == sorted(expected) and 0 < len(heldout) <= 8
  sample = documents.HeldoutSample(0.2, 8)
  pushed = (sample.offer(np.asarray(d, "<u4").tobytes()) for d in ids)
  assert stored == [layout.encode_document(np.frombuffer(b, "<u4").tolist(), tok).tolist()
                    for b in pushed if b is not None]
  stats = layout.read_stats(cfg.data_dir, "my_tokens")
  assert stats["train_shards"] == -(-len(stored) // 25) and stats["train_docs"] == len(stored)
  assert stats["train_tokens"] == sum(map(len, stored)) and stats["skipped"]["dedup"]
  # Bits per byte divide by the held-out text's bytes, decoded from its ids.
  by_ids = {tuple(layout.encode_document(d, tok).tolist()): t for d, t in zip(ids, texts)}
  sizes = layout.read_heldout_bytes(cfg.data_dir, "my_tokens")
  assert sizes == [len(by_ids[tuple(d)].encode("utf-8")) for d in heldout]


def test_heldout_split_is_the_same_whatever_the_form_order_or_files(tmp_path, demo):
  tok, _, ids = demo
  splits = []
  for name, order, form, dtype, parts in (("a", ids, "memmap", "uint16", 1),
                                          ("b", ids[::-1], "npy", "uint32", 3)):
    _write_tokens(tmp_path / name / "tokens", order, dtype, tok.eos_id, form, parts)
    path = _mixture(tmp_path / name, {"token_files": ["tokens/*.npy"], "token_dtype": dtype,
                                      "tokenizer": "demo_spm"})
    cfg = _cfg(path, tmp_path / name / "prepared")
    preparation.prepare(cfg, log=lambda _: None)
    splits.append(_split(cfg.data_dir, "my_tokens", "heldout"))
  assert splits[0] == splits[1] and splits[0]
  # The text tasks' rule, over the ids' bytes: the bottom-k sample of the whole task.
  sample = documents.HeldoutSample(0.2, 8)
  for d in ids:
    sample.offer(np.asarray(d, "<u4").tobytes())
  assert splits[0] == [layout.encode_document(np.frombuffer(b, "<u4").tolist(), tok).tolist()
                       for b in sample.documents()]


def test_an_interrupted_preparation_resumes_to_the_same_shards(tmp_path, demo):
  tok, _, ids = demo
  _write_tokens(tmp_path / "tokens", ids, "uint32", tok.eos_id, "memmap")
  path = _mixture(tmp_path, {"token_files": "tokens/*.npy", "tokenizer": "demo_spm"})
  cfg = _cfg(path, tmp_path / "prepared", shard_docs=20)
  preparation.prepare(cfg, log=lambda _: None)
  task_dir = pathlib.Path(cfg.data_dir) / "my_tokens"
  whole = {p.name: p.read_bytes() for p in sorted(task_dir.iterdir())}
  for name in ("stats.json", "heldout.array_record", "train-00003.array_record",
               "train-00004.array_record", "manifest.json"):
    (task_dir / name).unlink(missing_ok=True)
  logged = []
  preparation.prepare(cfg, log=logged.append)
  assert any("resuming after 3 finished shards" in line for line in logged)
  assert {p.name: p.read_bytes() for p in sorted(task_dir.iterdir())} == whole


def test_token_files_of_another_tokenizer_fail_naming_both(tmp_path, demo):
  tok, _, ids = demo
  smollm2 = helpers.smollm2_tokenizer(tmp_path / "smollm2")
  theirs = tokenizer_lib.load_tokenizer(smollm2)
  _write_tokens(tmp_path / "tokens", theirs.encode_batch(_texts(30)), "uint16",
                theirs.eos_id, "npy")
  path = _mixture(tmp_path, {"token_files": "tokens/*.npy", "token_dtype": "uint16",
                             "tokenizer": "smollm2/tokenizer.json"})
  with pytest.raises(ValueError, match=(
      rf"Task my_tokens: its token files are ids of tokenizer '{smollm2}' "
      rf"\({theirs.fingerprint()}\), but the model's tokenizer is "
      rf"data.tokenizer='demo_spm' \(fingerprint {tok.fingerprint()}\)")):
    preparation.prepare(_cfg(path, tmp_path / "demo"), log=lambda _: None)
  # With the model's own tokenizer (no BOS) the ids are stored as they are.
  cfg = _cfg(path, tmp_path / "smollm2_prepared", tokenizer=smollm2, heldout_fraction=0.0)
  preparation.prepare(cfg, log=lambda _: None)
  assert _split(cfg.data_dir, "my_tokens", "train") == [
      d + [theirs.eos_id] for d in theirs.encode_batch(_texts(30))]
  spec = catalog.get_task("my_tokens")
  pretokenized.check_tokenizer(
      mixture_file.TaskSpec(**{**vars(spec), "tokenizer": theirs.fingerprint()}), theirs)


def test_malformed_token_files_fail_preparation_naming_the_file(tmp_path, demo):
  tok, _, ids = demo
  paths = _write_tokens(tmp_path / "tokens", ids[:5], "uint32", tok.eos_id, "memmap")
  with open(paths[0], "ab") as f:
    f.write(b"\x00")
  path = _mixture(tmp_path, {"token_files": "tokens/*.npy", "tokenizer": "demo_spm"})
  with pytest.raises(token_files.TokenFileError, match=f"{paths[0]}: .* not a whole number"):
    preparation.prepare(_cfg(path, tmp_path / "prepared"), log=lambda _: None)


@pytest.mark.parametrize("task, message", [
    ({"token_files": "t.npy"}, r"key 'tokenizer' is missing"),
    ({"token_files": "t.npy", "tokenizer": "demo_spm", "token_dtype": "int32"},
     r"key 'token_dtype': 'int32' is not one of \['uint16', 'uint32', 'uint64'\]"),
    ({"token_files": "t.npy", "tokenizer": "demo_spm", "template": "{text}"},
     r"keys \['token_files', 'template'\] conflict"),
    ({"files": "web.jsonl", "tokenizer": "demo_spm"},
     r"key 'tokenizer': only a token_files task has it"),
])
def test_bad_token_task_settings_name_file_task_and_key(tmp_path, task, message):
  path = _mixture(tmp_path, task)
  with pytest.raises(mixture_file.MixtureFileError, match=f"task 'my_tokens': {message}"):
    mixture_file.load(path)


def test_a_mixture_with_a_token_file_task_trains(tmp_path, demo):
  tok, _, ids = demo
  _write_tokens(tmp_path / "tokens", ids, "uint32", tok.eos_id, "memmap")
  path = _mixture(tmp_path, {"token_files": "tokens/*.npy", "tokenizer": "demo_spm"},
                  text=True)
  preparation.prepare(_cfg(path, tmp_path / "prepared"), log=lambda _: None)
  manifest = layout.read_manifest(tmp_path / "prepared")
  assert manifest["tasks"]["my_tokens"]["train_docs"] > 100
  config = helpers.small_config(2, mixture=path, data_dir=str(tmp_path / "prepared"),
                                prepare_if_missing=False)
  result = loop.run(config, str(tmp_path / "run"))
  assert sorted(result.losses) == [1, 2] and all(np.isfinite(list(result.losses.values())))
