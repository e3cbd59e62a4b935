"""A chat task's documents as stored: tokens with their loss mask (data/chat.py).

The preparation reads a chat task's records as text (`chat.record_text`: the
conversation's canonical JSON) like any task's; here that text becomes the
stored document, `layout.MaskedDocument`, whose mask `layout.write_documents`
writes beside the tokens.
"""
from collections.abc import Sequence

from midtrain_jax.data import chat, layout
from midtrain_jax.data import tokenizer as tokenizer_lib


def encode(texts: Sequence[str], tok: tokenizer_lib.Tokenizer, task: str) -> list:
  """The stored documents of a chat task's texts, in order.

  Args:
    texts: documents made by `chat.record_text`.
    tok: the tokenizer (its chat template, else `chat.DEFAULT_TEMPLATE`).
    task: the task's name, for errors.

  Returns:
    One `layout.MaskedDocument` per text.

  Raises:
    ValueError: naming the task, for a text that is no conversation or a
      template that cannot mark responses.
  """
  template = chat.template_for(tok)
  docs = []
  for text in texts:
    try:
      encoded = chat.encode(chat.parse_text(text), tok, template)
    except chat.ChatFormatError as e:
      raise ValueError(f"Chat task {task}: {e}") from None
    docs.append(layout.MaskedDocument.of(encoded.tokens, encoded.loss_mask,
                                         encoded.scored_bytes))
  return docs
