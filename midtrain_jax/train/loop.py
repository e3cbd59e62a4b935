"""`run(config, workdir, evaluation)`: the one orchestrator of a training run.

Data flows one way: config -> mesh + data iterator -> state (resume order in
checkpoint.py) -> jitted train step -> metrics / checkpoints. The host reads a
step's metrics only after the next step has been dispatched, so the device
never waits on logging. The data must be prepared (the loader only loads),
and what is evaluated during training is a hook the caller passes in
(`EvalHook`; evals/in_training.py has training's: held-out BPB and downstream
accuracy): the loop imports no evaluation.
"""
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data.load import pipeline, prepared
from midtrain_jax.parallel import sharding
from midtrain_jax.train import checkpoint, cpu_limit, metrics, optim, peaks
from midtrain_jax.train import step as ts


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What an evaluation hook reports at one step."""
  results: dict  # Kept in RunResult.evals[step].
  scalars: dict[str, float]  # Written as TensorBoard scalars.
  summary: str  # One line of the progress output.


# Called once per run as hook(config, graphdef, mesh, params_sharding); returns
# params -> Evaluation, or None when the config evaluates nothing.
EvalHook = Callable[[ml_collections.ConfigDict, Any, Any, Any],
                    Callable[[Any], Evaluation] | None]


class TrainingDivergedError(FloatingPointError):
  """The loss or gradient norm became NaN or infinite."""


@dataclasses.dataclass
class RunResult:
  step: int
  loss: float
  workdir: str
  losses: dict[int, float]  # Loss at every logged step.
  # The train step's metrics (loss, lr applied, grad/param/update norms) at every logged
  # step, with tokens_per_s, step_time_s and mfu since the previous one (none at the first).
  metrics: dict[int, dict[str, float]] = dataclasses.field(default_factory=dict)
  # The evaluation hook's results at every evaluated step (training's:
  # {"heldout": {task: {loss, bpb, ...}}, "downstream": {...}}, evals/in_training.py).
  evals: dict[int, dict] = dataclasses.field(default_factory=dict)
  # The MFU denominator measured at the run's start (None: it failed the physical check).
  peak: peaks.Peak | None = None


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  files.write_text(epath.Path(workdir) / "config.json", config_lib.to_json(config))


def _check_batch(config, mesh) -> None:
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if config.data.batch_size % batch_shards or config.data.batch_size % jax.process_count():
    raise ValueError(f"config.data.batch_size={config.data.batch_size} must be divisible by "
                     f"the data-parallel mesh size {batch_shards} and the process count "
                     f"{jax.process_count()}.")
  rows = config.data.batch_size // config.train.microbatches
  if rows % batch_shards:
    raise ValueError(f"A microbatch of {rows} rows (config.data.batch_size / "
                     f"config.train.microbatches={config.train.microbatches}) does not split "
                     f"over the data-parallel mesh size {batch_shards}.")


class ContaminationRiskError(ValueError):
  """The mixture's data was not decontaminated against the eval benchmarks."""


def _check_decontamination(config) -> None:
  benchmarks = tuple(config.eval.benchmarks)
  if not benchmarks or config.eval.decontam_check == "off":
    return
  gaps = prepared.undecontaminated(config.data, benchmarks)
  if not gaps:
    return
  listing = "; ".join(f"{task}: {', '.join(b)}" for task, b in sorted(gaps.items()))
  message = (f"Tasks of mixture {config.data.mixture!r} were not decontaminated against "
             f"the eval benchmarks ({listing}). Prepare with "
             f"--config.data.decontam.benchmarks=\"{benchmarks}\" into a fresh "
             "data.data_dir, or set eval.decontam_check=off.")
  if config.eval.decontam_check == "error":
    raise ContaminationRiskError(message)
  if jax.process_index() == 0:
    print(f"WARNING: {message}", flush=True)


def _measure_peak(config, mesh) -> peaks.Peak | None:
  """The MFU denominator, on the step's GEMM path; measured (on CPU) before the
  data pipeline and restore add their load to the host's. None (MFU not
  reported, training goes on) where the measured peak fails the physical check."""
  dtype = config.model.compute_dtype
  if mesh.devices.flat[0].platform == "cpu":
    logging.info("physical limit: %s", cpu_limit.host().describe(dtype))
  try:
    peak = peaks.run_peak(dtype, config.model.matmul, mesh.devices.flat)
    text = f"MFU against {peak.describe()} ({peak.check})"
  except peaks.AboveLimitError as e:
    peak, text = None, f"WARNING: MFU is not reported: {e}"
  logging.info("%s", text)
  if jax.process_index() == 0:
    print(text, flush=True)
  return peak


