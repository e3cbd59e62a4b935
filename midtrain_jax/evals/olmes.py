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
95% bootstrap interval over items; MMLU is the mean over its subjects (a
macro average), the others the mean over items (micro), and results say
which (`average`). Samples are stratified over subsets, so every interval
resamples items within each subset (stats.py). `bpb` is the bits per byte of
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


def _summary(task: olmes.Task, correct: dict[str, int]) -> dict:
  """`stats.summary` of per-item 0/1 values: the mean, or MMLU's mean over subjects.

  The sample is stratified over subsets (`olmes.sample`), so the interval
  resamples items within each subset whatever the average.
  """
  subsets = {d.doc_id: d.subset for d in task.docs}
  return stats.summary(correct, subsets, macro=task.macro_average)


def encode_task(tok, task: olmes.Task) -> list[tuple[list[int], list[int]]]:
  """Every request of the task (`_requests` order) as lm-eval-harness encodes it."""
  return [loglikelihood.encode_pair(tok, r.context, r.continuation)
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
    {task, variant, split, num_shots, metric (primary), score, ci95, average
    ("macro over N subjects" or "micro over N items"), n_items, subsets,
    metrics {name: score}, bpb, per_item {doc_id: 0/1 by the primary metric},
    predictions {doc_id: chosen idx}, logprobs {doc_id: each choice's
    loglikelihood}, seconds, requests, requests_per_s, tokens_per_s}.
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
  strata = [d.subset for d in task.docs]
  metrics = {m: stats.point([int(c[d.doc_id] == d.label) for d in task.docs], strata,
                            task.macro_average) for m, c in chosen.items()}
  primary = chosen[task.primary_metric]
  per_item = {d.doc_id: int(primary[d.doc_id] == d.label) for d in task.docs}
  summary = _summary(task, per_item)
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
              metric=task.primary_metric, score=summary["value"], ci95=summary["ci95"],
              average=summary["average"], n_items=len(task.docs),
              subsets=summary["subsets"], metrics=metrics,
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
  """One line: task, primary metric ± interval, how it averages, chance, speed."""
  half = result["ci95"]
  ci = "" if half is None or math.isnan(half) else f" ± {half:.3f}"
  verdict = " AT CHANCE" if at_chance(result, chance_level) else ""
  return (f"{result['task']:22s} {result['metric']:13s} {result['score']:.3f}{ci}  "
          f"{result.get('average', 'n=' + str(result['n_items']))}  "
          f"chance {chance_level:.3f}{verdict}  "
          f"{result['requests_per_s']:.1f} req/s  {result['tokens_per_s']:.0f} tok/s  "
          f"({result['seconds']:.0f}s)")
