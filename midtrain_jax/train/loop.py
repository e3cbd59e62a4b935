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
from midtrain_jax.train import checkpoint, cpu_limit, metrics, nonfinite, optim, peaks, preemption
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


TrainingDivergedError = nonfinite.TrainingDivergedError
Preempted = preemption.Preempted


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


def _host_metrics(device_metrics) -> dict[str, float]:
  """A step's metrics as host floats (per-expert counts one scalar per expert)."""
  values = {}
  for k, v in jax.device_get(device_metrics).items():
    if np.ndim(v):  # Per-expert token counts: one scalar per expert.
      values.update({f"{k}/{i}": float(x) for i, x in enumerate(np.ravel(v))})
    else:
      values[k] = float(v)
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
  all_finite: Callable[[Any], dict]  # Jitted step.all_finite: checked before each save.


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
                              config.train.microbatches,
                              skip_nonfinite=config.train.on_nonfinite == "skip")
  logger = metrics.MetricLogger(workdir, total, fpt, peak)
  evaluate = evaluation and evaluation(config, graphdef, mesh, params_sharding)
  return _Run(state=state, step_fn=step_fn, ckpt=ckpt, logger=logger, mesh=mesh,
              start_lr=start_lr, evaluate=evaluate, all_finite=jax.jit(ts.all_finite))


def run(config: ml_collections.ConfigDict, workdir: str,
        evaluation: EvalHook | None = None) -> RunResult:
  """Trains for `config.train.steps` steps (resuming if `workdir` has a checkpoint).

  A SIGTERM while it runs ends it after the step in flight, with that step
  checkpointed: `Preempted` (train/preemption.py), a SystemExit with status
  `preemption.PREEMPTED_EXIT_STATUS`; running it again resumes.

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
  # From here to the last save a SIGTERM is a request to stop at a step boundary.
  with preemption.Watch(built.ckpt.manager.reached_preemption) as watch:
    try:
      result = _train(config, workdir, built, data_iter, watch)
    finally:
      built.ckpt.wait()
      built.ckpt.close()
      built.logger.close()
  print(f"final step={result.step} loss={result.loss:.4f}", flush=True)
  return result


class _Progress:
  """A run's per-step bookkeeping: batches in, metrics out (each step's read once, in
  order, one step late so the device never waits), losses, the non-finite guard."""

  def __init__(self, config, run_: _Run, data_iter):
    self.config, self.run_, self.data_iter = config, run_, data_iter
    self.task_tokens = np.zeros(len(data_iter.task_names), np.int64)
    self.guard = nonfinite.Guard(config.train.on_nonfinite, config.train.max_consecutive_skips)
    self.pending = None  # (step, device metrics) of the last dispatched step.
    self.last = {"loss": float("nan")}
    self.logged = {}

  def next_batch(self):
    """The next global batch, its tokens counted per task."""
    host_batch = next(self.data_iter)
    task_ids = host_batch.get("task_ids")
    if task_ids is not None and self.data_iter.task_names:
      self.task_tokens += np.bincount(task_ids[task_ids >= 0],
                                      minlength=len(self.data_iter.task_names))
    return sharding.host_batch_to_global({k: host_batch[k] for k in ts.MODEL_INPUTS},
                                         self.run_.mesh)

  def dispatched(self, step: int, device_metrics) -> None:
    """Step `step` is on its way: the one before it is read now."""
    self.settle()
    self.pending = (step, device_metrics)
    self.run_.logger.count_tokens(self.config.data.batch_size * self.config.data.seq_len)

  def settle(self) -> None:
    """Reads the pending step's metrics and applies train.on_nonfinite to them."""
    if self.pending is None:
      return
    step, device_metrics = self.pending
    self.pending = None
    values = _host_metrics(device_metrics)
    self.guard.check(step, values)
    self.last = values

  def log(self, step: int) -> None:
    self.settle()
    names = self.data_iter.task_names
    extra = {f"tokens/{name}": float(n)
             for name, n in zip(names, _all_processes_sum(self.task_tokens))}
    # Epochs started per task, as the loader counts them (restored on resume).
    extra.update({f"epochs/{name}": float(c["epochs"])
                  for name, c in self.data_iter.counters().items()})
    if self.config.train.on_nonfinite == "skip":
      extra["skipped_steps"] = float(self.guard.skipped)
    # With the rate and MFU the logger derived (RunResult.metrics).
    self.logged[step] = self.run_.logger.log(step, self.last, extra)

  def save(self, step: int, state) -> None:
    """Checkpoints `step` once its metrics, and every value of the state, are finite."""
    self.settle()
    nonfinite.check_saveable(step, self.run_.all_finite(state))
    self.run_.ckpt.save(step, state, self.config, self.data_iter,
                        start_lr=self.run_.start_lr)


def _train(config, workdir: str, run_: _Run, data_iter, watch: preemption.Watch
           ) -> RunResult:
  """The step loop: dispatch, log the previous step's metrics, checkpoint, evaluate."""
  total = config.train.steps
  progress = _Progress(config, run_, data_iter)
  evals = {}
  state = run_.state
  if watch.requested(int(state.step)) and int(state.step) < total:
    raise preemption.stop(int(state.step), None, watch.reason, workdir)
  for step in range(int(state.step), total):
    state, device_metrics = run_.step_fn(state, progress.next_batch())
    done = step + 1
    progress.dispatched(done, device_metrics)
    if done % config.train.log_every_steps == 0 or done == total:
      progress.log(done)
    saved = done % config.ckpt.every_steps == 0 or done == total
    if saved:
      progress.save(done, state)
    if done < total and watch.requested(done):
      if not saved:
        progress.save(done, state)
      run_.ckpt.wait()
      raise preemption.stop(done, f"{run_.ckpt.directory}/{done}", watch.reason, workdir)
    every = config.eval.every_steps
    if run_.evaluate and (done == total or (every and done % every == 0)):
      evaluation = run_.evaluate(state.params)
      evals[done] = evaluation.results
      run_.logger.write(done, evaluation.scalars)
      if jax.process_index() == 0:
        print(f"eval step {done} | {evaluation.summary}", flush=True)
  progress.settle()
  losses = {s: m["loss"] for s, m in progress.logged.items()}
  return RunResult(step=int(state.step), loss=progress.last["loss"], workdir=workdir,
                   losses=losses, metrics=progress.logged, evals=evals,
                   peak=run_.logger.peak)
