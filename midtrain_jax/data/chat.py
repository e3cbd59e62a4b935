"""Conversations for supervised fine-tuning: the chat template and the loss mask.

A chat task's records (data/mixtures/chat_records.py) travel as text while
the task is read, the conversation's canonical JSON, so deduplication,
decontamination and the held-out hash split work on it like on any document;
the preparation turns that text into tokens and a loss mask (`encode`).

The template is the model's own when its tokenizer has one (the
`chat_template` of tokenizer_config.json, rendered with jinja2 as transformers'
`apply_chat_template` renders it), else `DEFAULT_TEMPLATE` (Tulu-style:
`<|user|>\\n...\\n<|assistant|>\\n...` then EOS). Which characters are the
responses is found by rendering incrementally: the text that
`messages[:i + 1]` adds to `messages[:i]` rendered with the generation prompt
is assistant turn i's response (its content and whatever the template closes
it with, e.g. EOS or `<|im_end|>\\n`). A template for which these renders are
not prefixes of each other is refused with an error naming it.

Tokens are the template's spans tokenised one by one (so a token never
straddles a prompt and a response), each occurrence of the tokenizer's EOS
text becoming the EOS id (SentencePiece does not parse it from text). The
stored document is `layout.encode_document`'s: the tokenizer's start (BOS
when it adds one; a BOS that the template writes itself is dropped, not
doubled), the tokens, and EOS unless the text already ends with it. The mask
is 1 on response tokens and on the closing EOS of a final assistant turn, 0
on everything else; `scored_bytes` is the UTF-8 size of the response text
(EOS tokens have none), what held-out response bits per byte divides by.
"""
import dataclasses
import functools
import json
from collections.abc import Sequence

import jinja2
import numpy as np
from jinja2 import sandbox

from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures.chat_records import ChatFormatError, check_messages

# OLMo/Tulu-style; `eos_token` closes every assistant turn. Prepared data does not
# record it: a change must also rename `chat_records.record_text` (the fingerprint).
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% else %}{{ '<|assistant|>\n' + message['content'] + eos_token }}"
    "{% if not loop.last %}{{ '\n' }}{% endif %}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    "{% endfor %}")


def parse_text(text: str) -> list[dict]:
  """The messages of a document made by `chat_records.record_text`.

  Raises:
    ChatFormatError: the text is no such document (e.g. decontamination's
      `cut` mode cut into it: chat tasks need mode drop or keep).
  """
  try:
    return check_messages(json.loads(text)["messages"])
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ChatFormatError(f"not a chat document ({e}); chat tasks are decontaminated "
                          "with data.decontam.mode drop or keep, not cut") from None


@dataclasses.dataclass(frozen=True)
class Template:
  """A chat template and the special-token texts it is rendered with."""
  source: str
  bos_token: str
  eos_token: str

  @property
  def is_default(self) -> bool:
    return self.source == DEFAULT_TEMPLATE


def template_for(tok: tokenizer_lib.Tokenizer) -> Template:
  """The tokenizer's own chat template when it has one, else `DEFAULT_TEMPLATE`."""
  own = tok.chat_template
  # SentencePiece decodes control ids to nothing: the default template's turns then
  # close with "</s>", which `encode` turns back into the EOS id.
  eos = tok.decode([tok.eos_id]) or "</s>"
  bos = tok.decode([tok.bos_id]) if tok.bos_id is not None and tok.bos_id >= 0 else ""
  return Template(own or DEFAULT_TEMPLATE, bos, eos)


@functools.lru_cache(maxsize=16)
def _compiled(source: str) -> jinja2.Template:
  # As transformers compiles chat templates: a sandbox, trim_blocks and lstrip_blocks.
  env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                              extensions=["jinja2.ext.loopcontrols"])

  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

  def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)
  env.filters["tojson"] = tojson
  env.globals["raise_exception"] = raise_exception
  return env.from_string(source)


def render(template: Template, messages: Sequence[dict],
           add_generation_prompt: bool = False) -> str:
  """The template's text of `messages` (what `apply_chat_template(tokenize=False)` gives)."""
  return _compiled(template.source).render(
      messages=list(messages), add_generation_prompt=add_generation_prompt,
      bos_token=template.bos_token, eos_token=template.eos_token)


