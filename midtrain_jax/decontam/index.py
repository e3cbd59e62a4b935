"""Normalised word tokens, stable 64-bit n-gram hashes, and the benchmark index.

Everything here is numpy and stdlib only (no TensorFlow), so the scanner can
run inside Grain workers, Beam DoFns, or a plain loop at full speed.

Normalisation: text is read as UTF-8 bytes; letters are lower-cased;
a token is a maximal run of ASCII letters/digits or non-ASCII letters, so case,
whitespace, line breaks and punctuation (ASCII, Latin-1 symbols, and Unicode
general punctuation such as curly quotes and dashes) never change the tokens.
Token hashes are polynomial byte hashes computed for all tokens at once with
prefix sums, so a document costs a handful of vectorised passes.
"""

import dataclasses
import io
import os
from collections.abc import Sequence

import numpy as np

from midtrain_jax import files

# Bump when hashing, tokenisation or the file layout changes.
INDEX_FORMAT = 3

_U64 = np.uint64
_P = _U64(0x100000001B3)  # Odd, so it has an inverse modulo 2**64.
_Q = _U64(pow(0x100000001B3, -1, 2**64))
_NGRAM_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F,
                        0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                        0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                        0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=_U64)

_IS_WORD = np.zeros(256, dtype=np.int8)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
  _IS_WORD[_c] = 1
_IS_WORD[0x80:] = 1  # UTF-8 continuation/lead bytes of non-ASCII letters.
_BYTE_VALUE = np.arange(1, 257, dtype=_U64)  # +1 so a 0 byte still counts.
_BYTE_VALUE[ord("A"):ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1) + 1


class _Powers:
  """Grow-on-demand tables of P**i and Q**i modulo 2**64."""

  def __init__(self):
    self.p = np.ones(1, dtype=_U64)
    self.q = np.ones(1, dtype=_U64)

  def ensure(self, n: int):
    if n <= self.p.size:
      return
    n = max(n, 2 * self.p.size)
    p = np.full(n, _P, dtype=_U64)
    q = np.full(n, _Q, dtype=_U64)
    p[0] = q[0] = 1
    self.p = np.cumprod(p, dtype=_U64)  # Wraps modulo 2**64, as intended.
    self.q = np.cumprod(q, dtype=_U64)


_POWERS = _Powers()


