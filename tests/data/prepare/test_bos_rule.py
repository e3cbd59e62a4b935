"""Prepared documents start as the model's tokenizer starts a text: BOS or not.

A tiny mixture file (web, chat in ChatML, code with FIM) is prepared with the
demo vocabulary (BOS first) and with SmolLM2's own tokenizer (its GGUF says
add_bos_token = False), then read back through the loader.
"""
import copy
import json
import pathlib
import shutil

import grain
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import pipeline, prepared
from midtrain_jax.data.mixtures import catalog, documents
from midtrain_jax.data.prepare import run_plan
from midtrain_jax.data.prepare import tasks as preparation
from tests import helpers

_MIX = """\
name: bos_rule_mix
tasks:
  tiny_web:  {files: ["web.jsonl"], capability: web, weight: 0.4}
  tiny_chat: {files: ["chat.jsonl"], capability: instruction, weight: 0.3, chat_template: chatml}
  tiny_code: {files: ["code.jsonl"], capability: code, fim: true, weight: 0.3}
"""


def _write_mixture(folder: pathlib.Path) -> str:
  records = {
      "web": [{"text": f"Paragraph {i}: the quick brown fox jumps over {i} lazy dogs."}
              for i in range(40)],
      # A ChatML text starts with <|im_start|>: SmolLM2's BOS id, here as text.
      "chat": [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                             {"role": "assistant", "content": str(2 * i)}]} for i in range(40)],
      "code": [{"text": f"def scale_{i}(x):\n    return x * {i} + 1\n"} for i in range(40)],
  }
  folder.mkdir(parents=True, exist_ok=True)
  for name, rows in records.items():
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (folder / "mix.yaml").write_text(_MIX)
  return str(folder / "mix.yaml")


@pytest.fixture(scope="module")
def tokenizers_by_rule(tmp_path_factory):
  """{"demo": BOS first, "smollm2": none, "bare": SmolLM2's tokenizer.json alone (none,
  and FIM sentinels appended)}: `data.tokenizer` values."""
  root = tmp_path_factory.mktemp("tokenizers")
  preparation.ensure_demo_tokenizer(log=lambda _: None)
  smollm2 = helpers.smollm2_tokenizer(root / "smollm2")
  (root / "bare").mkdir()
  shutil.copyfile(smollm2, root / "bare" / "tokenizer.json")
  return {"demo": tokenizer_lib.DEMO_SPM, "smollm2": smollm2,
          "bare": str(root / "bare" / "tokenizer.json")}


def _prepare(tmp_path, tokenizer: str, **overrides):
  cfg = config_lib.data_config()
  cfg.update(mixture=_write_mixture(tmp_path / "files"), tokenizer=tokenizer,
             data_dir=str(tmp_path / "prepared"), prepare_if_missing=False, seq_len=64,
             batch_size=8, **overrides)
  return cfg, preparation.prepare(cfg, log=lambda _: None)


def _stored(data_dir, task: str) -> set[tuple[int, ...]]:
  docs = set()
  for split in ("train", "heldout"):
    source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, split))
    docs |= {tuple(layout.decode_record(source[i]).tolist()) for i in range(len(source))}
  return docs


@pytest.mark.parametrize("rule", ["demo", "smollm2"])
def test_documents_start_as_the_tokenizer_starts_a_text(tmp_path, tokenizers_by_rule, rule):
  cfg, manifest = _prepare(tmp_path, tokenizers_by_rule[rule])
  tok = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  with_bos = rule == "demo"
  assert manifest["adds_bos"] is with_bos and tok.adds_bos is with_bos
  assert prepared.open_prepared(cfg).starts_with_bos is with_bos
  for task in ("tiny_web", "tiny_chat", "tiny_code"):
    spec = catalog.get_task(task)
    texts = [d.text for d in documents.read_documents(spec, cfg)[1]]
    # Exactly [bos] + tokens + [eos] with BOS, tokens + [eos] without: EOS separates.
    start = [tok.bos_id] if with_bos else []
    assert _stored(cfg.data_dir, task) == {tuple(start + ids + [tok.eos_id])
                                           for ids in tok.encode_batch(texts)}
  # SmolLM2: a chat document opens with the text "<|im_start|>" (id 1, its BOS id), once.
  chat = list(next(iter(_stored(cfg.data_dir, "tiny_chat"))))
  assert chat[:len(start) + 2] == start + tok.encode("<|im_start|>user")[:2]
  assert with_bos or chat[:2] == [1, tok.encode("user")[0]]
  # Its own folder: the rule is part of the name (`layout.tokenizer_key`).
  folder = layout.default_dir(cfg.mixture, cfg.tokenizer).name
  assert folder.endswith(f"@{tok.fingerprint()}-nobos") if rule == "smollm2" else "@" not in folder


def test_fim_keeps_a_document_without_bos_without_one(tmp_path, tokenizers_by_rule):
  """A bare tokenizer file gets FIM sentinels and adds no BOS: FIM examples start
  with <PRE> and hold every token of their stored document."""
  cfg, manifest = _prepare(tmp_path, tokenizers_by_rule["bare"], fim_rate=1.0,
                           fim_spm_rate=0.5, weights={"tiny_code": 1.0})
  assert manifest["adds_bos"] is False and manifest["fim_ids"]
  fim = manifest["fim_ids"]
  sentinels = {fim["prefix"], fim["middle"], fim["suffix"]}
  stored = {tuple(sorted(doc)) for doc in _stored(cfg.data_dir, "tiny_code")}
  iterator = iter(pipeline.mixed_dataset(cfg, seed=0))
  layouts = set()
  for _ in range(30):
    tokens = next(iterator)["tokens"].tolist()
    assert tokens[0] == fim["prefix"] and tokens[-1] == manifest["eos_id"]
    assert tuple(sorted(t for t in tokens if t not in sentinels)) in stored
    layouts.add("spm" if tokens[1] == fim["suffix"] else "psm")
  assert layouts == {"psm", "spm"}


def test_a_folder_of_the_other_layout_is_neither_read_nor_resumed(tmp_path, tokenizers_by_rule):
  cfg, manifest = _prepare(tmp_path, tokenizers_by_rule["smollm2"])
  # A folder written when documents started with BOS recorded no rule: it reads as BOS-first.
  old = {k: v for k, v in manifest.items() if k != "adds_bos"}
  layout.write_manifest(cfg.data_dir, old)
  with pytest.raises(ValueError, match=r"holds documents as \[bos\] tokens \[eos\].*without BOS"):
    prepared.open_prepared(cfg)
  # The same tokenizer files read with the other rule: every task's fingerprint changes.
  tok = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  bos_first = copy.copy(tok)
  bos_first._ends = (True, False)
  spec = catalog.get_task("tiny_web")
  files = documents.read_documents(spec, cfg)[0]
  stats = layout.read_stats(cfg.data_dir, "tiny_web")
  def fingerprint(tokenizer):
    return run_plan.fingerprints([spec], {spec.name: files}, tokenizer, cfg, None)[spec.name]

  assert fingerprint(tok) == stats["fingerprint"]
  assert fingerprint(bos_first) != stats["fingerprint"]
  assert np.all(layout.document_body(np.arange(5), True) == [1, 2, 3])
  assert np.all(layout.document_body(np.arange(5), False) == [0, 1, 2, 3])