def _start_lr(config) -> float | None:
  if config.optim.schedule == "anneal" and config.optim.anneal_start == "from_checkpoint":
    lr = checkpoint.base_lr(config.train.init_from)
    logging.info("anneal start LR from the base checkpoint: %.3e", lr)
    return lr
  return None


def _all_processes_sum(counts: np.ndarray) -> np.ndarray:
  """Sums per-process counters (each process sees only its rows of the batch)."""
  if jax.process_count() == 1:
    return counts
  # Without jax_enable_x64 arrays are 32-bit: send int64 counts as two int32 halves.
  halves = np.stack([counts >> 20, counts & (2**20 - 1)]).astype(np.int32)
  gathered = np.asarray(multihost_utils.process_allgather(halves)).astype(np.int64)
  return ((gathered[:, 0] << 20) + gathered[:, 1]).sum(axis=0)


# A non-finite update or parameter norm means the new state itself is broken,
# even when the step's loss and gradients (computed before the update) were finite.
_MUST_BE_FINITE = ("loss", "grad_norm", "update_norm", "param_norm")


def _host_metrics(step: int, device_metrics) -> dict[str, float]:
  """Fetches a step's metrics and stops the run if it diverged."""
  values = {}
  for k, v in jax.device_get(device_metrics).items():
    if np.ndim(v):  # Per-expert token counts: one scalar per expert.
      values.update({f"{k}/{i}": float(x) for i, x in enumerate(np.ravel(v))})
    else:
      values[k] = float(v)
  bad = {k: values[k] for k in _MUST_BE_FINITE if not math.isfinite(values[k])}
  if bad:
    found = ", ".join(f"{k}={v}" for k, v in bad.items())
    raise TrainingDivergedError(
        f"Training diverged at step {step}: {found}. No checkpoint was written from this "
        "point; the last good checkpoint is intact (lower optim.lr or check the data).")
  return values


@dataclasses.dataclass
class _Run:
  """What the steps of a run share, built once before the first step."""
  state: Any
  step_fn: Callable
  ckpt: checkpoint.Checkpointer
  logger: metrics.MetricLogger
  mesh: Any
  start_lr: float | None
  evaluate: Callable[[Any], Evaluation] | None


def _build(config, workdir: str, model_cfg, mesh, data_iter, evaluation: EvalHook | None,
           peak: peaks.Peak | None) -> _Run:
  """Schedule, optimiser, sharded state (restored, initialised or fresh), jitted step."""
  total = config.train.steps
  start_lr = _start_lr(config)
  schedule = optim.make_schedule(config.optim, total, start_lr=start_lr)
  tx = optim.make_optimizer(config.optim, schedule)
  graphdef, abstract_params, axes = ts.abstract_model(model_cfg)
  params_sharding = ts.param_shardings(abstract_params, axes, mesh)
  state_sharding = ts.state_shardings(tx, abstract_params, params_sharding, mesh)
  abstract_state = jax.eval_shape(
      lambda: ts.TrainState(step=np.int32(0), params=abstract_params,
                            opt_state=tx.init(abstract_params)))
  ckpt = checkpoint.Checkpointer(workdir, config.ckpt)
  init_fn = lambda params=None: ts.init_state(model_cfg, tx, config.seed, state_sharding, params)
  state, origin = checkpoint.restore_or_init(ckpt, config, abstract_state, state_sharding,
                                             init_fn, data_iter)
  n_params = metrics.param_count(abstract_params)
  fpt = metrics.flops_per_token(model_cfg, n_params, config.data.seq_len)
  logging.info("%s; %.2fM params, mesh %s, %.3g FLOPs/token", origin, n_params / 1e6,
               dict(mesh.shape), fpt)
  print(f"{origin} | {n_params / 1e6:.2f}M params | mesh {dict(mesh.shape)} | "
        f"steps {int(state.step)}->{total}", flush=True)
  step_fn = ts.jit_train_step(graphdef, tx, schedule, config.train.z_loss, mesh, state_sharding,
                              config.train.microbatches)
  logger = metrics.MetricLogger(workdir, total, fpt, peak)
  evaluate = evaluation and evaluation(config, graphdef, mesh, params_sharding)
  return _Run(state=state, step_fn=step_fn, ckpt=ckpt, logger=logger, mesh=mesh,
              start_lr=start_lr, evaluate=evaluate)


