"""Chat records: conversations for supervised fine-tuning, as a task's text.

A chat record is either `{"messages": [{"role", "content"}, ...]}` (roles
system, user, assistant) or `{"prompt", "response"}` (one user turn, then one
assistant turn). While a task is read it travels as text, the conversation's
canonical JSON (`record_text`, a task's `text_fn`), so deduplication,
decontamination and the held-out split work on it as on any document; the
preparation renders it with the chat template and masks its responses
(data/chat.py).
"""
import json

ROLES = ("system", "user", "assistant")


class ChatFormatError(ValueError):
  """A record that is no conversation, or a template that cannot mark responses."""


def check_messages(messages) -> list[dict]:
  """The messages as {role, content} dicts; ChatFormatError naming what is wrong."""
  if not isinstance(messages, list) or not messages:
    raise ChatFormatError("`messages` must be a non-empty list")
  out = []
  for i, message in enumerate(messages):
    if not isinstance(message, dict):
      raise ChatFormatError(f"message {i} is {type(message).__name__}, not an object")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
      raise ChatFormatError(f"message {i} has role {role!r}; expected one of {ROLES}")
    if not isinstance(content, str):
      raise ChatFormatError(f"message {i} has no string `content`")
    out.append({"role": role, "content": content})
  return out


def record_messages(record: dict) -> list[dict]:
  """The conversation of a chat record (`messages`, or `prompt` and `response`).

  Raises:
    ChatFormatError: naming what is wrong with the record.
  """
  if "messages" in record:
    return check_messages(record["messages"])
  if "prompt" in record and "response" in record:
    return check_messages([{"role": "user", "content": record["prompt"]},
                            {"role": "assistant", "content": record["response"]}])
  raise ChatFormatError(f"a chat record needs `messages` or `prompt` and `response`; it has "
                        f"{sorted(record)}")


def record_text(record: dict) -> str:
  """A chat record as the text a task's documents travel as (canonical JSON).

  Raises:
    TypeError: for a malformed record (the readers count it as malformed).
  """
  try:
    return json.dumps({"messages": record_messages(record)}, ensure_ascii=False,
                      sort_keys=True)
  except ChatFormatError as e:
    raise TypeError(str(e)) from None


record_text.__name__ = "chat_messages_v1"  # Part of the prepared data's fingerprint.
