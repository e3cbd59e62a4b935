"""Normalised word tokens, stable 64-bit n-gram hashes, and the benchmark index.

Everything here is numpy and stdlib only (no TensorFlow), so the scanner can
run inside Grain workers, Beam DoFns, or a plain loop at full speed.

Normalisation: text is read as UTF-8 bytes; letters are lower-cased;
a token is a maximal run of ASCII letters/digits or non-ASCII letters, so case,
whitespace, line breaks and punctuation (ASCII, Latin-1 symbols, and Unicode
general punctuation such as curly quotes and dashes) never change the tokens.
Math is read the same however it is typed: operator symbols (√ ≤ × ÷ − ∞,
arrows) are punctuation like their ASCII spellings; LaTeX commands that only
format or name such an operator (\\frac, \\left, \\cdot, \\le, \\text, ...) and
the word "sqrt" are not tokens; superscript and subscript digits are digits
(x² reads as x^2); π is the word pi; thousands separators vanish ("1,000" is
"1000"). Token hashes are polynomial byte hashes computed for all tokens at
once with prefix sums, so a document costs a handful of vectorised passes.
"""

import dataclasses
import io
import os
from collections.abc import Sequence

import numpy as np

from midtrain_jax import files

# Bump when hashing, tokenisation or the file layout changes.
INDEX_FORMAT = 4

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
  """Token offsets and polynomial hashes of bytes `b` with word mask `word`."""
  n = b.size
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
    weighting: "idf" or "uniform" token weights for the overlap. IDF is
      relative: log(items / items with the word) / log(items), so a word of
      a single item weighs 1 however many benchmarks are indexed.
    short_len: questions of at most this many tokens need an exact match (or
      one changed token, see `edit_min_tokens`).
    min_info: summed weight below which a verbatim short question is too
      generic to count alone ("Which of the following is true?", "What
      causes sound?"): it also needs its answer or passage nearby. About
      two words of a single item (the former 20 nats at the full suite's
      45,878 items); with relative IDF the same question is judged the same
      whether one benchmark or all are indexed.
    answer_window: tokens after the question searched for the answer, plus
      five times the answer's length: room for the other options of a
      multiple-choice list, each about as long as the answer.
    answer_threshold: fraction of answer tokens that must be covered.
    assisted_threshold: lower question threshold that suffices when the
      answer (or passage) is found too.
    min_span_ratio: the matched document text must span at least this
      fraction of the question's token count.
    passage_ngram: n-gram length for passage overlap.
    passage_threshold: fraction of passage n-grams found near the question
      that supports a passage item.
    max_ngram_items: an index n-gram shared by more items is boilerplate:
      it is dropped (unless it is an item's rarest one), and tokens that only
      such n-grams cover weigh nothing (a prompt shared by hundreds of MMLU
      items is evidence for none of them).
    min_question_tokens: a question with fewer tokens ("Osteoclasts") says
      nothing alone; its answer becomes the key, and the question must appear
      just before it.
    answer_key_tokens: a free-form answer (no choices, no passage: worked
      solutions, code) of at least this many tokens is a lookup key too, so
      a solution leaked without its question is found (rule "answer"); it is
      matched like a question, with IDF weights over such answers.
    edit_min_tokens: a short question of at least this many tokens still
      matches with one token replaced or deleted, but only with its answer
      (or passage) nearby, only if the changed token carries at most
      1 - `threshold` of the question's weight and is no number: alone, or
      with its gist changed ("seventh" president, field Z_7 or Z_11), it
      is another question. Questions shorter than 2 * `ngram` are also
      looked up by their (ngram - 1)-grams, which one edit cannot all break.
    partial_len: a verbatim run of at least this many tokens of a long key,
      with at least `min_info` of information, counts alone like a whole
      short question: partial quotes and items split over two documents.
    min_hit_fraction: a long key is verified only where at least this
      fraction of its indexed n-grams (divided by `sample_stride`) occur. A
      phrase or two shared with an item is almost always ordinary text (code
      idioms in particular), and verifying those dominated the scan time;
      the rules above need far more of the key. 0 verifies every hit.
  """
  ngram: int = 5
  sample_stride: int = 1
  overlap_ngram: int = 3
  threshold: float = 0.8
  weighting: str = "idf"
  short_len: int = 20
  min_info: float = 1.85
  answer_window: int = 64
  answer_threshold: float = 0.8
  assisted_threshold: float = 0.6
  min_span_ratio: float = 0.6
  passage_ngram: int = 4
  passage_threshold: float = 0.5
  max_ngram_items: int = 32
  min_question_tokens: int = 3
  answer_key_tokens: int = 16
  edit_min_tokens: int = 8
  partial_len: int = 20
  min_hit_fraction: float = 0.2

  def __post_init__(self):
    if self.weighting not in ("idf", "uniform"):
      raise ValueError(f"weighting must be 'idf' or 'uniform', not "
                       f"{self.weighting!r}")
    if not 2 <= self.ngram <= len(_NGRAM_MULT):
      raise ValueError(f"ngram must be in 2..{len(_NGRAM_MULT)}: {self.ngram}")
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"threshold must be in (0, 1]: {self.threshold}")
    if not 0.0 <= self.min_hit_fraction <= 1.0:
      raise ValueError(f"min_hit_fraction must be in [0, 1]: "
                       f"{self.min_hit_fraction}")


@dataclasses.dataclass(frozen=True)
class LookupTable:
  """Sorted n-gram hashes of one length -> (key, offset in the key).

  Key `i < num_items` is item i's question (its answer when the question is
  tiny, see `key_is_answer`); key `num_items + i` is item i's answer.
  """
  size: int
  hashes: np.ndarray   # uint64, sorted
  items: np.ndarray    # int32 key id
  offsets: np.ndarray  # int32


_RAGGED = ("question", "weights", "answer", "answer_weights", "passage")
_ARRAYS = ("item_benchmark", "item_ids", "info", "answer_info", "key_is_answer",
           "answer_key")


@dataclasses.dataclass(frozen=True)
class BenchmarkIndex:
  """Everything the scanner needs about the benchmark items.

  Per item: question token hashes and weights (IDF over questions, zero for
  boilerplate), answer token hashes and weights (IDF over the answers that
  are keys), sorted passage n-gram hashes, summed question and answer
  weights; plus lookup tables from key n-grams (and whole tiny keys) to keys.
  """
  params: DecontamParams
  benchmarks: tuple[str, ...]
  item_benchmark: np.ndarray   # int16 index into `benchmarks`
  item_ids: np.ndarray         # str
  question: Ragged             # uint64 token hashes
  weights: Ragged              # float32 per question token
  answer: Ragged               # uint64 token hashes
  answer_weights: Ragged       # float32 per answer token
  passage: Ragged              # uint64 sorted unique passage n-gram hashes
  info: np.ndarray             # float32 summed question weights
  answer_info: np.ndarray      # float32 summed answer weights
  key_is_answer: np.ndarray    # bool: looked up by answer (tiny question)
  answer_key: np.ndarray       # bool: the answer is a key of its own too
  tables: tuple[LookupTable, ...]

  @property
  def num_items(self) -> int:
    return self.item_ids.size

  def save(self, path: str):
    """Writes the index to an .npz file (atomically)."""
    arrays = {"format": np.int64(INDEX_FORMAT),
              "params": np.array(repr(dataclasses.astuple(self.params))),
              "benchmarks": np.array(self.benchmarks)}
    arrays.update({name: getattr(self, name) for name in _ARRAYS})
    for name in _RAGGED:
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
      fields = {name: Ragged(z[f"{name}_values"], z[f"{name}_offsets"])
                for name in _RAGGED}
      fields.update({name: z[name] for name in _ARRAYS})
      sizes = sorted(int(k[5:-7]) for k in z.files
                     if k.startswith("table") and k.endswith("_hashes"))
      tables = tuple(LookupTable(s, z[f"table{s}_hashes"], z[f"table{s}_items"],
                                 z[f"table{s}_offsets"]) for s in sizes)
      return cls(params, tuple(str(b) for b in z["benchmarks"]), tables=tables,
                 **fields)


def _distinct_per_group(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
  """For each entry, how many distinct `values` its group holds."""
  order = np.lexsort((values, groups))
  g, v = groups[order], values[order]
  new_group = np.r_[True, g[1:] != g[:-1]]
  new_pair = new_group | np.r_[True, v[1:] != v[:-1]]
  count = np.bincount(np.cumsum(new_group) - 1, weights=new_pair)
  out = np.empty(groups.size, np.int64)
  out[order] = count[np.cumsum(new_group) - 1]
  return out


def _idf(rows: Ragged, num_docs: int):
  """Returns (sorted vocabulary, relative IDF per word) over token rows."""
  row_of = np.repeat(np.arange(rows.lengths().size), rows.lengths())
  df = _distinct_per_group(rows.values, row_of.astype(_U64))
  vocab, first = np.unique(rows.values, return_index=True)
  idf = np.log(max(num_docs, 1) / df[first]) / np.log(max(num_docs, 2))
  return vocab, idf.astype(np.float32)


def _weights(rows: Ragged, vocab, idf, mask: np.ndarray, uniform: bool
             ) -> Ragged:
  """IDF (or 1) per token, times the mask of tokens that count."""
  if uniform:
    w = np.ones(rows.values.size, np.float32)
  elif vocab.size == 0:
    w = np.zeros(rows.values.size, np.float32)
  else:
    at = np.minimum(np.searchsorted(vocab, rows.values), vocab.size - 1)
    # A word missing from the vocabulary occurs in no key: as rare as can be.
    w = np.where(vocab[at] == rows.values, idf[at], idf.max())
  return Ragged((w * mask).astype(np.float32), rows.offsets)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Concatenated aranges [starts[i], starts[i] + lengths[i])."""
  shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
  return shift + np.arange(int(lengths.sum()))


def _select(rows: Ragged, chosen: np.ndarray) -> Ragged:
  """`rows` with the unchosen rows emptied."""
  lengths = np.where(chosen, rows.lengths(), 0)
  offsets = np.zeros(lengths.size + 1, np.int64)
  offsets[1:] = np.cumsum(lengths)
  return Ragged(rows.values[_ranges(rows.offsets[:-1], lengths)], offsets)


def _row_mask(rows: Ragged, keys: Ragged, first_key: int, chosen, covered):
  """Per token of `rows`: True, or for chosen rows the key's covered flags."""
  mask = np.ones(rows.values.size, bool)
  ids = np.flatnonzero(chosen)
  lengths = rows.lengths()[ids]
  mask[_ranges(rows.offsets[ids], lengths)] = covered[
      _ranges(keys.offsets[first_key + ids], lengths)]
  return mask


def build_index(items_by_benchmark: dict[str, Sequence],
                params: DecontamParams) -> "BenchmarkIndex":
  """Builds the index over benchmark items.

  Args:
    items_by_benchmark: {benchmark name: items with `id`, `question`,
      `answer` and `passage` attributes (and optionally `choices`)}.
    params: matching rules.

  Returns:
    The index.
  """
  benchmarks = tuple(items_by_benchmark)
  items = [(b, it) for b, its in items_by_benchmark.items() for it in its]
  n = len(items)
  questions = Ragged.from_rows(token_rows([it.question for _, it in items]), _U64)
  answers = Ragged.from_rows(token_rows([it.answer for _, it in items]), _U64)
  k = params.passage_ngram
  passages = Ragged.from_rows(
      [np.unique(ngram_hashes(p, k)) if p.size >= k else p[:0]
       for p in token_rows([it.passage for _, it in items])], _U64)
  q_len, a_len = questions.lengths(), answers.lengths()
  key_is_answer = (q_len < params.min_question_tokens) & (a_len >= 2)
  # A question of fewer tokens is no key unless its answer can be ("4 + 3 =").
  question_key = ~key_is_answer & (q_len >= params.min_question_tokens)
  # A chosen option means nothing without its question; a free-form answer
  # (worked solution, code) is benchmark text in its own right.
  free_form = np.array([not it.passage and not getattr(it, "choices", ())
                        for _, it in items], dtype=bool)
  answer_key = ~key_is_answer & free_form & (a_len >= params.answer_key_tokens)
  # Key i < n: the question (tiny question: the answer); key n + i: answer.
  empty = np.zeros(0, _U64)
  keys = Ragged.from_rows(
      [questions.row(i) if question_key[i] else answers.row(i)
       if key_is_answer[i] else empty for i in range(n)]
      + [answers.row(i) if answer_key[i] else empty for i in range(n)], _U64)
  tables, covered = _lookup_tables(keys, n, params)
  uniform = params.weighting == "uniform"
  vocab, idf = _idf(questions, n)
  weights = _weights(questions, vocab, idf, _row_mask(
      questions, keys, 0, question_key, covered), uniform)
  vocab, idf = _idf(_select(answers, answer_key), int(answer_key.sum()))
  # Answers that are not keys are only support; their weights go unused.
  answer_weights = _weights(answers, vocab, idf, _row_mask(
      answers, keys, n, answer_key, covered), uniform)
  sums = lambda r: np.bincount(np.repeat(np.arange(n), r.lengths()),
                               weights=r.values, minlength=n)
  return BenchmarkIndex(
      params=params, benchmarks=benchmarks,
      item_benchmark=np.array([benchmarks.index(b) for b, _ in items],
                              dtype=np.int16),
      item_ids=np.array([str(it.id) for _, it in items]),
      question=questions, weights=weights, answer=answers,
      answer_weights=answer_weights, passage=passages,
      info=sums(weights).astype(np.float32),
      answer_info=sums(answer_weights).astype(np.float32),
      key_is_answer=key_is_answer, answer_key=answer_key, tables=tables)


def _lookup_tables(keys: Ragged, num_items: int, params: DecontamParams
                   ) -> tuple[tuple[LookupTable, ...], np.ndarray]:
  """Maps key n-grams (whole keys when shorter) to key ids.

  Returns:
    The tables, and per key token whether a kept n-gram covers it (always
    for keys shorter than `params.ngram`).
  """
  lengths = keys.lengths()
  row_of = np.repeat(np.arange(lengths.size), lengths)
  at = np.arange(keys.values.size) - keys.offsets[row_of]
  covered = np.ones(keys.values.size, bool)
  tables = []
  for size in range(2, params.ngram + 1):
    grams = ngram_hashes(keys.values, size)
    if size == params.ngram:
      # Every n-gram inside a key of at least n tokens.
      j = np.flatnonzero(at[:grams.size] <= lengths[row_of[:grams.size]] - size)
    else:
      # One-token keys cannot be told apart from ordinary text; shorter
      # keys are looked up whole.
      j = keys.offsets[:-1][lengths == size]
      if size == params.ngram - 1:
        # One changed token can break every n-gram of a question shorter
        # than 2n, so those are also found by their (n-1)-grams.
        few = ((lengths >= params.edit_min_tokens)
               & (lengths < 2 * params.ngram))
        few[num_items:] = False
        inside = np.flatnonzero(at[:grams.size] <= lengths[
            row_of[:grams.size]] - size)
        j = np.union1d(j, inside[few[row_of[inside]]])
    if not j.size:
      continue
    hashes, key_of, offsets = grams[j], row_of[j].astype(np.int32), at[j]
    # Count distinct items per hash (an item's question and answer are one);
    # drop boilerplate n-grams, but never a key's rarest one, so every key
    # stays findable.
    freq = _distinct_per_group(hashes, (key_of % num_items).astype(_U64))
    keep = freq <= params.max_ngram_items
    order = np.lexsort((freq, key_of))
    first = order[np.r_[True, key_of[order][1:] != key_of[order][:-1]]]
    keep[first] = True
    if size == params.ngram and not keep.all():
      # Tokens that only boilerplate n-grams cover carry no evidence.
      kept_keys = np.unique(key_of)
      covered[_ranges(keys.offsets[kept_keys], lengths[kept_keys])] = False
      start = keys.offsets[key_of[keep]] + offsets[keep]
      for m in range(size):
        covered[start + m] = True
    order = np.argsort(hashes[keep], kind="stable")
    tables.append(LookupTable(size, hashes[keep][order], key_of[keep][order],
                              offsets[keep][order].astype(np.int32)))
  return tuple(tables), covered