def mix64(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser: spreads polynomial-hash structure over all bits."""
  x = x ^ (x >> _U64(30))
  x = x * _U64(0xBF58476D1CE4E5B9)
  x = x ^ (x >> _U64(27))
  x = x * _U64(0x94D049BB133111EB)
  return x ^ (x >> _U64(31))


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
  n = b.size
  word = _IS_WORD[b]
  if n and b.max() >= 0x80:
    # U+2000..U+207F (E2 80 xx, E2 81 xx): quotes, dashes, ellipsis, ...
    lead = np.flatnonzero((b[:-2] == 0xE2) & ((b[1:-1] == 0x80) |
                                              (b[1:-1] == 0x81)))
    word[lead] = word[lead + 1] = word[lead + 2] = 0
    # U+0080..U+00BF (C2 xx): no-break space, guillemets, symbols.
    lead = np.flatnonzero(b[:-1] == 0xC2)
    word[lead] = word[lead + 1] = 0
  edges = np.diff(word, prepend=np.int8(0), append=np.int8(0))
  starts = np.flatnonzero(edges == 1)
  ends = np.flatnonzero(edges == -1)
  _POWERS.ensure(n + 1)
  # sum_j v[j] * Q**j over a token, times P**start, is position-independent.
  prefix = np.empty(n + 1, dtype=_U64)
  prefix[0] = 0
  np.cumsum(_BYTE_VALUE[b] * _POWERS.q[:n], dtype=_U64, out=prefix[1:])
  hashes = mix64((prefix[ends] - prefix[starts]) * _POWERS.p[starts])
  return Tokens(hashes, starts, ends)


def token_hashes(text: str) -> np.ndarray:
  """Returns the uint64 hashes of the normalised tokens of `text`."""
  return tokenize(text).hashes


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
  """Hashes every run of `n` consecutive tokens (empty if fewer tokens).

  Args:
    hashes: uint64 token hashes.
    n: n-gram length, 1..8.

  Returns:
    uint64 array of length max(len(hashes) - n + 1, 0).
  """
  count = hashes.size - n + 1
  if count <= 0:
    return np.zeros(0, dtype=_U64)
  acc = hashes[:count] * _NGRAM_MULT[0]
  for k in range(1, n):
    acc += hashes[k:k + count] * _NGRAM_MULT[k]
  return mix64(acc)


@dataclasses.dataclass(frozen=True)
class Ragged:
  """Concatenated variable-length rows: row i is values[offsets[i]:offsets[i+1]]."""
  values: np.ndarray
  offsets: np.ndarray

  @classmethod
  def from_rows(cls, rows: Sequence[np.ndarray], dtype) -> "Ragged":
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([r.size for r in rows])
    values = (np.concatenate(rows).astype(dtype) if rows
              else np.zeros(0, dtype=dtype))
    return cls(values, offsets)

  def row(self, i: int) -> np.ndarray:
    return self.values[self.offsets[i]:self.offsets[i + 1]]

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)


@dataclasses.dataclass(frozen=True)
class DecontamParams:
  """Matching rules (defaults follow OLMo 3's decon, see design.md section 4).

  Attributes:
    ngram: length of the question n-grams in the lookup index.
    sample_stride: look up every k-th document n-gram (1 = all); larger is
      faster but needs longer untouched stretches to find an item.
    overlap_ngram: n-gram length that decides which question tokens a
      document window covers when scoring overlap.
    threshold: IDF-weighted (or plain) fraction of question tokens that must
      be covered to call an item contaminated.
    weighting: "idf" or "uniform" token weights for the overlap.
    short_len: questions of at most this many tokens need an exact match.
    min_info: summed IDF below which a short question is too generic to count
      alone ("Which of the following is true?"): it also needs its answer or
      passage nearby.
    answer_window: tokens after the question searched for the answer.
    answer_threshold: fraction of answer tokens that must be covered.
    assisted_threshold: lower question threshold that suffices when the
      answer (or passage) is found too.
    min_span_ratio: the matched document text must span at least this
      fraction of the question's token count.
    passage_ngram: n-gram length for passage overlap.
    passage_threshold: fraction of passage n-grams found near the question
      that supports a passage item.
    max_ngram_items: an index n-gram shared by more items is boilerplate and
      dropped (unless it is an item's only one).
    min_question_tokens: a question with fewer tokens ("Osteoclasts") says
      nothing alone; its answer becomes the key, and the question must appear
      just before it.
  """
  ngram: int = 5
  sample_stride: int = 1
  overlap_ngram: int = 3
  threshold: float = 0.8
  weighting: str = "idf"
  short_len: int = 20
  min_info: float = 20.0
  answer_window: int = 64
  answer_threshold: float = 0.8
  assisted_threshold: float = 0.6
  min_span_ratio: float = 0.6
  passage_ngram: int = 4
  passage_threshold: float = 0.5
  max_ngram_items: int = 32
  min_question_tokens: int = 3

  def __post_init__(self):
    if self.weighting not in ("idf", "uniform"):
      raise ValueError(f"weighting must be 'idf' or 'uniform', not "
                       f"{self.weighting!r}")
    if not 2 <= self.ngram <= len(_NGRAM_MULT):
      raise ValueError(f"ngram must be in 2..{len(_NGRAM_MULT)}: {self.ngram}")
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"threshold must be in (0, 1]: {self.threshold}")


@dataclasses.dataclass(frozen=True)
class LookupTable:
  """Sorted n-gram hashes of one length -> (item, offset in its question)."""
  size: int
  hashes: np.ndarray   # uint64, sorted
  items: np.ndarray    # int32
  offsets: np.ndarray  # int32


@dataclasses.dataclass(frozen=True)
class BenchmarkIndex:
  """Everything the scanner needs about the benchmark items.

  Per item: question token hashes and weights, answer token hashes, sorted
  passage n-gram hashes, summed question IDF; plus lookup tables from
  question n-grams (and whole tiny questions) to items.
  """
  params: DecontamParams
  benchmarks: tuple[str, ...]
  item_benchmark: np.ndarray   # int16 index into `benchmarks`
  item_ids: np.ndarray         # str
  question: Ragged             # uint64 token hashes
  weights: Ragged              # float32 per question token
  answer: Ragged               # uint64 token hashes
  passage: Ragged              # uint64 sorted unique passage n-gram hashes
  info: np.ndarray             # float32 summed question IDF
  key_is_answer: np.ndarray    # bool: looked up by answer (tiny question)
  tables: tuple[LookupTable, ...]

  @property
  def num_items(self) -> int:
    return self.item_ids.size

  def save(self, path: str):
    """Writes the index to an .npz file (atomically)."""
    arrays = {"format": np.int64(INDEX_FORMAT),
              "params": np.array(repr(dataclasses.astuple(self.params))),
              "benchmarks": np.array(self.benchmarks),
              "item_benchmark": self.item_benchmark, "item_ids": self.item_ids,
              "info": self.info, "key_is_answer": self.key_is_answer}
    for name in ("question", "weights", "answer", "passage"):
      ragged = getattr(self, name)
      arrays[f"{name}_values"] = ragged.values
      arrays[f"{name}_offsets"] = ragged.offsets
    for t in self.tables:
      arrays[f"table{t.size}_hashes"] = t.hashes
      arrays[f"table{t.size}_items"] = t.items
      arrays[f"table{t.size}_offsets"] = t.offsets
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_bytes(path, buffer.getvalue())

  @classmethod
  def load(cls, path, params: DecontamParams) -> "BenchmarkIndex":
    """Reads an index written by `save`; checks format and parameters.

    Args:
      path: file path or seekable binary file object.
      params: the parameters the index must have been built with.

    Returns:
      The index.
    """
    with np.load(path, allow_pickle=False) as z:
      if int(z["format"]) != INDEX_FORMAT or str(z["params"]) != repr(
          dataclasses.astuple(params)):
        raise ValueError(f"Index {path} was built with another format or "
                         f"other parameters than {params}")
      rag = {name: Ragged(z[f"{name}_values"], z[f"{name}_offsets"])
             for name in ("question", "weights", "answer", "passage")}
      sizes = sorted(int(k[5:-7]) for k in z.files
                     if k.startswith("table") and k.endswith("_hashes"))
      tables = tuple(LookupTable(s, z[f"table{s}_hashes"], z[f"table{s}_items"],
                                 z[f"table{s}_offsets"]) for s in sizes)
      return cls(params, tuple(str(b) for b in z["benchmarks"]),
                 z["item_benchmark"], z["item_ids"], info=z["info"],
                 key_is_answer=z["key_is_answer"], tables=tables, **rag)


def build_index(items_by_benchmark: dict[str, Sequence],
                params: DecontamParams) -> "BenchmarkIndex":
  """Builds the index over benchmark items.

  Args:
    items_by_benchmark: {benchmark name: items with `id`, `question`,
      `answer` and `passage` attributes}.
    params: matching rules.

  Returns:
    The index.
  """
  benchmarks = tuple(items_by_benchmark)
  items = [(b, it) for b, its in items_by_benchmark.items() for it in its]
  questions = [token_hashes(it.question) for _, it in items]
  answers = [token_hashes(it.answer) for _, it in items]
  passages = [np.unique(ngram_hashes(token_hashes(it.passage),
                                     params.passage_ngram)) for _, it in items]
  # Document frequency of each token over questions -> IDF weights.
  uniq = [np.unique(q) for q in questions]
  vocab, df = np.unique(np.concatenate(uniq), return_counts=True)
  idf = np.log(len(items) / df).astype(np.float32)
  weights, info = [], np.zeros(len(items), dtype=np.float32)
  for i, q in enumerate(questions):
    w = idf[np.searchsorted(vocab, q)]
    info[i] = w.sum()
    weights.append(w if params.weighting == "idf" else np.ones_like(w))
  key_is_answer = np.array([
      q.size < params.min_question_tokens and a.size >= 2
      for q, a in zip(questions, answers)], dtype=bool)
  keys = [a if by_answer else q
          for q, a, by_answer in zip(questions, answers, key_is_answer)]
  tables = _lookup_tables(keys, params)
  return BenchmarkIndex(
      params=params, benchmarks=benchmarks,
      item_benchmark=np.array([benchmarks.index(b) for b, _ in items],
                              dtype=np.int16),
      item_ids=np.array([str(it.id) for _, it in items]),
      question=Ragged.from_rows(questions, _U64),
      weights=Ragged.from_rows(weights, np.float32),
      answer=Ragged.from_rows(answers, _U64),
      passage=Ragged.from_rows(passages, _U64),
      info=info, key_is_answer=key_is_answer, tables=tables)


def _lookup_tables(keys: list[np.ndarray], params: DecontamParams
                   ) -> tuple[LookupTable, ...]:
  """Maps key n-grams (whole keys when shorter) to items."""
  by_size: dict[int, list[tuple[np.ndarray, int, np.ndarray]]] = {}
  for i, q in enumerate(keys):
    # One-token keys cannot be told apart from ordinary text.
    size = min(params.ngram, q.size)
    if size >= 2:
      grams = ngram_hashes(q, size)
      by_size.setdefault(size, []).append(
          (grams, i, np.arange(grams.size, dtype=np.int32)))
  tables = []
  for size, rows in sorted(by_size.items()):
    hashes = np.concatenate([g for g, _, _ in rows])
    items = np.concatenate([np.full(g.size, i, np.int32) for g, i, _ in rows])
    offsets = np.concatenate([o for _, _, o in rows])
    # Count distinct items per hash; drop boilerplate n-grams, but never an
    # item's rarest one, so every item stays findable.
    pair = np.unique(np.stack([hashes, items.astype(_U64)]), axis=1)
    uh, n_items = np.unique(pair[0], return_counts=True)
    freq = n_items[np.searchsorted(uh, hashes)]
    keep = freq <= params.max_ngram_items
    order = np.lexsort((freq, items))
    first = order[np.r_[True, items[order][1:] != items[order][:-1]]]
    keep[first] = True
    order = np.argsort(hashes[keep], kind="stable")
    tables.append(LookupTable(size, hashes[keep][order], items[keep][order],
                              offsets[keep][order]))
  return tuple(tables)
