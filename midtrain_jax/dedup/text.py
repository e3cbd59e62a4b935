"""Text normalisation and hashed word shingles, vectorised over a batch of documents.

Every fingerprint of the deduplicator starts here. Words are runs of ASCII
letters, digits and `_` plus any non-ASCII byte (so accented and non-Latin
words stay whole), taken from the lower-cased UTF-8 text. A word's hash is a
polynomial over its bytes, computed for the whole batch at once from one
prefix sum (no Python loop over words), then mixed with the splitmix64
finaliser. Hashes depend on nothing but the text: the same in every process,
machine and Beam worker (Python's own `hash()` is salted per process).

A shingle is n consecutive words; a document shorter than n words has one
shingle of all its words, and an empty one none.
"""
import dataclasses
import hashlib
import unicodedata

import numpy as np

_WORD_BYTE = np.zeros(256, bool)
for _lo, _hi in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z")), (128, 255)):
  _WORD_BYTE[_lo:_hi + 1] = True
_WORD_BYTE[ord("_")] = True

_BASE = 0x100000001B3  # Odd, so invertible modulo 2^64.
_BASE_INV = pow(_BASE, -1, 2**64)
# Per-position multipliers of a shingle's word hashes (odd, from splitmix64 of 1, 2, ...).
_POSITION = np.array([0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
                      0xD6E8FEB86659FD93, 0xA0761D6478BD642F, 0xE7037ED1A0B428DB,
                      0x8EBC6AF09C88C6E3, 0x589965CC75374CC3], np.uint64)
MAX_NGRAM = len(_POSITION)


def normalize(text: str) -> str:
  """The text as exact duplicates compare it: NFKC, lower case, single spaces.

  Args:
    text: a document.

  Returns:
    The normalised text (copies that differ only in case, Unicode form or
    white space normalise to the same string).
  """
  return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def digest(data: str | bytes, size: int = 16) -> bytes:
  """A stable `size`-byte digest (blake2b) of a string or bytes."""
  if isinstance(data, str):
    data = data.encode("utf-8")
  return hashlib.blake2b(data, digest_size=size).digest()


def mix64(x: np.ndarray) -> np.ndarray:
  """The splitmix64 finaliser, elementwise on a uint64 array (a new array)."""
  x = x.astype(np.uint64, copy=True)
  x ^= x >> np.uint64(30)
  x *= np.uint64(0xBF58476D1CE4E5B9)
  x ^= x >> np.uint64(27)
  x *= np.uint64(0x94D049BB133111EB)
  x ^= x >> np.uint64(31)
  return x


def _powers_of(base: int, n: int) -> np.ndarray:
  """base^i modulo 2^64 for i < n."""
  with np.errstate(over="ignore"):
    return np.concatenate([np.ones(1, np.uint64),
                           np.cumprod(np.full(n - 1, base, np.uint64), dtype=np.uint64)])


class _Powers:
  """BASE^i and BASE^-i modulo 2^64 for i < n, grown on demand and shared.

  The cache stops at `MAX_CACHED` (two 32 MiB arrays, batches of up to 4 MB
  of text): one batch of huge documents must not pin its size in memory for
  the life of the process, so longer requests are computed for that call only.
  """
  MAX_CACHED = 1 << 22

  def __init__(self):
    self.forward = self.inverse = np.ones(0, np.uint64)

  def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n > self.MAX_CACHED:
      return _powers_of(_BASE, n), _powers_of(_BASE_INV, n)
    if n > len(self.forward):
      size = min(max(n, 2 * len(self.forward), 1 << 16), self.MAX_CACHED)
      self.forward, self.inverse = _powers_of(_BASE, size), _powers_of(_BASE_INV, size)
    return self.forward[:n], self.inverse[:n]


_POWERS = _Powers()


@dataclasses.dataclass(frozen=True)
class Words:
  """The hashed words of a batch: `hashes[offsets[i]:offsets[i + 1]]` are document i's."""
  hashes: np.ndarray  # uint64 [W]
  offsets: np.ndarray  # int64 [N + 1]


def word_hashes(texts: list[str]) -> Words:
  """Hashes every word of every document of a batch in a few array passes.

  Args:
    texts: the documents.

  Returns:
    Words: uint64 word hashes and per-document offsets into them.
  """
  encoded = [t.lower().encode("utf-8") for t in texts]
  lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
  # One separator byte (not a word byte) keeps words from running across documents.
  data = np.frombuffer(b"\n".join(encoded) + b"\n", np.uint8)
  doc_starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
  is_word = _WORD_BYTE[data]
  edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0))
  starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
  forward, inverse = _POWERS.get(len(data) + 1)
  with np.errstate(over="ignore"):
    prefix = np.concatenate([[np.uint64(0)], np.cumsum(data.astype(np.uint64) * forward[
        :len(data)], dtype=np.uint64)])
    raw = (prefix[ends] - prefix[starts]) * inverse[starts]
    raw ^= (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
  offsets = np.searchsorted(starts, np.append(doc_starts, len(data)))
  return Words(mix64(raw), offsets.astype(np.int64))


def shingle_hashes(words: Words, n: int) -> Words:
  """Hashes of the word n-grams of each document of a batch.

  Args:
    words: from `word_hashes`.
    n: words per shingle (1 to MAX_NGRAM).

  Returns:
    Words whose hashes are shingle hashes; a document of 1 to n-1 words has
    one shingle of all its words, an empty one has none.
  """
  if not 1 <= n <= MAX_NGRAM:
    raise ValueError(f"ngram={n} must be between 1 and {MAX_NGRAM}.")
  w, offsets = words.hashes, words.offsets
  counts = np.diff(offsets)
  total = len(w)
  # Window sums over the padded word array; zero padding stands in for missing words.
  padded = np.concatenate([w, np.zeros(n, np.uint64)])
  acc = np.zeros(total, np.uint64)
  with np.errstate(over="ignore"):
    for k in range(n):
      acc += padded[k:k + total] * _POSITION[k]
  # Shingle i of document d is valid when its window ends inside d (i + n <= end of d);
  # documents shorter than n keep their first window only.
  doc_of = np.repeat(np.arange(len(counts)), counts)
  pos = np.arange(total) - offsets[:-1][doc_of]
  valid = (pos + n <= counts[doc_of]) | ((counts[doc_of] < n) & (pos == 0))
  if total:
    # A short document's window ran into the next one's words: recompute it alone.
    for d in np.flatnonzero((counts > 0) & (counts < n)):
      start = offsets[d]
      with np.errstate(over="ignore"):
        acc[start] = np.sum(w[start:offsets[d + 1]] * _POSITION[:counts[d]], dtype=np.uint64)
  kept = mix64(acc[valid])
  new_counts = np.bincount(doc_of[valid], minlength=len(counts))
  return Words(kept, np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int64))
