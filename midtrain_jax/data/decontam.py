"""Decontaminates training text against the evaluation benchmarks.

An n-gram index over the benchmark items (`decontam_index`) is built once,
saved under the cache directory and reused; `decontam_scan` finds items in
documents. This module is the front door:

  * `Decontaminator`: plain Python API used by `prepare`:

      deco = Decontaminator.from_benchmarks(["gsm8k", "humaneval"])
      hits = deco.check(text)                      # -> list[Hit]
      cleaned, hits = deco.clean(text, mode="cut")  # or mode="drop" -> None

  * `seqio_preprocessor`: the same as a seqio preprocessor for Task lists.
  * `python -m midtrain_jax.data.decontam`: batch scan of a registered mixture
    or JSONL files, writing cleaned shards, `report.jsonl` and a summary
    (see `decontam_batch`).

The index and scanner are pure numpy; TensorFlow is imported only inside
`seqio_preprocessor`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
from typing import Iterable, Sequence

from midtrain_jax.data import benchmarks as benchmarks_lib
from midtrain_jax.data import decontam_index
from midtrain_jax.data import decontam_scan

DecontamParams = decontam_index.DecontamParams
Hit = decontam_scan.Hit
MODES = ("drop", "cut")


def index_path(names: Sequence[str], params: DecontamParams,
               cache_dir: str | None = None) -> str:
  """Returns where the index for these benchmarks and parameters is cached."""
  key = "|".join([benchmarks_lib.source_fingerprint(names),
                  ",".join(names), repr(dataclasses.astuple(params)),
                  f"format{decontam_index.INDEX_FORMAT}"])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  root = cache_dir or benchmarks_lib.cache_root()
  return os.path.join(root, "decontam", f"index-{digest}.npz")


class Decontaminator:
  """Finds and removes benchmark items in text.

  Attributes:
    index: the `BenchmarkIndex` in use.
    benchmarks: names of the benchmarks it checks against.
  """

  def __init__(self, index: decontam_index.BenchmarkIndex):
    self.index = index
    self.benchmarks = index.benchmarks
    self._scanner = decontam_scan.Scanner(index)

  @classmethod
  def from_benchmarks(cls, names: Iterable[str] = benchmarks_lib.DEFAULT_SUITE,
                      cache_dir: str | None = None,
                      **params) -> "Decontaminator":
    """Loads the cached index for `names`, building and saving it if needed.

    Args:
      names: benchmark names (see `benchmarks.SPECS`).
      cache_dir: cache root; defaults to `benchmarks.cache_root()`.
      **params: overrides of `DecontamParams` fields (e.g. threshold=0.7).

    Returns:
      A ready Decontaminator.
    """
    names = tuple(dict.fromkeys(names))
    for name in names:
      benchmarks_lib.get_spec(name)  # Fails early on a typo.
    unknown = set(params) - {f.name for f in dataclasses.fields(DecontamParams)}
    if unknown:
      raise ValueError(f"Unknown decontamination parameter(s): "
                       f"{sorted(unknown)}")
    config = DecontamParams(**params)
    path = index_path(names, config, cache_dir)
    if os.path.exists(path):
      return cls(decontam_index.BenchmarkIndex.load(path, config))
    items = {n: benchmarks_lib.load_items(n, cache_dir) for n in names}
    index = decontam_index.build_index(items, config)
    index.save(path)
    return cls(index)

  @classmethod
  def from_index_file(cls, path: str, **params) -> "Decontaminator":
    """Loads a saved index (parameters must match those it was built with)."""
    return cls(decontam_index.BenchmarkIndex.load(path, DecontamParams(**params)))

  def provenance(self) -> dict:
    """Returns what to record next to data cleaned by this decontaminator.

    `prepare` stores it with each task, so training can check the tasks of a
    mixture against its eval suite (see `missing_benchmarks`).
    """
    return {"benchmarks": list(self.benchmarks),
            "params": dataclasses.asdict(self.index.params),
            "index_format": decontam_index.INDEX_FORMAT}

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
        only the matched spans.

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
      if not hits:
        out.append((text, hits))
      elif mode == "drop":
        out.append((None, hits))
      else:
        out.append((cut_spans(text, [h.span for h in hits]), hits))
    return out


def missing_benchmarks(provenance: dict | None,
                       required: Iterable[str]) -> list[str]:
  """Returns the required benchmarks a task was not decontaminated against.

  Args:
    provenance: the task's recorded `Decontaminator.provenance()`, or None
      when it was never decontaminated.
    required: the eval suite, e.g. `benchmarks.DEFAULT_SUITE`.

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


@functools.lru_cache(maxsize=4)
def _shared_decontaminator(names: tuple[str, ...], cache_dir: str | None,
                           params: tuple[tuple[str, object], ...]
                           ) -> Decontaminator:
  return Decontaminator.from_benchmarks(names, cache_dir, **dict(params))


def seqio_preprocessor(dataset, benchmarks: Sequence[str] = (
    benchmarks_lib.DEFAULT_SUITE), mode: str = "drop", text_key: str = "text",
                       cache_dir: str | None = None, **params):
  """seqio preprocessor that decontaminates the `text_key` feature.

  Use in a Task as
  `functools.partial(decontam.seqio_preprocessor, benchmarks=("gsm8k",))`.
  It runs the numpy scanner through `tf.numpy_function`, so it belongs in
  offline preprocessing (seqio cache jobs, `prepare`), not a TPU input loop.

  Args:
    dataset: a tf.data.Dataset of feature dicts with a scalar string feature
      `text_key`.
    benchmarks: benchmark names to check against.
    mode: "drop" removes contaminated examples; "cut" removes matched spans.
    text_key: the feature holding the text.
    cache_dir: index cache root.
    **params: `DecontamParams` overrides.

  Returns:
    The decontaminated dataset, with the same features.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
  tf = benchmarks_lib._quiet_tensorflow()  # pylint: disable=protected-access
  deco = _shared_decontaminator(tuple(benchmarks), cache_dir,
                                tuple(sorted(params.items())))

  def clean_bytes(data: bytes):
    cleaned, _ = deco.clean(data.decode("utf-8", errors="replace"), mode)
    return (cleaned or "").encode("utf-8"), cleaned is not None

  def clean_example(ex):
    cleaned, keep = tf.numpy_function(clean_bytes, [ex[text_key]],
                                      [tf.string, tf.bool], stateful=False)
    cleaned.set_shape(())
    keep.set_shape(())
    return {**ex, text_key: cleaned}, keep

  return (dataset.map(clean_example)
          .filter(lambda ex, keep: keep)
          .map(lambda ex, keep: ex))


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; see `decontam_batch.parse_args`."""
  from midtrain_jax.data import decontam_batch  # pylint: disable=g-import-not-at-top
  return decontam_batch.main(argv)


if __name__ == "__main__":
  sys.exit(main())
