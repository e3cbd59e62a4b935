"""Normalised word tokens of text, as the decontaminator matches them (numpy only).

Normalisation: text is read as UTF-8 bytes; letters are lower-cased;
a token is a maximal run of ASCII letters/digits or non-ASCII letters, so case,
whitespace, line breaks and punctuation (ASCII, Latin-1 symbols, and Unicode
general punctuation such as curly quotes and dashes) never change the tokens.
Math is read the same however it is typed: operator symbols (√ ≤ × ÷ − ∞,
arrows) are punctuation like their ASCII spellings; LaTeX commands that only
format or name such an operator (\\frac, \\left, \\cdot, \\le, \\text, ...) and
the word "sqrt" are not tokens; superscript and subscript digits are digits
(x² reads as x^2); π is the word pi; thousands separators vanish ("1,000" is
"1000"). Each token is hashed (`hashing.span_hashes`); byte offsets into the
UTF-8 text stay with the tokens so matches map back to character spans.

No TensorFlow, so the scanner can run inside Grain workers, Beam DoFns, or a
plain loop at full speed.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from midtrain_jax.decontam import hashing

_IS_WORD = np.zeros(256, dtype=np.int8)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
  _IS_WORD[_c] = 1
_IS_WORD[0x80:] = 1  # UTF-8 continuation/lead bytes of non-ASCII letters.


@dataclasses.dataclass(frozen=True)
class Tokens:
  """Normalised tokens of a UTF-8 buffer.

  Attributes:
    hashes: uint64 hash per token.
    starts: byte offset where each token starts.
    ends: byte offset just past each token.
  """
  hashes: np.ndarray
  starts: np.ndarray
  ends: np.ndarray

  def __len__(self):
    return self.hashes.size


def encode(text: str) -> bytes:
  """Returns the UTF-8 bytes `tokenize` reads: non-ASCII text lower-cased.

  ASCII case is folded inside `tokenize`; other scripts are lower-cased here
  when that keeps every character in place, so character offsets still hold.
  """
  if not text.isascii():
    lowered = text.lower()
    if len(lowered) == len(text):
      text = lowered
  return text.encode("utf-8", errors="replace")


def _normalised_bytes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Same-length copy of UTF-8 bytes with symbols rewritten (see the top).

  Punctuation-like characters become spaces; superscript and subscript digits
  become spaces and an ASCII digit. Offsets stay valid.

  Returns:
    The bytes, and where a π was (now spaces; it is a token of its own).
  """
  b = b.copy()
  n = b.size
  lead = np.flatnonzero(b[:-2] == 0xE2)
  second, third = b[lead + 1], b[lead + 2]
  # U+2000..U+207F general punctuation, except the superscript digits
  # U+2070, U+2074..U+2079; U+2080..U+2089 subscript digits;
  # U+2190..U+22FF arrows and mathematical operators.
  sup = (second == 0x81) & ((third == 0xB0) | ((third >= 0xB4) & (third <= 0xB9)))
  sub = (second == 0x82) & (third >= 0x80) & (third <= 0x89)
  digit = lead[sup | sub]
  b[digit + 2] = np.where(b[digit + 1] == 0x81, b[digit + 2] - 0xB0,
                          b[digit + 2] - 0x80) + ord("0")
  b[digit] = b[digit + 1] = 0x20
  blank = lead[~(sup | sub) & ((second == 0x80) | (second == 0x81) |
                               ((second >= 0x86) & (second <= 0x8B)))]
  b[blank] = b[blank + 1] = b[blank + 2] = 0x20
  lead = np.flatnonzero(b[:n - 1] == 0xC2)
  second = b[lead + 1]
  # U+0080..U+00BF: no-break space, guillemets, symbols; but ² ³ ¹ are digits.
  digit = (second == 0xB2) | (second == 0xB3) | (second == 0xB9)
  b[lead[digit] + 1] = np.where(second[digit] == 0xB9, ord("1"),
                                second[digit] - 0xB2 + ord("2"))
  b[lead[~digit] + 1] = 0x20
  b[lead] = 0x20
  lead = np.flatnonzero(b[:n - 1] == 0xC3)  # × and ÷.
  blank = lead[(b[lead + 1] == 0x97) | (b[lead + 1] == 0xB7)]
  b[blank] = b[blank + 1] = 0x20
  lead = np.flatnonzero(b[:n - 1] == 0xCF)  # π
  pi = lead[b[lead + 1] == 0x80]
  b[pi] = b[pi + 1] = 0x20
  return b, pi


def _thousands_commas(b: np.ndarray) -> np.ndarray:
  """Positions of commas that separate thousands: 1,000 and 12,345,678."""
  comma = np.flatnonzero(b == 0x2C)
  comma = comma[(comma >= 1) & (comma + 3 < b.size)]
  if not comma.size:
    return comma
  digit = lambda i: (b[i] >= 0x30) & (b[i] <= 0x39)
  ok = digit(comma - 1) & digit(comma + 1) & digit(comma + 2) & digit(comma + 3)
  after = np.minimum(comma + 4, b.size - 1)
  ok &= (comma + 4 == b.size) | ~digit(after)
  return comma[ok]


