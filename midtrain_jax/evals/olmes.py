"""OLMES multiple-choice accuracy of a checkpoint, scored as OLMES scores it.

For each item every choice's continuation is scored given its context
(loglikelihood.py) and the prediction is the choice with the highest:

  acc_raw        summed log-probability of the continuation
  acc_per_char   log-probability / characters of the continuation (the
                 request's text, leading space included)
  acc_per_token  log-probability / tokens of the continuation
  acc_uncond     log-probability minus that of the same continuation after
                 "Answer:" (PMI; tasks whose files carry unconditioned requests)

The task's primary metric (its config.json) is the headline score, with a
95% bootstrap interval over items; MMLU is the mean over its subjects (the
interval resamples items within each subject). `bpb` is the bits per byte of
the gold continuation. Results keep, per item (keyed by the request file's
doc_id), whether the primary metric got it right and which choice it picked,
so runs compare item by item (evals/stats.py).
"""
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np

from midtrain_jax.benchmark_data import olmes
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import loglikelihood, stats
from midtrain_jax.evals.scoring import LN2, LoadedModel


def model_tokenizer(model: LoadedModel):
  """The tokenizer a checkpoint was trained (or imported) with, checked to exist.

  Raises:
    FileNotFoundError: naming the checkpoint and its `data.tokenizer` when the
      tokenizer file is gone (scores need the model's own tokenizer).
  """
  spec = model.config.data.tokenizer
  path = tokenizer_lib.demo_spm_path() if spec == tokenizer_lib.DEMO_SPM else pathlib.Path(spec)
  if not path.exists():
    raise FileNotFoundError(f"{model.path}: its tokenizer {spec!r} (data.tokenizer of its "
                            f"config) is missing at {path}; scoring needs the model's own "
                            "tokenizer.")
  return tokenizer_lib.load_tokenizer(spec)


def _requests(task: olmes.Task) -> list[olmes.Request]:
  """Every request of the task: each item's choices, then its unconditioned ones."""
  out = []
  for doc in task.docs:
    out += doc.choices
    out += doc.uncond or ()
  return out


def _per_doc(task: olmes.Task, scored: list[loglikelihood.Scored]):
  """(doc, its choices' results, its unconditioned results or None), in `_requests` order."""
  at = 0
  for doc in task.docs:
    k = len(doc.choices)
    uncond = None if doc.uncond is None else scored[at + k:at + 2 * k]
    yield doc, scored[at:at + k], uncond
    at += k if uncond is None else 2 * k


def predictions(task: olmes.Task, scored: list[loglikelihood.Scored]) -> dict[str, dict]:
  """{metric: {doc_id: chosen choice}} for every metric the task's requests allow."""
  chosen: dict[str, dict] = {m: {} for m in olmes.METRICS}
  for doc, mine, uncond in _per_doc(task, scored):
    logp = np.array([s.logprob for s in mine])
    chars = np.array([max(len(r.continuation), 1) for r in doc.choices])
    tokens = np.array([max(s.tokens, 1) for s in mine])
    chosen["acc_raw"][doc.doc_id] = int(np.argmax(logp))
    chosen["acc_per_char"][doc.doc_id] = int(np.argmax(logp / chars))
    chosen["acc_per_token"][doc.doc_id] = int(np.argmax(logp / tokens))
    if uncond is not None:
      chosen["acc_uncond"][doc.doc_id] = int(np.argmax(logp - [s.logprob for s in uncond]))
  return {m: c for m, c in chosen.items() if len(c) == len(task.docs)}


def _macro_ci95(correct: dict[str, int], subsets: dict[str, str], samples: int = 1000,
                seed: int = 0) -> float:
  """95% half-width of the mean over subsets, resampling items within each subset."""
  groups: dict[str, list[int]] = {}
  for doc_id, value in correct.items():
    groups.setdefault(subsets[doc_id], []).append(value)
  rng = np.random.default_rng(seed)
  replicates = np.zeros(samples)
  for values in groups.values():
    values = np.asarray(values, np.float64)
    picks = rng.integers(0, len(values), size=(samples, len(values)))
    replicates += values[picks].mean(axis=1)
  return float(stats.Z95 * (replicates / len(groups)).std())


def _value(task: olmes.Task, correct: dict[str, int]) -> float:
  """The score of per-item 0/1 values: their mean, or MMLU's mean over subjects."""
  if not task.macro_average:
    return stats.point(list(correct.values()))
  subsets = {d.doc_id: d.subset for d in task.docs}
  by_subset: dict[str, list[int]] = {}
  for doc_id, value in correct.items():
    by_subset.setdefault(subsets[doc_id], []).append(value)
  return float(np.mean([np.mean(v) for v in by_subset.values()]))