def run(config: ml_collections.ConfigDict, workdir: str,
        evaluation: EvalHook | None = None) -> RunResult:
  """Trains for `config.train.steps` steps (resuming if `workdir` has a checkpoint).

  Args:
    config: a config from `configs/*.py`, overrides applied.
    workdir: output directory: config.json, TensorBoard events, checkpoints.
    evaluation: the hook evaluating the params every `eval.every_steps` and at
      the end (None: no evaluation during training).

  Returns:
    The final step, its loss and the workdir.
  """
  config_lib.validate(config)
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  _write_config(config, workdir)
  model_cfg = config_lib.model_config(config.model)
  mesh = sharding.make_mesh(config.mesh)
  _check_batch(config, mesh)
  data_vocab = prepared.vocab_size(config.data)
  if data_vocab > model_cfg.vocab_size:
    raise ValueError(f"The tokenizer has {data_vocab} tokens but config.model.vocab_size="
                     f"{model_cfg.vocab_size}.")
  peak = _measure_peak(config, mesh)
  data_iter = pipeline.make_train_iterator(
      config.data, seed=config.seed, process_index=jax.process_index(),
      process_count=jax.process_count())
  _check_decontamination(config)
  built = _build(config, workdir, model_cfg, mesh, data_iter, evaluation, peak)
  try:
    result = _train(config, workdir, built, data_iter)
  finally:
    built.ckpt.wait()
    built.ckpt.close()
    built.logger.close()
  print(f"final step={result.step} loss={result.loss:.4f}", flush=True)
  return result


def _train(config, workdir: str, run_: _Run, data_iter) -> RunResult:
  """The step loop: dispatch, log the previous step's metrics, checkpoint, evaluate."""
  total = config.train.steps
  task_names = data_iter.task_names
  tokens_per_step = config.data.batch_size * config.data.seq_len
  task_tokens = np.zeros(len(task_names), np.int64)
  pending = None  # (step, device metrics) of the last dispatched step.
  last = {"loss": float("nan")}
  losses, logged, evals = {}, {}, {}
  state = run_.state
  for step in range(int(state.step), total):
    host_batch = next(data_iter)
    task_ids = host_batch.get("task_ids")
    if task_ids is not None and task_names:
      task_tokens += np.bincount(task_ids[task_ids >= 0], minlength=len(task_names))
    batch = sharding.host_batch_to_global({k: host_batch[k] for k in ts.MODEL_INPUTS},
                                          run_.mesh)
    state, device_metrics = run_.step_fn(state, batch)
    if pending is not None:
      last = _host_metrics(*pending)
    pending = (step + 1, device_metrics)
    run_.logger.count_tokens(tokens_per_step)
    done = step + 1
    if done % config.train.log_every_steps == 0 or done == total:
      last = _host_metrics(*pending)
      losses[done] = last
      extra = {f"tokens/{name}": float(n)
               for name, n in zip(task_names, _all_processes_sum(task_tokens))}
      # Epochs started per task, as the loader counts them (restored on resume).
      extra.update({f"epochs/{name}": float(c["epochs"])
                    for name, c in data_iter.counters().items()})
      logged[done] = run_.logger.log(done, last, extra)
    if done % config.ckpt.every_steps == 0 or done == total:
      last = _host_metrics(*pending)  # Never checkpoint a diverged state.
      run_.ckpt.save(done, state, config, data_iter, start_lr=run_.start_lr)
    every = config.eval.every_steps
    if run_.evaluate and (done == total or (every and done % every == 0)):
      evaluation = run_.evaluate(state.params)
      evals[done] = evaluation.results
      run_.logger.write(done, evaluation.scalars)
      if jax.process_index() == 0:
        print(f"eval step {done} | {evaluation.summary}", flush=True)
  if pending is not None:
    last = _host_metrics(*pending)
  losses = {s: m["loss"] for s, m in losses.items()}
  return RunResult(step=int(state.step), loss=last["loss"], workdir=workdir, losses=losses,
                   metrics=logged, evals=evals, peak=run_.logger.peak)
