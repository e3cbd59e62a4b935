"""The n-gram index of benchmark items, how it is built, and its file.

Per item it holds the question and answer token hashes with their weights
(relative IDF, zero for boilerplate), the passage n-grams, and lookup tables
from key n-grams to items (see `BenchmarkIndex`); a free-form answer is a key
of its own only when it says more than ordinary code (`background.py`).
Tokens come from `normalize.py`, n-gram hashes from `hashing.py`, the
matching rules from `params.py`; `scan.py` reads the index. Saved as one .npz file, checked
against `INDEX_FORMAT` and the parameters on load. Numpy and stdlib only.
"""

import dataclasses
import io
import os
from collections.abc import Sequence

import numpy as np

from midtrain_jax import files
from midtrain_jax.decontam import background as background_lib
from midtrain_jax.decontam import hashing, normalize
from midtrain_jax.decontam.params import DecontamParams

# Bump when hashing, tokenisation, what is indexed or the file layout changes.
INDEX_FORMAT = 5

_U64 = hashing.U64


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
  background: str = ""         # fingerprint of the reference corpus ("" without)

  @property
  def num_items(self) -> int:
    return self.item_ids.size

  def save(self, path: str):
    """Writes the index to an .npz file (atomically)."""
    arrays = {"format": np.int64(INDEX_FORMAT),
              "params": np.array(repr(dataclasses.astuple(self.params))),
              "benchmarks": np.array(self.benchmarks),
              "background": np.array(self.background)}
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
                 background=str(z["background"]), **fields)


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


def build_index(items_by_benchmark: dict[str, Sequence], params: DecontamParams,
                background: background_lib.Background | None = None
                ) -> "BenchmarkIndex":
  """Builds the index over benchmark items.

  Args:
    items_by_benchmark: {benchmark name: items with `id`, `question`,
      `answer` and `passage` attributes (and optionally `choices`)}.
    params: matching rules.
    background: ordinary code that free-form answers are compared with;
      defaults to `background.stdlib()` (none when `params.answer_min_info`
      is 0).

  Returns:
    The index.
  """
  if background is None and params.answer_min_info:
    background = background_lib.stdlib()
  elif not params.answer_min_info:
    background = None
  benchmarks = tuple(items_by_benchmark)
  items = [(b, it) for b, its in items_by_benchmark.items() for it in its]
  n = len(items)
  questions = Ragged.from_rows(normalize.token_rows([it.question for _, it in items]), _U64)
  answers = Ragged.from_rows(normalize.token_rows([it.answer for _, it in items]), _U64)
  k = params.passage_ngram
  passages = Ragged.from_rows(
      [np.unique(hashing.ngram_hashes(p, k)) if p.size >= k else p[:0]
       for p in normalize.token_rows([it.passage for _, it in items])], _U64)
  q_len, a_len = questions.lengths(), answers.lengths()
  key_is_answer = (q_len < params.min_question_tokens) & (a_len >= 2)
  # A question of fewer tokens is no key unless its answer can be ("4 + 3 =").
  question_key = ~key_is_answer & (q_len >= params.min_question_tokens)
  # A chosen option means nothing without its question; a free-form answer
  # (worked solution, code) is benchmark text in its own right.
  free_form = np.array([not it.passage and not getattr(it, "choices", ())
                        for _, it in items], dtype=bool)
  # Its information, not its length, makes it a key: textbook code is
  # every tutorial's as much as a benchmark's.
  answer_key = ~key_is_answer & free_form & (a_len >= params.answer_key_tokens)
  if background is not None:
    for i in np.flatnonzero(answer_key):
      answer_key[i] = (background_lib.information(background, answers.row(i))
                       >= params.answer_min_info)
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
      key_is_answer=key_is_answer, answer_key=answer_key, tables=tables,
      background=background.fingerprint if background else "")


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
    grams = hashing.ngram_hashes(keys.values, size)
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