def spans(template: Template, messages: Sequence[dict]) -> list[tuple[str, bool]]:
  """The rendered conversation as (text, is response) spans, in order, covering it all.

  Raises:
    ChatFormatError: the template's incremental renders are not prefixes of
      each other, so responses cannot be told apart.
  """
  full = render(template, messages)
  out, at = [], 0
  for i, message in enumerate(messages):
    if message["role"] != "assistant":
      continue
    before = render(template, messages[:i], add_generation_prompt=True) if i else ""
    through = render(template, messages[:i + 1])
    if not (through.startswith(before) and full.startswith(through) and len(before) >= at):
      raise ChatFormatError("the chat template's render of the first messages is not a "
                            "prefix of the render of more of them, so the responses cannot "
                            f"be marked (assistant message {i})")
    out += [(full[at:len(before)], False), (full[len(before):len(through)], True)]
    at = len(through)
  out.append((full[at:], False))
  return [(text, scored) for text, scored in out if text]


def _tokens(tok: tokenizer_lib.Tokenizer, text: str, eos_text: str) -> list[int]:
  """Tokens of `text`, each occurrence of the EOS text as the EOS id."""
  parts = text.split(eos_text) if eos_text else [text]
  ids: list[int] = []
  for i, part in enumerate(parts):
    if i:
      ids.append(tok.eos_id)
    if part:
      ids += tok.encode(part)
  return ids


@dataclasses.dataclass(frozen=True)
class Encoded:
  """One conversation as stored: tokens, their loss mask and the responses' size.

  Attributes:
    tokens: uint32 ids, `[bos] conversation [eos]` as `layout.encode_document`.
    loss_mask: uint8, 1 on response tokens (and the closing EOS of a final
      assistant turn), per token of `tokens`.
    scored_bytes: UTF-8 size of the response text.
  """
  tokens: np.ndarray
  loss_mask: np.ndarray
  scored_bytes: int


def encode(messages: Sequence[dict], tok: tokenizer_lib.Tokenizer,
           template: Template | None = None) -> Encoded:
  """Renders, tokenises and masks one conversation (module docstring).

  Args:
    messages: the conversation (`chat_records.record_messages`).
    tok: the tokenizer.
    template: default `template_for(tok)`.
  """
  template = template or template_for(tok)
  parts = _without_bos(template, tok, spans(template, messages))
  ids, mask = list(tok.start_ids()), [0] * len(tok.start_ids())
  scored_bytes, closed = 0, False
  for text, scored in parts:
    piece = _tokens(tok, text, template.eos_token)
    ids += piece
    mask += [int(scored)] * len(piece)
    if scored:
      scored_bytes += len(text.replace(template.eos_token, "").encode("utf-8"))
      closed = tok.eos_id in piece  # The template closed this response with EOS.
    else:
      closed = False
  if len(ids) == len(tok.start_ids()) or ids[-1] != tok.eos_id:
    # The separator every stored document ends with; it closes a final response
    # (and is scored) only when the template did not close it with EOS itself.
    ids.append(tok.eos_id)
    mask.append(int(messages[-1]["role"] == "assistant" and not closed))
  return Encoded(np.asarray(ids, np.uint32), np.asarray(mask, np.uint8), scored_bytes)


def _without_bos(template: Template, tok: tokenizer_lib.Tokenizer,
                 parts: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
  """Drops a BOS text the template writes first when the tokenizer adds BOS itself."""
  if parts and template.bos_token and tok.adds_bos and parts[0][0].startswith(
      template.bos_token):
    return [(parts[0][0][len(template.bos_token):], parts[0][1])] + parts[1:]
  return parts


def prompt_ids(messages: Sequence[dict], tok: tokenizer_lib.Tokenizer,
               template: Template | None = None) -> list[int]:
  """Token ids a model continues to answer the last (user) message: the tokenizer's
  start, then the render with the generation prompt (tokenised as `encode` does)."""
  template = template or template_for(tok)
  text = render(template, messages, add_generation_prompt=True)
  parts = _without_bos(template, tok, [(text, False)])
  return list(tok.start_ids()) + _tokens(tok, parts[0][0] if parts else "", template.eos_token)
