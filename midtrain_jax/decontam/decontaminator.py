"""Decontaminates training text against the evaluation benchmarks.

An n-gram index over the benchmark items (`index.py`) is built once, saved
under the cache directory and reused; `scan.py` finds items in documents; the
matching rules are `params.DecontamParams`.
`Decontaminator` is the front door, used by `prepare`, the batch command, Beam
and the seqio preprocessor:

    deco = Decontaminator.from_benchmarks(["gsm8k", "humaneval"])
    hits = deco.check(text)                      # -> list[Hit]
    cleaned, hits = deco.clean(text, mode="cut")  # or mode="drop" -> None
    same, hits = deco.clean(text, mode="keep")    # finds and reports, keeps the text

Pure numpy: nothing here imports TensorFlow or the training code.
"""
import dataclasses
import hashlib
import os
from collections.abc import Iterable, Sequence

from midtrain_jax import cache
from midtrain_jax.benchmark_data import items as benchmark_items
from midtrain_jax.decontam import background as background_lib
from midtrain_jax.decontam import index as index_lib
from midtrain_jax.decontam import params as params_lib
from midtrain_jax.decontam import scan as scan_lib
from midtrain_jax.decontam.params import DecontamParams

Hit = scan_lib.Hit
# "keep" changes nothing and only reports: training on the hits measures leakage.
MODES = ("drop", "cut", "keep")


def index_path(names: Sequence[str], params: DecontamParams,
               cache_dir: str | None = None) -> str:
  """Returns where the index for these benchmarks and parameters is cached.

  The key holds the item sources, the parameters, the index format and the
  reference corpus (`background.stdlib()`, which depends on the Python
  install): an index is rebuilt whenever what it would hold may change.
  """
  root = cache_dir or str(cache.cache_root())
  return os.path.join(root, "decontam", f"index-{rules_key(names, params)}.npz")


def cached_index_path(names: Iterable[str], cache_dir: str | None = None, **params) -> str:
  """Where `Decontaminator.from_benchmarks(names, cache_dir, **params)` keeps its index."""
  return index_path(tuple(dict.fromkeys(names)), params_lib.from_overrides(**params), cache_dir)


def rules_key(names: Sequence[str], params: DecontamParams | None = None) -> str:
  """A digest of everything that decides what is found: item sources, benchmark
  names, parameters, index format and reference corpus. Prepared data records
  it, so a change of the rules re-prepares instead of reusing old decisions."""
  params = params or params_lib.from_overrides()
  key = "|".join([benchmark_items.source_fingerprint(names),
                  ",".join(names), repr(dataclasses.astuple(params)),
                  f"format{index_lib.INDEX_FORMAT}", _background_key(params)])
  return hashlib.sha1(key.encode()).hexdigest()[:16]


def _background_key(params: DecontamParams) -> str:
  if not params.answer_min_info:
    return "background:none"
  return f"background:{background_lib.stdlib().fingerprint}"


class Decontaminator:
  """Finds and removes benchmark items in text.

  Attributes:
    index: the `BenchmarkIndex` in use.
    benchmarks: names of the benchmarks it checks against.
  """

  def __init__(self, index: index_lib.BenchmarkIndex):
    self.index = index
    self.benchmarks = index.benchmarks
    self._scanner = scan_lib.Scanner(index)

  @classmethod
  def from_benchmarks(cls, names: Iterable[str] = benchmark_items.DEFAULT_SUITE,
                      cache_dir: str | None = None,
                      **params) -> "Decontaminator":
    """Loads the cached index for `names`, building and saving it if needed.

    Args:
      names: benchmark names (see `evals.items.SPECS`).
      cache_dir: cache root; defaults to `cache.cache_root()`.
      **params: overrides of `DecontamParams` fields (e.g. threshold=0.7).

    Returns:
      A ready Decontaminator.
    """
    names = tuple(dict.fromkeys(names))
    for name in names:
      benchmark_items.get_spec(name)  # Fails early on a typo.
    config = params_lib.from_overrides(**params)
    path = cached_index_path(names, cache_dir, **params)
    if os.path.exists(path):
      return cls(index_lib.BenchmarkIndex.load(path, config))
    items = {n: benchmark_items.load_items(n, cache_dir) for n in names}
    index = index_lib.build_index(items, config)
    index.save(path)
    return cls(index)

  @classmethod
  def from_index_file(cls, path: str, **params) -> "Decontaminator":
    """Loads a saved index (parameters must match those it was built with)."""
    return cls(index_lib.BenchmarkIndex.load(path, params_lib.from_overrides(**params)))

  def provenance(self) -> dict:
    """Returns what to record next to data cleaned by this decontaminator.

    `prepare` stores it with each task, so training can check the tasks of a
    mixture against its eval suite (see `missing_benchmarks`).
    """
    return {"benchmarks": list(self.benchmarks),
            "params": dataclasses.asdict(self.index.params),
            "index_format": index_lib.INDEX_FORMAT}

  def check(self, text: str) -> list[Hit]:
    """Returns the benchmark items found in `text`, ordered by position."""
    return self._scanner.scan([text])[0]

  def check_batch(self, texts: Sequence[str]) -> list[list[Hit]]:
    """Like `check` for many documents at once (much faster per document)."""
    return self._scanner.scan(texts)

  def clean(self, text: str, mode: str = "drop") -> tuple[str | None, list[Hit]]:
    """Removes contamination from one document.

    Args:
      text: the document.
      mode: "drop" returns None for a contaminated document; "cut" removes
        only the matched spans (None when nothing but whitespace is left);
        "keep" returns the text unchanged (the hits still say what it holds).

    Returns:
      (cleaned text, or None when dropped; the hits).
    """
    return self.clean_batch([text], mode)[0]

  def clean_batch(self, texts: Sequence[str], mode: str = "drop"
                  ) -> list[tuple[str | None, list[Hit]]]:
    """`clean` for many documents at once."""
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    out = []
    for text, hits in zip(texts, self._scanner.scan(texts)):
      if not hits or mode == "keep":
        out.append((text, hits))
      elif mode == "drop":
        out.append((None, hits))
      else:
        cut = cut_spans(text, [h.span for h in hits])
        # A document that was nothing but the benchmark item is dropped.
        out.append((cut if cut.strip() else None, hits))
    return out


def missing_benchmarks(provenance: dict | None,
                       required: Iterable[str]) -> list[str]:
  """Returns the required benchmarks a task was not decontaminated against.

  Args:
    provenance: the task's recorded `Decontaminator.provenance()`, or None
      when it was never decontaminated.
    required: the eval suite, e.g. `items.EVAL_SUITE`.

  Returns:
    Missing benchmark names, in the order of `required`.
  """
  done = set((provenance or {}).get("benchmarks", ()))
  return [name for name in required if name not in done]


def cut_spans(text: str, spans: Iterable[tuple[int, int]]) -> str:
  """Returns `text` without the (possibly overlapping) character spans."""
  pieces, pos = [], 0
  for start, end in sorted(spans):
    if end <= pos:
      continue
    pieces.append(text[pos:max(start, pos)])
    pos = end
  pieces.append(text[pos:])
  return "".join(pieces)
