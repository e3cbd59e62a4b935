"""Quality-aware upsampling (QAU): quality buckets per task and how often each repeats.

OLMo 3 grades its data with a quality classifier and repeats the best more
(top data up to 7x, low-quality web ~1.2x) under a fixed token budget. Here,
with `data.qau.enabled` (keys documented in config.py):

* The prepared folder's quality scorer (quality.py) gives every training
  document a score; scorer and scores are stored in the folder (layout.py)
  and made on first use, by `prepare` or by the first run that needs them.
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
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax.data import catalog, layout, quality
from midtrain_jax.data import tokenizer as tokenizer_lib

_SCORE_CHUNK = 4096


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


def train_documents(data_dir: pathlib.Path, task: str):
  """Yields chunks of a task's stored train documents, in record order."""
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, "train"))
  for start in range(0, len(source), _SCORE_CHUNK):
    yield [layout.decode_record(source[i])
           for i in range(start, min(len(source), start + _SCORE_CHUNK))]


def ensure_scores(data_cfg, data_dir: str | pathlib.Path, tasks: Sequence[str],
                  log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
  """The quality scores of `tasks` in a prepared folder, made and saved if missing.

  Trains the folder's scorer when it has none for these `data.qau` settings,
  and scores every task whose saved scores are missing or stale (another
  scorer, or the task re-prepared).

  Args:
    data_cfg: the `data` config section.
    data_dir: the prepared folder.
    tasks: the tasks to score.
    log: progress printer.

  Returns:
    {task: {"scores", "tokens"}}: per train document, in record order.
  """
  config_lib.check_qau(data_cfg.qau)
  for task in data_cfg.qau.task_factors:
    try:
      catalog.get_task(task)
    except ValueError as e:
      raise ValueError(f"data.qau.task_factors.{task}: {e}") from None
  data_dir = pathlib.Path(data_dir)
  manifest = layout.read_manifest(data_dir)
  if manifest is None:
    raise FileNotFoundError(f"{data_dir} is not a prepared data folder (no {layout.MANIFEST}).")
  wanted = quality.fingerprint(data_cfg.qau, manifest["tokenizer_fingerprint"])
  scorer = quality.load(data_dir)
  if scorer is None or scorer.meta.get("fingerprint") != wanted:
    tok = tokenizer_lib.load_tokenizer(manifest["tokenizer"])
    scorer = quality.train_for(data_cfg, tok, log)
    quality.save(scorer, data_dir)
  found = {}
  for task in tasks:
    stats = layout.read_stats(data_dir, task)
    saved = layout.read_quality_scores(data_dir, task)
    if (saved is None or saved["scorer"] != wanted or saved["task"] != stats["fingerprint"]
        or len(saved["scores"]) != stats["train_docs"]):
      scores, tokens = [], []
      for docs in train_documents(data_dir, task):
        scores.append(scorer.score([d[1:-1] for d in docs]))  # Without BOS and EOS.
        tokens.append([len(d) for d in docs])
      # Float32 as stored: a run that scored and one that reads the file bucket alike.
      saved = {"scores": np.concatenate(scores or [[]]).astype(np.float32),
               "tokens": np.concatenate(tokens or [[]]).astype(np.int64)}
      layout.write_quality_scores(data_dir, task, saved["scores"], saved["tokens"],
                                  scorer=wanted, task_fingerprint=stats["fingerprint"])
    found[task] = {"scores": saved["scores"], "tokens": saved["tokens"]}
  return found


def document_factors(data_cfg, data_dir: str | pathlib.Path, tasks: Sequence[str],
                     log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
  """{task: repetition factor of each train document, in record order} (see module doc)."""
  scored = ensure_scores(data_cfg, data_dir, tasks, log)
  return {task: np.asarray(factors_of(data_cfg.qau, task))[
      buckets(s["scores"], data_cfg.qau.quantiles)] for task, s in scored.items()}


def bucket_table(data_cfg, data_dir: str | pathlib.Path, rates: dict[str, float],
                 budget_tokens: int = 0, log: Callable[[str], None] = print) -> list[dict]:
  """Per task, its quality buckets before and after QAU.

  Args:
    data_cfg: the `data` config section (its `qau` settings are used, enabled or not).
    data_dir: the prepared folder.
    rates: {task: mixture rate} (token fractions, normalised here).
    budget_tokens: training tokens to compute the passes (and epochs) for; 0: none.
    log: progress printer.

  Returns:
    One dict per task: task, cap, tokens_before and tokens_after (per pass),
    passes (at `budget_tokens`, capped; None without a budget) and buckets:
    [{bucket, quantiles (lo, hi), docs, tokens, factor, share_before,
    share_after (of the task's tokens), repeats_at_cap, epochs (at the
    budget; None without one)}].
  """
  scored = ensure_scores(data_cfg, data_dir, list(rates), log)
  edges = (0.0, *data_cfg.qau.quantiles, 1.0)
  total_rate = sum(rates.values())
  rows = []
  for task, rate in rates.items():
    cap = data_cfg.max_epochs or catalog.get_task(task).max_epochs
    factors = factors_of(data_cfg.qau, task)
    bucket = buckets(scored[task]["scores"], data_cfg.qau.quantiles)
    tokens = np.bincount(bucket, weights=scored[task]["tokens"], minlength=len(factors))
    docs = np.bincount(bucket, minlength=len(factors))
    before, after = float(tokens.sum()), float(np.dot(tokens, factors))
    passes = None
    if budget_tokens:
      passes = min(float(cap), budget_tokens * rate / total_rate / max(after, 1.0))
    rows.append(dict(
        task=task, cap=cap, tokens_before=int(before), tokens_after=int(round(after)),
        passes=passes,
        buckets=[dict(bucket=b, quantiles=(edges[b], edges[b + 1]), docs=int(docs[b]),
                      tokens=int(tokens[b]), factor=factors[b],
                      share_before=float(tokens[b] / max(before, 1.0)),
                      share_after=float(tokens[b] * factors[b] / max(after, 1.0)),
                      repeats_at_cap=int(np.ceil(factors[b] * cap)),
                      epochs=None if passes is None else factors[b] * passes)
                 for b in range(len(factors))]))
  return rows
