"""Which items the suite tunes on, tests on, or holds out as clean text; its index.

Each item gets a fixed role from a hash of its benchmark and id, so the split
never depends on which items were sampled or in what order:

  tune: the items matching rules may be chosen on;
  test: the items recall is reported on;
  clean_tune, clean_test (`clean_fraction` together): held out of the
        suite's index; rendered like leaks they are near-topic text that is
        NOT contamination (other math word problems, other Python functions,
        other quiz questions). Clean documents of the demo corpus are split
        in two halves the same way, by a hash of the text.

The suite's index holds every item of the indexed benchmarks except the clean
pool, so word weights are those of a production index. Its reference corpus
of ordinary code (`decontam/background.py`: the standard library) leaves out
the files that the suite's clean code and docstring documents come from, so
those stay text the rules have not seen.
"""
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from benchmarks.decontam_harness import plain_words
from benchmarks.decontam_harness.plain_words import COPY_WORDS
from midtrain_jax import cache
from midtrain_jax.benchmark_data import items as benchmark_items
from midtrain_jax.data.mixtures.corpora import demo
from midtrain_jax.decontam import background as background_lib
from midtrain_jax.decontam import index as index_lib
from midtrain_jax.decontam.params import DecontamParams

SPLITS = ("tune", "test")
# Planted items of a split, and held-out clean-pool items of a split.
ROLES = ("tune", "test", "clean_tune", "clean_test")


def _unit(*key) -> float:
  """A number in [0, 1) from a hash of `key`: the same on every machine."""
  digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2.0**64


def item_role(benchmark: str, item_id: str, seed: int = 0,
              clean_fraction: float = 0.1) -> str:
  """Returns one of `ROLES` for an item, from a hash of its id."""
  u = _unit(seed, benchmark, item_id)
  if u < clean_fraction:
    return "clean_tune" if u < clean_fraction / 2 else "clean_test"
  return "tune" if u < clean_fraction + (1.0 - clean_fraction) / 2 else "test"


def text_split(text: str, seed: int = 0) -> str:
  """Returns "tune" or "test" for a clean document, from a hash of it."""
  return SPLITS[_unit(seed, hashlib.sha256(text.encode()).hexdigest()) >= 0.5]


def split_items(items_by_benchmark: dict[str, Sequence], seed: int = 0,
                clean_fraction: float = 0.1) -> dict[str, dict[str, list]]:
  """Returns {role: {benchmark: items}} with `item_role`'s roles."""
  out = {role: {name: [] for name in items_by_benchmark} for role in ROLES}
  for name, its in items_by_benchmark.items():
    for it in its:
      out[item_role(name, it.id, seed, clean_fraction)][name].append(it)
  return out


def suite_background() -> background_lib.Background:
  """The standard library but the files of the demo's code and docstring tasks."""
  used = set()
  for path in demo.materialise("code_python_stdlib"):
    with open(path, encoding="utf-8") as f:
      used.update(json.loads(line)["path"] for line in f if line.strip())
  return background_lib.stdlib(exclude=used)


def suite_index(index_names: Sequence[str], planted_names: Sequence[str],
                params: DecontamParams, seed: int = 0,
                clean_fraction: float = 0.1, cache_dir: str | None = None
                ) -> index_lib.BenchmarkIndex:
  """The index the suite scans with: all items but the clean pool (cached).

  Args:
    index_names: benchmarks in the index (production indexes all of them).
    planted_names: benchmarks whose clean pool is held out.
    params: matching rules.
    seed: split seed.
    clean_fraction: share of each planted benchmark held out as clean text.
    cache_dir: cache root; defaults to `cache.cache_root()`.

  Returns:
    The index, built once per configuration and then loaded.
  """
  background = suite_background() if params.answer_min_info else None
  key = "|".join([benchmark_items.source_fingerprint(index_names),
                  ",".join(index_names), ",".join(planted_names),
                  repr(dataclasses.astuple(params)), f"seed{seed}",
                  f"clean{clean_fraction}", f"format{index_lib.INDEX_FORMAT}",
                  f"background:{background.fingerprint if background else 'none'}"])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  root = cache_dir or str(cache.cache_root())
  path = os.path.join(root, "decontam", f"robustness-{digest}.npz")
  if os.path.exists(path):
    return index_lib.BenchmarkIndex.load(path, params)
  items = {}
  for name in index_names:
    its = benchmark_items.load_items(name, cache_dir)
    if name in planted_names:
      its = [it for it in its
             if item_role(name, it.id, seed, clean_fraction) in SPLITS]
    items[name] = its
  index = index_lib.build_index(items, params, background)
  index.save(path)
  return index


