"""Ordinary code that free-form benchmark answers are compared with.

A free-form answer (a worked solution, a function body) found alone is
evidence of a leak only when it says something ordinary code does not: a
textbook Fibonacci or prime check is HumanEval's answer and every
tutorial's. What sets a leaked solution apart is its vocabulary: names,
literals and words that ordinary code rarely uses (`prod_value`, `Janet`,
`bisect_right`, 16 eggs at $2). So each token gets a rarity against a
reference corpus of ordinary code (`rarity`: relative IDF over the corpus's
files), and an answer is a key only when its distinct tokens sum to enough
rarity (`params.answer_min_info`); `if`, `return`, `n`, `range`, `0` add
almost nothing, however long the answer.

The reference corpus is the Python standard library of the running
interpreter: every `.py` file under its library folder (modules, and the
test suite where the install ships it; installed packages excluded).
Ordinary code, docstrings and comments, present wherever this code runs,
written independently of every benchmark. Its fingerprint (Python version,
file list and sizes) is part of the index's cache key. Numpy and stdlib only.
"""
import dataclasses
import functools
import hashlib
import os
import platform
import sysconfig
from collections.abc import Collection

import numpy as np

from midtrain_jax.decontam import hashing, normalize

# Folders of the library folder that hold installed packages, not the library.
_SKIP = frozenset({"site-packages", "dist-packages", "__pycache__"})


@dataclasses.dataclass(frozen=True)
class Background:
  """The reference corpus: its files and a fingerprint of them.

  Attributes:
    root: the folder the paths are relative to.
    paths: relative paths of the files, sorted.
    fingerprint: changes whenever the files may read differently.
  """
  root: str
  paths: tuple[str, ...]
  fingerprint: str


def stdlib(exclude: Collection[str] = ()) -> Background:
  """The running interpreter's standard library sources as a `Background`.

  Args:
    exclude: relative paths to leave out (e.g. files that an evaluation
      uses as clean text, so they are not also the reference).

  Returns:
    The corpus, with a fingerprint of Python's version, the paths and sizes.
  """
  root = sysconfig.get_paths()["stdlib"]
  found = []
  for folder, dirs, names in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d not in _SKIP)
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        found.append((os.path.relpath(path, root), os.path.getsize(path)))
  excluded = set(exclude)
  found = sorted(f for f in found if f[0] not in excluded)
  digest = hashlib.sha1(repr(found).encode()).hexdigest()[:16]
  fingerprint = f"python{platform.python_version()}:{len(found)}files:{digest}"
  return Background(root, tuple(p for p, _ in found), fingerprint)


@functools.lru_cache(maxsize=2)
def _document_frequency(background: Background) -> tuple[np.ndarray, np.ndarray]:
  """(sorted distinct token hashes, number of files holding each) of the corpus."""
  texts = []
  for path in background.paths:
    with open(os.path.join(background.root, path), encoding="utf-8", errors="replace") as f:
      texts.append(f.read())
  # Each file's distinct tokens: a count over all files is a document frequency.
  tokens = np.concatenate([np.unique(r) for r in normalize.token_rows(texts)]
                          + [np.zeros(0, hashing.U64)])
  return np.unique(tokens, return_counts=True)


def rarity(background: Background, hashes: np.ndarray) -> np.ndarray:
  """Relative IDF of tokens over the corpus's files, in [0, 1].

  log(files / files with the token) / log(files): 0 for a token in every
  file, 1 for one in none (a name no ordinary code uses).

  Args:
    background: the reference corpus.
    hashes: uint64 token hashes (`normalize.token_hashes`).

  Returns:
    float32 per token.
  """
  vocab, df = _document_frequency(background)
  files = max(len(background.paths), 2)
  if not vocab.size:
    return np.ones(hashes.size, np.float32)
  at = np.minimum(np.searchsorted(vocab, hashes), vocab.size - 1)
  count = np.where(vocab[at] == hashes, df[at], 1)
  return (np.log(files / count) / np.log(files)).astype(np.float32)


def information(background: Background, hashes: np.ndarray) -> float:
  """The summed `rarity` of the distinct tokens of one text.

  Repeating a token adds nothing: `fib(n - 1) + fib(n - 2)` says `fib` once.
  """
  return float(rarity(background, np.unique(hashes)).sum())