def _score(task: olmes.Task, correct: dict[str, int]) -> tuple[float, float | None]:
  """(score, 95% half-width) of per-item 0/1 values (`_value` and its bootstrap)."""
  if not task.macro_average:
    summary = stats.summary(correct)
    return summary["value"], summary["ci95"]
  subsets = {d.doc_id: d.subset for d in task.docs}
  return _value(task, correct), (_macro_ci95(correct, subsets) if len(correct) > 1 else None)


def encode_task(tok, task: olmes.Task) -> list[tuple[list[int], list[int]]]:
  """Every request of the task (`_requests` order) as lm-eval-harness encodes it."""
  return [loglikelihood.encode_pair(tok, r.context, r.continuation, tok.adds_bos)
          for r in _requests(task)]


def evaluate_task(model: LoadedModel, tok, task: olmes.Task, *, max_len: int = 2048,
                  batch: int = 4, mesh=None, log: Callable[[str], None] | None = print) -> dict:
  """Scores one task (already sampled) on a checkpoint.

  Args:
    model: the checkpoint (one device, or its params sharded over `mesh`).
    tok: the model's tokenizer.
    task: the items to score.
    max_len: the window in tokens.
    batch: contexts per forward pass.
    mesh: see `loglikelihood.loglikelihoods`.
    log: progress printer (None: silent).

  Returns:
    {task, variant, split, num_shots, metric (primary), score, ci95, n_items,
    subsets, metrics {name: score}, bpb, per_item {doc_id: 0/1 by the primary
    metric}, predictions {doc_id: chosen idx}, logprobs {doc_id: each
    choice's loglikelihood}, seconds, requests, requests_per_s, tokens_per_s}.
  """
  encoded = encode_task(tok, task)
  started = time.time()
  scored = loglikelihood.loglikelihoods(model, encoded, max_len=max_len, batch=batch,
                                        mesh=mesh, log=log)
  return task_result(task, encoded, scored, time.time() - started)


def task_result(task: olmes.Task, encoded: list, scored: list[loglikelihood.Scored],
                seconds: float) -> dict:
  """`evaluate_task`'s result from the task's encoded and scored requests."""
  chosen = predictions(task, scored)
  metrics = {m: _value(task, {d.doc_id: int(c[d.doc_id] == d.label) for d in task.docs})
             for m, c in chosen.items()}
  primary = chosen[task.primary_metric]
  per_item = {d.doc_id: int(primary[d.doc_id] == d.label) for d in task.docs}
  score, ci95 = _score(task, per_item)
  gold_nats = gold_bytes = 0.0
  logprobs = {}
  for doc, mine, _ in _per_doc(task, scored):
    gold_nats -= mine[doc.label].logprob
    gold_bytes += len(doc.choices[doc.label].continuation.encode("utf-8"))
    logprobs[doc.doc_id] = [s.logprob for s in mine]
  # Tokens run through the model: each distinct context once, every continuation.
  fed = (sum(len(c) for c in {tuple(c) for c, _ in encoded})
         + sum(len(cont) for _, cont in encoded))
  return dict(task=task.name, variant=task.variant, split=task.split, num_shots=task.num_shots,
              metric=task.primary_metric, score=score, ci95=ci95, n_items=len(task.docs),
              subsets=len({d.subset for d in task.docs}), metrics=metrics,
              bpb=gold_nats / LN2 / max(gold_bytes, 1.0), per_item=per_item,
              predictions=dict(primary), logprobs=logprobs, seconds=round(seconds, 2),
              requests=len(encoded), requests_per_s=len(encoded) / max(seconds, 1e-9),
              tokens_per_s=fed / max(seconds, 1e-9))


def chance(task: olmes.Task) -> float:
  """The expected accuracy of a uniform guess (1 / choices, averaged over items)."""
  return float(np.mean([1.0 / len(d.choices) for d in task.docs]))


def at_chance(result: dict, chance_level: float) -> bool:
  """The score's 95% interval holds the chance level: no signal yet."""
  half = result["ci95"]
  return half is not None and abs(result["score"] - chance_level) <= half


def format_line(result: dict, chance_level: float) -> str:
  """One line: task, primary metric ± interval, items, chance, speed."""
  half = result["ci95"]
  ci = "" if half is None or math.isnan(half) else f" ± {half:.3f}"
  verdict = " AT CHANCE" if at_chance(result, chance_level) else ""
  return (f"{result['task']:22s} {result['metric']:13s} {result['score']:.3f}{ci}  "
          f"n={result['n_items']:5d}  chance {chance_level:.3f}{verdict}  "
          f"{result['requests_per_s']:.1f} req/s  {result['tokens_per_s']:.0f} tok/s  "
          f"({result['seconds']:.0f}s)")
