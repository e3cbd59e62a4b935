"""A user's chat task (a mixture file's `sft: true`) prepared and loaded with its masks."""
import json

import grain
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import chat, layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import pipeline
from midtrain_jax.data.mixtures import catalog, mixture_file
from midtrain_jax.data.prepare import tasks as preparation


def _write_mixture(tmp_path) -> tuple[str, list[list[dict]]]:
  """A mixture file of a chat task (both record forms) and a text task."""
  conversations, lines = [], []
  for i in range(60):
    if i % 2:
      record = {"prompt": f"Add {i} and {i + 1}.", "response": f"{i} + {i + 1} = {2 * i + 1}."}
      messages = [{"role": "user", "content": record["prompt"]},
                  {"role": "assistant", "content": record["response"]}]
    else:
      messages = [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": f"Name the number after {i}."},
                  {"role": "assistant", "content": f"It is {i + 1}."}]
      record = {"messages": messages}
    conversations.append(messages)
    lines.append(json.dumps(record))
  (tmp_path / "chat.jsonl").write_text("\n".join(lines) + "\n")
  (tmp_path / "web.jsonl").write_text("\n".join(
      json.dumps({"text": f"Plain web text number {i}."}) for i in range(30)) + "\n")
  (tmp_path / "mix.yaml").write_text(
      "tasks:\n"
      "  my_sft: {files: chat.jsonl, capability: math, weight: 0.5, sft: true}\n"
      "  my_web: {files: web.jsonl, capability: web, weight: 0.5}\n")
  return str(tmp_path / "mix.yaml"), conversations


def test_chat_documents_are_stored_with_their_masks_and_loaded_with_them(tmp_path):
  mixture, conversations = _write_mixture(tmp_path)
  cfg = config_lib.data_config()
  cfg.update(mixture=mixture, data_dir=str(tmp_path / "prepared"), heldout_fraction=0.1,
             seq_len=32, batch_size=4)
  preparation.prepare(cfg, log=lambda _: None)
  out = tmp_path / "prepared"
  assert catalog.get_task("my_sft").chat and layout.has_masks(out, "my_sft")
  # The text task's folder is as before: no mask files at all.
  assert not layout.has_masks(out, "my_web")
  assert not list((out / "my_web").glob("*loss_mask*"))
  tok = tokenizer_lib.load_tokenizer(cfg.tokenizer)
  want = {tuple(e.tokens): e for e in (chat.encode(c, tok) for c in conversations)}
  files = layout.shard_files(out, "my_sft", "train") + layout.shard_files(out, "my_sft",
                                                                         "heldout")
  docs = grain.sources.ArrayRecordDataSource(files)
  masks = grain.sources.ArrayRecordDataSource(layout.mask_files(files))
  assert len(docs) == len(masks) == len(conversations)
  for i in range(len(docs)):
    tokens = layout.decode_record(docs[i])
    np.testing.assert_array_equal(layout.decode_mask(masks[i]), want[tuple(tokens)].loss_mask)
  scored = layout.read_heldout_scored_bytes(out, "my_sft")
  assert scored and sum(scored) < json.loads((out / "my_sft" / "stats.json").read_text())[
      "heldout_bytes"]  # Responses only, not the whole conversation's text.
  # The loader: chat rows score only response targets, text rows every target.
  it = pipeline.make_train_iterator(cfg, seed=0)
  chat_id = it.task_names.index("my_sft")
  for _ in range(3):
    batch = next(it)
    is_chat = batch["task_ids"] == chat_id
    text = (batch["segment_ids"] > 0) & ~is_chat
    assert (batch["loss_mask"][text] == 1).all()
    assert 0 < batch["loss_mask"][is_chat].sum() < is_chat.sum()


def test_a_chat_task_is_never_fimmed_or_given_a_text_template(tmp_path):
  (tmp_path / "chat.jsonl").write_text("{}\n")
  for extra, error in (("fim: true", r"\['sft', 'fim'\] conflict"),
                       ("text_field: body", r"\['text_field', 'sft'\] conflict"),
                       ("", None)):
    (tmp_path / "bad.yaml").write_text(
        "tasks:\n  c: {files: chat.jsonl, capability: code, weight: 1.0, sft: true"
        + (f", {extra}" if extra else "") + "}\n")
    if error is None:
      catalog.load_file(str(tmp_path / "bad.yaml"))
      continue
    with pytest.raises(mixture_file.MixtureFileError, match=error):
      catalog.load_file(str(tmp_path / "bad.yaml"))
