"""Texts measured in the suite's own plain words: runs of letters and digits.

LaTeX commands are left out. Never the tokenizer under test, so what the suite
calls a 13-word copy or a 40-word question does not depend on the code it
measures.
"""
import functools
import re
from collections.abc import Sequence

import numpy as np

# Text shared over this many words is a copy, not a coincidence (13-grams
# as in GPT-3's decontamination).
COPY_WORDS = 13

# LaTeX commands are matched only to be skipped: markup, not words.
_WORD = re.compile(r"\\[A-Za-z]+|[^\W_]+")
_VOCAB: dict[str, int] = {}  # Word -> id, shared by all calls.


def word_matches(text: str) -> list[re.Match]:
  return [m for m in _WORD.finditer(text) if m[0][0] != "\\"]


@functools.lru_cache(maxsize=1 << 17)
def word_ids(text: str) -> np.ndarray:
  """Ids of the lower-cased words (runs of letters and digits) of `text`."""
  ids = [_VOCAB.setdefault(m[0].lower(), len(_VOCAB))
         for m in word_matches(text)]
  return np.array(ids, dtype=np.uint64)


def n_words(text: str) -> int:
  return int(word_ids(text).size)


def run_hashes(ids: np.ndarray, length: int) -> np.ndarray:
  """A 64-bit hash of every run of `length` consecutive words."""
  count = ids.size - length + 1
  if count <= 0:
    return np.zeros(0, np.uint64)
  acc = np.zeros(count, np.uint64)
  for j in range(length):
    acc = acc * np.uint64(0x100000001B3) + ids[j:j + count] + np.uint64(1)
  return acc ^ (acc >> np.uint64(29))


def halves(text: str) -> tuple[str, str]:
  """`text` cut before its middle word."""
  starts = [m.start() for m in word_matches(text)]
  cut = starts[len(starts) // 2] if starts else len(text)
  return text[:cut].rstrip(), text[cut:]


def row_runs(rows: Sequence[np.ndarray], length: int):
  """(run hashes, row of each run) for the runs inside rows, all at once."""
  lengths = np.array([r.size for r in rows], np.int64)
  runs = run_hashes(np.concatenate(list(rows) + [np.zeros(0, np.uint64)]), length)
  row_of = np.repeat(np.arange(lengths.size), lengths)[:runs.size]
  inside = np.arange(runs.size) + length <= np.cumsum(lengths)[row_of]
  return runs[inside], row_of[inside]


def member(values: np.ndarray, table: np.ndarray) -> np.ndarray:
  """Which values a sorted table holds."""
  if not table.size:
    return np.zeros(values.size, bool)
  return table[np.minimum(np.searchsorted(table, values), table.size - 1)] == values
