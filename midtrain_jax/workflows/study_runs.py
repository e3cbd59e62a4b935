"""A study's runs: each trained once and evaluated once, reused on re-run.

A run is a normal training run in its own folder. On re-run, a folder whose
last checkpoint is the run's last step and which holds `RESULT` (the
evaluation the study made of it) is reused as it is; a folder that holds a run
of another config (other weights, steps, base, LR...: the `MATCHED` keys) is
refused with an error naming the key, so a changed study never mixes runs of
different settings into one table.
"""
import json
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import training

# The evaluation a study wrote of a finished run (beside its checkpoints).
RESULT = "study_result.json"
# What makes two runs the same run (the rest, e.g. logging, may differ).
MATCHED = ("seed", "model", "data.mixture", "data.data_dir", "data.tokenizer", "data.seq_len",
           "data.batch_size", "data.weights", "data.weight_stages", "data.shuffle_seed",
           "optim", "train.steps", "train.init_from", "train.init_optimizer")


class RunMismatchError(ValueError):
  """A study's run folder holds a run of another config."""


def _value(config: ml_collections.ConfigDict, dotted: str):
  value = config
  for part in dotted.split("."):
    value = value[part]
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  # Tuples and lists compare alike, as they are once written as JSON.
  return json.loads(json.dumps(value, sort_keys=True))


def check_matches(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Fails when `workdir` holds a run whose config differs from `config` on `MATCHED`.

  Raises:
    RunMismatchError: naming the first differing key and both values.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path, encoding="utf-8") as f:
    saved = config_lib.from_json(f.read())
  for key in MATCHED:
    had, wanted = _value(saved, key), _value(config, key)
    if had != wanted:
      raise RunMismatchError(
          f"{workdir} holds a run with {key}={had!r}, but this study asks for "
          f"{key}={wanted!r}: delete that folder or choose another --workdir.")


def read_result(workdir: str) -> dict | None:
  """The study's saved evaluation of the run in `workdir`, or None."""
  path = os.path.join(workdir, RESULT)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def train_or_reuse(name: str, config: ml_collections.ConfigDict, workdir: str, evaluate,
                   log=print, tag: str = "study", train=training.run, fits=None) -> dict:
  """Trains the run unless finished, evaluates it unless evaluated; returns its result.

  Args:
    name: the run's name in progress lines.
    config: its locked config.
    workdir: its folder.
    evaluate: () -> JSON-able dict, called once the run is trained; saved as
      `workdir/RESULT`.
    log: progress printer.
    tag: the study's name in progress lines.
    train: (config, workdir) -> None, what trains the run (resuming).
    fits: saved result -> whether it is what `evaluate` would return now
      (e.g. of the same target); one that does not is evaluated again.

  Raises:
    RunMismatchError: `workdir` holds a run of another config.
  """
  check_matches(config, workdir)
  steps = config.train.steps
  finished = checkpoint.is_finished(workdir, steps)
  saved = read_result(workdir)
  if saved is not None and fits is not None and not fits(saved):
    saved = None  # Evaluated for something else: the checkpoint is reused, not the result.
  if finished and saved is not None:
    log(f"[{tag}] {name}: finished earlier, reusing {os.path.join(workdir, RESULT)}")
    return saved
  if not finished:
    log(f"[{tag}] {name}: training {steps} steps -> {workdir}")
    train(config, workdir)
  log(f"[{tag}] {name}: evaluating")
  result = evaluate()
  files.write_json(os.path.join(workdir, RESULT), result)
  return result


def final_checkpoint(workdir: str, config: ml_collections.ConfigDict) -> str:
  """The step directory of a finished run's last checkpoint."""
  return os.path.join(os.path.abspath(workdir), checkpoint.CKPT_SUBDIR, str(config.train.steps))
