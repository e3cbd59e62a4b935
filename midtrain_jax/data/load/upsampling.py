"""Quality-aware upsampling (QAU): quality buckets per task and how often each repeats.

OLMo 3 grades its data with a quality classifier and repeats the best more
(top data up to 7x, low-quality web ~1.2x) under a fixed token budget. Here,
with `data.qau.enabled` (keys documented in config.py):

* The prepared folder's quality scorer gives every training document a
  score; scorer and scores are made by the preparation
  (data/prepare/qau_scores.py) and stored in the folder (data/layout.py), where
  this module reads them.
* Within each task, documents fall into buckets by score quantile
  (`data.qau.quantiles`; by rank, so each bucket holds its quantile's share of
  the documents), and bucket b has the factor `data.qau.factors[b]` (or the
  task's own in `data.qau.task_factors`).
* One pass over a task holds each document `factor` times, shuffled anew for
  every pass (`UpsampledDataset`). A fractional factor f gets floor(f) copies
  plus one in a fraction frac(f) of the passes, spread evenly: over E passes a
  document appears floor(f * E) or ceil(f * E) times (deterministic).

Accounting: the mixture weights are token fractions, so the run's tokens and
each task's share of them are unchanged; QAU changes which documents fill a
task's share: bucket b gets `f_b * T_b / sum(f * T)` of the task's tokens
(T_b: its tokens). A task's repetition cap (`max_epochs`) counts passes over
the upsampled task, so it offers `cap * sum(f * T)` tokens and a document of
bucket b is drawn at most ceil(f_b * cap) times; the loader's epoch counters
count the same passes. The upsampled order is a pure function of the scores,
the config and the seed, so resuming from the mixer's counters stays exact.
"""
import pathlib
from collections.abc import Sequence

import grain
import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog


def buckets(scores: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
  """The quality bucket of each document: 0 (lowest scores) .. len(quantiles).

  By rank (ties in document order), so bucket b holds the documents whose rank
  lies between quantiles b - 1 and b, whatever the score distribution.
  """
  n = len(scores)
  ranks = np.empty(n, np.int64)
  ranks[np.argsort(scores, kind="stable")] = np.arange(n)
  return np.searchsorted(np.asarray(quantiles, np.float64) * n, ranks + 0.5, side="right")


def factors_of(qau_cfg, task: str) -> tuple[float, ...]:
  """The repetition factor of each bucket of `task` (its own, else the default)."""
  own = qau_cfg.task_factors.get(task)
  return tuple(float(f) for f in (own if own is not None else qau_cfg.factors))


def pass_copies(factors: np.ndarray, phase: np.ndarray, epoch: int) -> np.ndarray:
  """Copies of each document in pass `epoch` (0-based).

  floor(f) copies, plus one where the rotation `phase + (epoch + 1) * frac(f)`
  wraps around 1: that happens in a fraction frac(f) of the passes, evenly
  spaced, and (the phases being uniform) to a fraction frac(f) of the
  documents of each pass.

  Args:
    factors: each document's factor (> 0).
    phase: each document's phase, uniform in [0, 1).
    epoch: the pass.

  Returns:
    int64 copies per document.
  """
  whole = np.floor(factors)
  frac = factors - whole
  extra = np.mod(phase + (epoch + 1) * frac, 1.0) < frac
  return (whole + extra).astype(np.int64)


class UpsampledDataset(grain.MapDataset):
  """`epochs` passes over a task's documents, each `factor` times per pass, shuffled.

  The passes are concatenated; pass e is a seeded permutation of its copies,
  made when first read (one pass in memory at a time).
  """

  def __init__(self, parent: grain.MapDataset, factors: np.ndarray, epochs: int, seed: int):
    super().__init__(parent)
    if len(factors) != len(parent):
      raise ValueError(f"{len(factors)} QAU factors for {len(parent)} documents.")
    self._factors = np.asarray(factors, np.float64)
    self._phase = np.random.default_rng([seed, 0x9A0]).random(len(parent))
    self._seed = seed
    sizes = [int(pass_copies(self._factors, self._phase, e).sum()) for e in range(epochs)]
    self._ends = np.cumsum([0, *sizes])
    self._pass: tuple[int, np.ndarray | None] = (-1, None)

  def __len__(self) -> int:
    return int(self._ends[-1])

  def __str__(self) -> str:
    return f"UpsampledDataset(passes={len(self._ends) - 1})"

  def pass_order(self, epoch: int) -> np.ndarray:
    """The document indices of pass `epoch`, in order."""
    copies = pass_copies(self._factors, self._phase, epoch)
    order = np.repeat(np.arange(len(copies)), copies)
    return np.random.default_rng([self._seed, epoch]).permutation(order)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch = int(np.searchsorted(self._ends, index, side="right")) - 1
    cached = self._pass
    if cached[0] != epoch:
      cached = self._pass = (epoch, self.pass_order(epoch))
    return self._parent[int(cached[1][index - self._ends[epoch]])]


def document_factors(data_cfg, data_dir: str | pathlib.Path,
                     tasks: Sequence[str]) -> dict[str, np.ndarray]:
  """{task: repetition factor of each train document, in record order} (see module doc).

  Raises:
    FileNotFoundError: naming the prepare command, when the folder's quality
      scores are missing or were made for other `data.qau` scorer settings.
  """
  catalog.check_tasks(data_cfg.qau.task_factors, "data.qau.task_factors")
  found = layout.read_quality_scorer(pathlib.Path(data_dir))
  wanted = {"positive_tasks": list(data_cfg.qau.positive_tasks),
            "negative_tasks": list(data_cfg.qau.negative_tasks),
            "scorer_docs": data_cfg.qau.scorer_docs}
  meta = found[1] if found else {}
  # Folders scored before `scorer_docs` was recorded are checked on the tasks only.
  stale = [k for k, v in wanted.items() if k in meta and meta[k] != v]
  factors = {}
  for task in tasks:
    stats = layout.read_stats(data_dir, task)
    saved = layout.read_quality_scores(data_dir, task)
    if (not found or stale or saved is None or saved["scorer"] != meta.get("fingerprint")
        or saved["task"] != stats["fingerprint"] or len(saved["scores"]) != stats["train_docs"]):
      why = (f"its scorer was trained with other data.qau settings ({', '.join(stale)})"
             if stale else f"task {task} has no current quality scores")
      raise FileNotFoundError(
          f"Quality-aware upsampling needs the quality scores of {data_dir}, but {why}. "
          f"Run `{layout.prepare_command(data_cfg.mixture, data_dir)} --data.qau.enabled=True` "
          "(with the same data.qau settings) first.")
    factors[task] = np.asarray(factors_of(data_cfg.qau, task))[
        buckets(saved["scores"], data_cfg.qau.quantiles)]
  return factors
