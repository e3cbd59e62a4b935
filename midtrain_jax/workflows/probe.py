"""The probe of the bridging study: the same short fine-tuning on the target from
every checkpoint, and the target metric after it.

The probe trains `probe_steps` steps on the target task alone from the
checkpoint (fresh AdamW moments, LR decaying linearly from `probe_lr` to 0)
and scores the target's held-out split: bits per byte of its documents
(lower = better). Its run folder is reused like the study's runs.
"""
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.evals import heldout, scoring
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import study_runs


def check_target(target: str) -> None:
  """Fails naming the target when it is no known task."""
  catalog.check_tasks([target], "target")


def probe_config(init: str, target: str, options, mixture: str) -> ml_collections.ConfigDict:
  """The probe from the checkpoint `init` (a step directory or workdir)."""
  source, step = checkpoint.resolve_base(init)
  c = source.config(step)
  c.workflow = "train"
  c.data.update(mixture=mixture, weights={}, weight_stages=((0, {target: 1.0}),))
  c.optim.update(schedule="anneal", anneal_start="config", lr=options.probe_lr,
                 warmup_steps=0, warmup_fraction=0.0)
  c.train.update(steps=options.probe_steps,
                 init_from=os.path.abspath(f"{source.directory}/{step}"),
                 init_optimizer=False, log_every_steps=max(1, options.probe_steps // 2))
  c.ckpt.update(every_steps=options.probe_steps, keep=1, async_save=False)
  c.eval.update(batches=0, every_steps=0, downstream=(), mixture="")
  return config_lib.finalize(c)


def evaluate(path: str, target: str, data_cfg, max_batches: int, stride: int = 0) -> dict:
  """The target metric of the checkpoint at `path`: {target_bpb, target_loss}."""
  eval_fn = scoring.model_eval_fn(scoring.load_model(path))
  scored = heldout.heldout_bpb(eval_fn, data_cfg, max_batches=max_batches, stride=stride,
                               tasks=[target])[target]
  return {"target_bpb": scored["bpb"], "target_loss": scored["loss"]}


def probe_or_reuse(init: str, target: str, workdir: str, options, data_cfg, log=print) -> dict:
  """Probes the checkpoint `init` on `target` in `workdir` (reused when done).

  Args:
    init: the checkpoint probed.
    target: the target task.
    workdir: the probe's run folder.
    options: the study's options (probe_steps, probe_lr, max_batches, mixture).
    data_cfg: a `data` section whose mixture holds the target (prepared).
    log: progress printer.

  Returns:
    {target_bpb, target_loss} after the probe.
  """
  config = probe_config(init, target, options, options.mixture)
  final = study_runs.final_checkpoint(workdir, config)
  return study_runs.train_or_reuse(
      f"probe of {init}", config, workdir,
      lambda: evaluate(final, target, data_cfg, options.max_batches,
                       config.eval.heldout_stride), log=log, tag="bridging")
