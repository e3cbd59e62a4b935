"""Chat records, the chat template and the response loss mask (data/chat.py)."""
import json

import numpy as np
import pytest
import transformers
from transformers.utils import chat_template_utils

from midtrain_jax.data import chat
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import chat_records
from midtrain_jax.data.prepare import chat_docs, tasks
from midtrain_jax.documents import readers
from tests import helpers

CONVERSATION = [
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5.\nThe answer is 5."},
    {"role": "user", "content": "And 7 * 6?"},
    {"role": "assistant", "content": "7 * 6 = 42."},
]
WITH_SYSTEM = [{"role": "system", "content": "You answer briefly."}] + CONVERSATION


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
  """SmolLM2-135M-Instruct's tokenizer (with its chat template), ours and transformers'."""
  folder = tmp_path_factory.mktemp("smollm2")
  path = helpers.smollm2_tokenizer(folder)
  return tokenizer_lib.load_tokenizer(path), transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def demo_tok():
  tasks.ensure_demo_tokenizer(log=lambda _: None)
  return tokenizer_lib.load_tokenizer(tokenizer_lib.DEMO_SPM)


@pytest.mark.parametrize("messages", [CONVERSATION, WITH_SYSTEM, CONVERSATION[:1]])
def test_render_equals_transformers_apply_chat_template(smollm2, messages):
  ours, theirs = smollm2
  assert ours.chat_template and "<|im_start|>" in ours.chat_template
  template = chat.template_for(ours)
  for generation_prompt in (False, True):
    assert chat.render(template, messages, generation_prompt) == theirs.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt)


def test_tokens_equal_transformers_and_mask_marks_the_responses(smollm2):
  ours, theirs = smollm2
  encoded = chat.encode(WITH_SYSTEM, ours)
  reference = theirs.apply_chat_template(WITH_SYSTEM, tokenize=True)["input_ids"]
  # SmolLM2 adds no BOS; the stored document ends with the separator EOS (unscored:
  # the template closed the last response with <|im_end|>, the EOS, itself).
  assert list(encoded.tokens[:-1]) == reference
  assert encoded.tokens[-1] == ours.eos_id and encoded.loss_mask[-1] == 0
  scored = encoded.tokens[encoded.loss_mask == 1]
  want = "".join(m["content"] + "<|im_end|>\n" for m in WITH_SYSTEM if m["role"] == "assistant")
  assert ours.decode(scored) == want
  assert encoded.scored_bytes == len(want.replace("<|im_end|>", "").encode())


def test_prompt_ids_are_the_generation_prompt(smollm2):
  ours, theirs = smollm2
  question = [{"role": "user", "content": "Name a prime."}]
  assert chat.prompt_ids(question, ours) == theirs.apply_chat_template(
      question, tokenize=True, add_generation_prompt=True)["input_ids"]


def test_default_template_renders_as_transformers_and_masks_response_and_eos(demo_tok):
  template = chat.template_for(demo_tok)
  assert template.is_default and template.eos_token == "</s>"
  reference = chat_template_utils.render_jinja_template(
      [CONVERSATION], chat_template=chat.DEFAULT_TEMPLATE, bos_token="",
      eos_token="</s>")[0][0]
  assert chat.render(template, CONVERSATION) == reference
  assert reference.startswith("<|user|>\nWhat is 2 + 3?\n<|assistant|>\n2 + 3 = 5.")
  encoded = chat.encode(CONVERSATION, demo_tok)
  tokens, mask = encoded.tokens, encoded.loss_mask
  assert tokens[0] == demo_tok.bos_id and tokens[-1] == demo_tok.eos_id
  # Each response's EOS is the EOS id, scored; the document ends with the last one.
  eos_at = np.flatnonzero(tokens == demo_tok.eos_id)
  assert len(eos_at) == 2 and mask[eos_at].all() and eos_at[-1] == len(tokens) - 1
  runs = np.split(tokens, np.flatnonzero(np.diff(mask)) + 1)
  scored = [r for r, m in zip(runs, np.split(mask, np.flatnonzero(np.diff(mask)) + 1)) if m[0]]
  assert [demo_tok.decode(r[r != demo_tok.eos_id]).strip() for r in scored] == [
      CONVERSATION[1]["content"], CONVERSATION[3]["content"]]
  assert encoded.scored_bytes == sum(len(m["content"].encode()) for m in CONVERSATION[1::2])


def test_conversation_ending_with_a_user_turn_scores_nothing(demo_tok):
  encoded = chat.encode(CONVERSATION[:1], demo_tok)
  assert encoded.loss_mask.sum() == 0 and encoded.scored_bytes == 0
  assert encoded.tokens[-1] == demo_tok.eos_id


def test_prompt_response_records_are_one_user_and_one_assistant_turn():
  text = chat_records.record_text({"prompt": "Hi?", "response": "Hello.", "id": 3})
  assert json.loads(text) == {"messages": [{"content": "Hi?", "role": "user"},
                                           {"content": "Hello.", "role": "assistant"}]}
  assert chat.parse_text(text) == [{"role": "user", "content": "Hi?"},
                                   {"role": "assistant", "content": "Hello."}]


@pytest.mark.parametrize("record, error", [
    ({"text": "plain"}, "needs `messages` or `prompt` and `response`"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
    ({"messages": [{"role": "user", "content": 3}]}, "no string `content`"),
])
def test_malformed_records_are_counted_with_the_reason(tmp_path, record, error):
  path = tmp_path / "chat.jsonl"
  path.write_text(json.dumps(record) + "\n")
  (item,) = readers.read_files([str(path)], chat_records.record_text)
  assert isinstance(item, readers.Malformed) and error in item.reason


def test_a_cut_document_fails_naming_the_task(demo_tok):
  with pytest.raises(ValueError, match="Chat task t: not a chat document.*not cut"):
    chat_docs.encode(['{"messages": [{"role": "us'], demo_tok, "t")
