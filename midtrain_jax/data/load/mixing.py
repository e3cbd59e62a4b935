"""Mixture weights, weight stages over training, and the Grain mixing step.

Weights are token fractions: the mixer picks, for every next document, the
task whose share of the tokens emitted in the current stage lags its weight
the most (a deterministic deficit round-robin, so the realised token shares
match the weights closely at any point, and the state is a few counters).

Stages switch on a token clock: the stage of `start_step` begins once the
mixer has emitted `start_step * tokens_per_step` tokens (tokens per step =
local batch * seq_len). A document counts when it is drawn and packing reads
one window ahead, so a switch lands within one packing window plus one
document of `start_step` (at seq 2048 x batch 16: a few steps).

A task whose documents run out after its repetition cap leaves the mix with a
warning and the others are renormalised; when every weighted task is spent
the iterator stops.
"""
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class WeightStage:
  """Weights (aligned with the task order) in force from `start_step` on."""
  start_step: int
  weights: tuple[float, ...]


def _validated(weights: dict, task_names: Sequence[str], where: str) -> tuple[float, ...]:
  for name, weight in weights.items():
    if name not in task_names:
      raise ValueError(f"{where}: task {name!r} is not in the mixture; its tasks "
                       f"are {list(task_names)}.")
    if not isinstance(weight, (int, float)) or weight < 0 or not np.isfinite(weight):
      raise ValueError(f"{where}: weight of {name!r} must be a finite number >= 0, "
                       f"got {weight!r}.")
  values = tuple(float(weights.get(name, 0.0)) for name in task_names)
  if sum(values) <= 0:
    raise ValueError(f"{where}: all weights are zero; give at least one task a "
                     "positive weight.")
  total = sum(values)
  return tuple(v / total for v in values)


def resolve_stages(rates: dict[str, float], weights: dict, weight_stages: Sequence,
                   ) -> tuple[list[str], list[WeightStage]]:
  """Turns the mixture rates and the config's weight overrides into stages.

  Args:
    rates: the registered mixture's {task: rate}.
    weights: `data.weights` ({} keeps the rates).
    weight_stages: `data.weight_stages`: () or ((start_step, {task: w}), ...).

  Returns:
    (task names in mixture order, stages sorted by start step, normalised).

  Raises:
    ValueError: naming the unknown task, negative weight, all-zero stage or
      bad stage ordering.
  """
  task_names = list(rates)
  if weight_stages and weights:
    raise ValueError("Set either data.weights or data.weight_stages, not both.")
  if not weight_stages:
    chosen = dict(weights) if weights else rates
    return task_names, [WeightStage(0, _validated(chosen, task_names, "data.weights"))]
  stages, previous = [], -1
  for i, stage in enumerate(weight_stages):
    if len(stage) != 2 or not isinstance(stage[1], dict):
      raise ValueError(f"data.weight_stages[{i}] must be (start_step, {{task: weight}}), "
                       f"got {stage!r}.")
    start, stage_weights = int(stage[0]), stage[1]
    if (i == 0 and start != 0) or start <= previous:
      raise ValueError("data.weight_stages must start at step 0 and have strictly "
                       f"increasing start steps; got {[s[0] for s in weight_stages]}.")
    stages.append(WeightStage(start, _validated(stage_weights, task_names,
                                                f"data.weight_stages[{i}]")))
    previous = start
  return task_names, stages


class StagedMixIterDataset(grain.IterDataset):
  """Mixes per-task MapDatasets of documents by staged token weights."""

  def __init__(self, tasks: Sequence[grain.MapDataset], *, task_names: Sequence[str],
               stages: Sequence[WeightStage], tokens_per_step: int,
               start_step: int = 0, epoch_docs: Sequence[int] = ()):
    super().__init__(list(tasks))
    self.tasks = list(tasks)
    self.task_names = list(task_names)
    self.stages = list(stages)
    self.tokens_per_step = tokens_per_step
    self.start_step = start_step
    self.epoch_docs = list(epoch_docs) or [len(t) for t in tasks]

  def __iter__(self) -> "MixIterator":
    return MixIterator(self)

  def __str__(self) -> str:
    return f"StagedMixIterDataset(tasks={self.task_names})"


class MixIterator(grain.DatasetIterator):
  """Iterator of StagedMixIterDataset; its state is a handful of counters."""

  def __init__(self, ds: StagedMixIterDataset):
    super().__init__()
    self._ds = ds
    n = len(ds.tasks)
    self._next_index = [0] * n
    self._tokens = [0] * n
    self._stage_tokens = [0] * n
    self._stage = 0
    self._total_tokens = 0
    self._warned: set[int] = set()

  def _current_stage(self) -> int:
    step = self._ds.start_step + self._total_tokens // self._ds.tokens_per_step
    return max(i for i, s in enumerate(self._ds.stages) if s.start_step <= step)

  def __next__(self) -> dict[str, Any]:
    stage = self._current_stage()
    if stage != self._stage:
      self._stage, self._stage_tokens = stage, [0] * len(self._tokens)
    weights = np.array(self._ds.stages[stage].weights)
    for i, task in enumerate(self._ds.tasks):
      if weights[i] > 0 and self._next_index[i] >= len(task):
        if i not in self._warned:
          logging.warning("Data task %s is exhausted after its repetition cap; "
                          "the other tasks are reweighted.", self._ds.task_names[i])
          self._warned.add(i)
        weights[i] = 0.0
    if weights.sum() <= 0:
      raise StopIteration
    weights /= weights.sum()
    # Deficit round-robin: the task furthest below its share goes next.
    deficit = weights * sum(self._stage_tokens) - np.array(self._stage_tokens)
    deficit[weights <= 0] = -np.inf
    task = int(np.argmax(deficit))
    doc = self._ds.tasks[task][self._next_index[task]]
    tokens = doc["tokens"]
    self._next_index[task] += 1
    count = len(tokens) - 1
    self._tokens[task] += count
    self._stage_tokens[task] += count
    self._total_tokens += count
    if "loss_mask" in doc:  # A chat task's document: its own mask goes with it.
      return {"tokens": tokens, "loss_mask": doc["loss_mask"], "task_id": task}
    return {"tokens": tokens, "task_id": task}

  def get_state(self) -> dict[str, Any]:
    return {"next_index": list(self._next_index), "tokens": list(self._tokens),
            "stage_tokens": list(self._stage_tokens), "stage": self._stage,
            "total_tokens": self._total_tokens}

  def set_state(self, state: dict[str, Any]) -> None:
    if len(state["next_index"]) != len(self._ds.tasks):
      raise ValueError(f"Iterator state has {len(state['next_index'])} tasks, the "
                       f"mixture has {len(self._ds.tasks)}: was the mixture changed?")
    self._next_index = [int(v) for v in state["next_index"]]
    self._tokens = [int(v) for v in state["tokens"]]
    self._stage_tokens = [int(v) for v in state["stage_tokens"]]
    self._stage = int(state["stage"])
    self._total_tokens = int(state["total_tokens"])

  def counters(self) -> dict[str, dict[str, float]]:
    """Per task: documents and tokens drawn so far and epochs started."""
    return {name: {"docs": self._next_index[i], "tokens": self._tokens[i],
                   "epochs": self._next_index[i] / max(1, self._ds.epoch_docs[i])}
            for i, name in enumerate(self._ds.task_names)}