def boilerplate_runs(items_by_benchmark: dict[str, Sequence]) -> np.ndarray:
  """Sorted hashes of the 13-word runs that questions of 2+ items share."""
  rows = [plain_words.word_ids(it.question) for its in items_by_benchmark.values()
          for it in its]
  runs, row_of = plain_words.row_runs(rows, COPY_WORDS)
  # Count each run once per question, so a count is a number of items.
  order = np.lexsort((row_of, runs))
  runs, row_of = runs[order], row_of[order]
  first = np.r_[True, (runs[1:] != runs[:-1]) | (row_of[1:] != row_of[:-1])]
  runs = runs[first]
  shared = np.r_[runs[1:] == runs[:-1], False]
  return np.unique(runs[shared])


def _within_one_edit(a: np.ndarray, b: np.ndarray) -> bool:
  """Whether word sequences differ by at most one substitution or indel."""
  if abs(a.size - b.size) > 1:
    return False
  if a.size < b.size:
    a, b = b, a
  m = b.size
  bad = np.flatnonzero(a[:m] != b)
  prefix = int(bad[0]) if bad.size else m
  bad = np.flatnonzero(a[::-1][:m] != b[::-1])
  suffix = int(bad[0]) if bad.size else m
  return prefix + suffix >= a.size - 1


def drop_copies(pool: dict[str, list], indexed: dict[str, Sequence]
                ) -> dict[str, list]:
  """Removes clean-pool items that copy indexed benchmark text.

  A held-out item is not clean when it shares a 13-word run with an indexed
  question or answer (MMLU items share passages and prompts, MATH items
  share [asy] figures), holds a shorter indexed question whole, or has an
  indexed item's answer and its question but for one word (ARC repeats items
  with a typo fixed): a copy of an indexed item is contamination, whatever
  its id.
  """
  questions = [plain_words.word_ids(it.question) for its in indexed.values() for it in its]
  answers = [plain_words.word_ids(it.answer) for its in indexed.values() for it in its]
  items = [(name, it) for name, its in pool.items() for it in its]
  pool_rows = ([plain_words.word_ids(it.question) for _, it in items],
               [plain_words.word_ids(it.answer) for _, it in items])
  copied = np.zeros(len(items), bool)
  # Shared 13-word runs; shorter questions whole. A short answer ("None of
  # the above") is everyday text, a short question is not.
  tables = {COPY_WORDS: plain_words.row_runs(questions + answers, COPY_WORDS)[0]}
  for size in range(3, COPY_WORDS):
    whole = [q for q in questions if q.size == size]
    if whole:
      tables[size] = plain_words.row_runs(whole, size)[0]
  for size, table in tables.items():
    table = np.sort(table)
    for rows in pool_rows:
      runs, row_of = plain_words.row_runs(rows, size)
      copied[row_of[plain_words.member(runs, table)]] = True
  by_answer: dict[bytes, list] = {}
  for q, a in zip(questions, answers):
    by_answer.setdefault(a.tobytes(), []).append(q)
  for i, (q, a) in enumerate(zip(*pool_rows)):
    copied[i] |= any(_within_one_edit(q, other)
                     for other in by_answer.get(a.tobytes(), ()))
  out = {name: [] for name in pool}
  for (name, it), bad in zip(items, copied):
    if not bad:
      out[name].append(it)
  return out