def _raw_tokenize(b: np.ndarray, word: np.ndarray) -> Tokens:
  """Token offsets and hashes of bytes `b` with word mask `word`."""
  edges = np.diff(word, prepend=np.int8(0), append=np.int8(0))
  starts = np.flatnonzero(edges == 1)
  ends = np.flatnonzero(edges == -1)
  return Tokens(hashing.span_hashes(b, starts, ends), starts, ends)


def _plain_hashes(words: Sequence[bytes]) -> np.ndarray:
  """Hashes of plain ASCII words (one token each)."""
  b = np.frombuffer(b" ".join(words), dtype=np.uint8)
  return _raw_tokenize(b, _IS_WORD[b]).hashes


# Formatting or operator names: \frac{1}{2} reads as 1/2, \sqrt{2} as √2.
_LATEX_DROP = np.sort(_plain_hashes(
    b"frac dfrac tfrac cfrac left right big bigl bigr cdot times div le leq "
    b"ge geq ne neq lt gt sqrt text textbf textit textrm mathrm mathbf mathit "
    b"mbox boxed displaystyle quad qquad infty circ cdots ldots dots".split()))
_SQRT, _PI = _plain_hashes([b"sqrt", b"pi"])


_NUMBERS: list[np.ndarray] = []  # Sorted hashes of "0".."99999", built once.


def is_number(hashes: np.ndarray) -> np.ndarray:
  """Which token hashes are those of a whole number below 100000."""
  if not _NUMBERS:
    _NUMBERS.append(np.sort(_plain_hashes(
        [str(i).encode() for i in range(100_000)])))
  table = _NUMBERS[0]
  at = np.minimum(np.searchsorted(table, hashes), table.size - 1)
  return table[at] == hashes


def tokenize(data: bytes | str) -> Tokens:
  """Splits text into normalised word tokens and hashes them.

  Args:
    data: text, or bytes from `encode`.

  Returns:
    Token hashes and byte offsets (offsets into the UTF-8 encoding).
  """
  if isinstance(data, str):
    data = encode(data)
  b = np.frombuffer(data, dtype=np.uint8)
  pi = np.zeros(0, np.int64)
  if b.size and b.max() >= 0x80:
    b, pi = _normalised_bytes(b)
  word = _IS_WORD[b]
  commas = _thousands_commas(b)
  word[commas] = 1
  tokens = _raw_tokenize(b, word)
  hashes, starts, ends = tokens.hashes, tokens.starts, tokens.ends
  if commas.size:
    # Tokens holding separators: hash the digits alone.
    joined = np.unique(np.searchsorted(starts, commas, side="right") - 1)
    hashes[joined] = _plain_hashes(
        [bytes(b[starts[t]:ends[t]]).replace(b",", b"") for t in joined])
  # LaTeX commands are the tokens right after a backslash.
  drop = hashes == _SQRT
  command = np.flatnonzero(b[np.maximum(starts - 1, 0)] == 0x5C)
  command = command[starts[command] > 0]
  if command.size:
    drop[command[np.isin(hashes[command], _LATEX_DROP)]] = True
  if drop.any():
    keep = ~drop
    hashes, starts, ends = hashes[keep], starts[keep], ends[keep]
  if pi.size:
    # π reads as the word pi, also where it touches other letters ("2πr").
    at = np.searchsorted(starts, pi)
    hashes = np.insert(hashes, at, _PI)
    starts, ends = np.insert(starts, at, pi), np.insert(ends, at, pi + 2)
  return Tokens(hashes, starts, ends)


def token_hashes(text: str) -> np.ndarray:
  """Returns the uint64 hashes of the normalised tokens of `text`."""
  return tokenize(text).hashes


def token_rows(texts: Sequence[str], chunk_bytes: int = 1 << 20
               ) -> list[np.ndarray]:
  """`token_hashes` of many texts, tokenised a chunk of texts at a time.

  One buffer per chunk is much faster than one per text; chunks keep the
  tables of hash powers (8 bytes per byte of buffer, kept) small.
  """
  datas = [encode(t) for t in texts]
  rows, i = [], 0
  while i < len(datas):
    j, size = i, 0
    while j < len(datas) and (j == i or size + len(datas[j]) < chunk_bytes):
      size += len(datas[j]) + 1
      j += 1
    # Texts are joined by a byte that is not part of any token.
    byte_starts = np.cumsum([0] + [len(d) + 1 for d in datas[i:j]])
    tokens = tokenize(b"\n".join(datas[i:j]))
    bounds = np.searchsorted(tokens.starts, byte_starts)
    rows += [tokens.hashes[bounds[k]:bounds[k + 1]] for k in range(j - i)]
    i = j
  return rows
