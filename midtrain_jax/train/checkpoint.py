"""Orbax checkpoints: train state + data iterator together, resume order, souping.

A checkpoint step directory holds four items:
  params     model parameters (nested dict of arrays)
  opt_state  optimiser state
  data       the Grain iterator state, one JSON file per process
  meta       JSON: step and the run's resolved config
and its file manifest (train/manifest.py), written last: a step is complete
when its files match it. Interrupted saves and damaged steps are reported
and never loaded (train/ckpt_steps.py); a save that fails (a full disk)
raises CheckpointWriteError naming the step directory, and the previous
checkpoint stays as it was: orbax deletes old steps beyond `ckpt.keep` only
after a newer one is published, manifest included.

Resume order (`restore_or_init`):
  1. the workdir holds a complete checkpoint -> resume the newest exactly
     (params, optimiser, data iterator, step);
  2. else `train.init_from` is set   -> load the base run's params (and its
     optimiser state if `train.init_optimizer`), start at step 0 with a fresh
     data iterator: this is how an anneal branches off a pretraining run;
  3. else                            -> initialise from scratch.

`soup()` averages the params of several checkpoints (same architecture) into
one; command line: `python -m midtrain_jax.soup --inputs=A,B,C --out=DIR`.
"""
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.model import layer_stack
from midtrain_jax.train import ckpt_steps, manifest, optim

CKPT_SUBDIR = "checkpoints"


def _absolute(path: str) -> epath.Path:
  """Local paths made absolute (orbax needs that); gs:// and other URLs kept."""
  return epath.Path(path if "://" in path else os.path.abspath(path))


class CheckpointMismatchError(ValueError):
  """A checkpoint's parameters do not fit the model being restored."""


def _data_args(iterator, restore: bool):
  args = grain.checkpoint.CheckpointRestore if restore else grain.checkpoint.CheckpointSave
  return args(iterator)


def _item_handlers():
  """Handlers declared up front, so a fresh manager can read metadata of old steps."""
  return dict(params=ocp.StandardCheckpointHandler(), opt_state=ocp.StandardCheckpointHandler(),
              meta=ocp.JsonCheckpointHandler(), data=grain.checkpoint.CheckpointHandler())


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (a full disk, a lost mount); names the path."""


class CheckpointDamagedError(ValueError):
  """A checkpoint asked for by path does not match its manifest."""


class Checkpointer:
  """Saves and restores train states (and data iterators) under `workdir/checkpoints`.

  With `ckpt_cfg` it writes (a training run): every save goes through orbax's
  asynchronous path, whose last act before publishing the step directory is
  writing the step's file manifest (train/manifest.py); `ckpt.async_save`
  False only waits for each save. Without it, it reads.
  """

  def __init__(self, workdir: str, ckpt_cfg: ml_collections.ConfigDict | None = None):
    self.directory = str(_absolute(workdir) / CKPT_SUBDIR)
    self._writes = ckpt_cfg is not None
    self._async = bool(ckpt_cfg.async_save) if self._writes else False
    self._checksums = bool(ckpt_cfg.checksums) if self._writes else False
    self._saving: int | None = None  # The step whose save is in flight.
    self._complete: tuple[int | None] | None = None  # Cached newest complete step.
    ckpt_steps.report_incomplete(self.directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=ckpt_cfg.keep if self._writes else None,
        enable_async_checkpointing=self._writes, create=self._writes,
        # Interrupted saves (reported above) go before this run's first save.
        cleanup_tmp_directories=self._writes,
        async_options=ocp.AsyncOptions(post_finalization_callback=self._write_manifest)
        if self._writes else None)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_handlers=_item_handlers())

  def _write_manifest(self) -> None:
    """Runs in orbax's save thread (process 0) once every file is written, before the
    step directory is published: a published step always carries its manifest."""
    root = epath.Path(self.directory)
    pending = root / f"{self._saving}{ocp.step.TMP_DIR_SUFFIX}"
    # Object stores publish with a commit file instead: the step is written in place.
    manifest.write(pending if pending.exists() else root / str(self._saving), self._checksums)

  def latest_step(self) -> int | None:
    """The newest complete step (files match its manifest); damaged newer ones are
    reported and, when this checkpointer writes, set aside (train/ckpt_steps.py)."""
    if self._complete is None:
      self.manager.reload()
      step = ckpt_steps.newest_complete(self.directory, self.manager.all_steps(),
                                        set_aside=self._writes)
      if self._writes:
        if jax.process_count() > 1:  # Every process sees the set-aside steps gone.
          multihost_utils.sync_global_devices("checkpoints set aside")
        self.manager.reload()
      self._complete = (step,)
    return self._complete[0]

  def all_steps(self) -> list[int]:
    """Every published step (complete or not; `latest_step` is the one to resume)."""
    return list(self.manager.all_steps())

  def _written(self, action, step: int):
    """Runs `action()`, turning a failed write into an error naming the step directory."""
    try:
      return action()
    except Exception as error:  # Orbax and tensorstore raise many kinds; all mean the same.
      previous = self._complete[0] if self._complete else None
      kept = (f"the previous checkpoint {self.directory}/{previous} is intact"
              if previous is not None else "no earlier checkpoint exists")
      raise CheckpointWriteError(
          f"Writing checkpoint {self.directory}/{step} failed ({type(error).__name__}: "
          f"{error}); {kept}. A full disk? Free space under {self.directory} and run "
          "again: it resumes from the newest complete checkpoint.") from error

  def _finish(self) -> None:
    """Waits for the save in flight; once it is complete it is the one to resume."""
    if self._saving is None:
      return
    step = self._saving
    self._written(self.manager.wait_until_finished, step)
    self._saving = None
    self._complete = (step,)

  def save(self, step: int, state, config: ml_collections.ConfigDict, data_iterator=None,
           start_lr: float | None = None):
    """Saves asynchronously (`ckpt.async_save`); the data iterator's state is captured now.

    `start_lr`: an anneal's start LR read from its base (anneal_start
    "from_checkpoint"), kept so an anneal of this anneal can recompute its LR.

    Raises:
      CheckpointWriteError naming the step directory when this save, or the
      one before it, could not be written.
    """
    meta = {"step": int(step), "config": config_lib.to_json(config)}
    if start_lr is not None:
      meta["anneal_start_lr"] = float(start_lr)
    items = dict(params=ocp.args.StandardSave(state.params),
                 opt_state=ocp.args.StandardSave(state.opt_state),
                 meta=ocp.args.JsonSave(meta))
    if data_iterator is not None:
      items["data"] = _data_args(data_iterator, restore=False)
    self.save_items(step, items)

  def save_items(self, step: int, items: dict) -> None:
    """Saves orbax `items` (name -> save args) as `step`, waiting unless saves are async."""
    self._finish()  # The manifest hook reads `_saving`: the previous save must be done.
    self._saving = int(step)
    self._written(lambda: self.manager.save(step, args=ocp.args.Composite(**items), force=True),
                  step)
    if not self._async:
      self._finish()

  def meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def config(self, step: int) -> ml_collections.ConfigDict:
    """The resolved config of the run that wrote `step`."""
    return config_lib.from_json(self.meta(step)["config"])

  def restore(self, step: int, abstract_params, abstract_opt_state=None, data_iterator=None):
    """Restores params (and optionally optimiser state and data iterator).

    Args:
      step: checkpoint step.
      abstract_params: ShapeDtypeStructs with target shardings (any mesh).
      abstract_opt_state: same for the optimiser state, or None to skip it.
      data_iterator: iterator whose state is restored in place, or None.

    Returns:
      dict with `params` and, if requested, `opt_state`.

    Raises:
      CheckpointMismatchError naming the first parameter whose shape differs.
    """
    check_compatible(self.manager.item_metadata(step)["params"], abstract_params,
                     f"{self.directory}/{step}")
    items = dict(params=ocp.args.StandardRestore(abstract_params))
    if abstract_opt_state is not None:
      items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
    data_state = None
    if data_iterator is not None:
      if self._has_own_data_state(step):
        items["data"] = _data_args(data_iterator, restore=True)
      else:
        data_state = self._redistributed_data_state(step, data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    if data_state is not None:
      data_iterator.set_state(data_state)
    return restored

  def _data_files(self, step: int) -> list[epath.Path]:
    data_dir = epath.Path(self.directory) / str(step) / "data"
    return sorted(data_dir.glob("process_*-of-*.json")) if data_dir.exists() else []

  def _has_own_data_state(self, step: int) -> bool:
    """Whether the save was made by this run's process count (or holds no data state)."""
    names = [p.name for p in self._data_files(step)]
    return not names or f"process_{jax.process_index()}-of-{jax.process_count()}.json" in names

  def _redistributed_data_state(self, step: int, data_iterator):
    """This process's iterator state rebuilt from a save by another process count.

    Every process saved the states of its loader shards, in shard order. With
    the same total number of shards (`data.loader_shards`), the shards are
    dealt out again to this run's processes and the data resumes exactly.
    Otherwise the data order restarts (logged); model and optimiser still
    resume exactly.
    """
    files = self._data_files(step)
    saved_count = int(files[0].name.split("-of-")[1].split(".")[0])
    paths = [files[0].parent / f"process_{i}-of-{saved_count}.json" for i in range(saved_count)]
    shard_states = []
    for path in paths:
      state = json.loads(path.read_text()) if path.exists() else {"shards": [None]}
      shard_states += state["shards"] if "shards" in state else [state]
    per_process = getattr(data_iterator, "local_shards", 1)
    if None in shard_states or len(shard_states) != per_process * jax.process_count():
      logging.warning(
          "Checkpoint step %d holds %d loader-shard states from %d processes; this run reads "
          "%d shards per process on %d processes, so the data order restarts (set "
          "data.loader_shards to the same value in both runs to resume it exactly).",
          step, len(shard_states), saved_count, per_process, jax.process_count())
      return None
    mine = shard_states[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]
    return mine[0] if per_process == 1 else {"shards": mine}

  def wait(self):
    """Waits until the save in flight is complete (CheckpointWriteError if it failed)."""
    self._finish()

  def close(self):
    self.manager.close()


def _flat(tree) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in leaves}


def check_compatible(stored_metadata, abstract_params, where: str) -> None:
  """Raises CheckpointMismatchError if names or shapes differ, naming the parameter."""
  stored = _flat(getattr(stored_metadata, "tree", stored_metadata))
  wanted = _flat(abstract_params)
  for name in sorted(set(stored) | set(wanted)):
    if name not in stored:
      raise CheckpointMismatchError(f"Checkpoint {where} has no parameter {name!r} "
                                    "that the model needs (different architecture?).")
    if name not in wanted:
      raise CheckpointMismatchError(f"Checkpoint {where} has parameter {name!r} "
                                    "that the model does not have (different architecture?).")
    if tuple(stored[name].shape) != tuple(wanted[name].shape):
      raise CheckpointMismatchError(
          f"Parameter {name!r}: checkpoint {where} has shape {tuple(stored[name].shape)}, "
          f"the model expects {tuple(wanted[name].shape)}.")


def is_finished(workdir: str, steps: int) -> bool:
  """Whether `workdir` holds a run whose last checkpoint is at `steps` (reused on re-run)."""
  if not (_absolute(workdir) / CKPT_SUBDIR).is_dir():
    return False
  return Checkpointer(workdir).latest_step() == steps


def resolve_base(path: str) -> tuple[Checkpointer, int]:
  """Finds the checkpoint named by `train.init_from`: a workdir or a step directory."""
  root = _absolute(path)
  step = int(root.name) if root.name.isdigit() else None
  if step is not None:
    root = root.parent
  if root.name == CKPT_SUBDIR:
    root = root.parent
  if not (root / CKPT_SUBDIR).is_dir():
    raise FileNotFoundError(f"train.init_from={path!r}: no checkpoints found "
                            f"(expected {root / CKPT_SUBDIR}/<step>).")
  ckpt = Checkpointer(str(root))
  if step is None:
    step = ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(f"{path!r}: no complete checkpoint among the saved steps "
                              f"{ckpt.all_steps()} (see the warnings above).")
    return ckpt, step
  if step not in ckpt.all_steps():
    raise FileNotFoundError(f"train.init_from={path!r}: step {step} is not among the "
                            f"saved steps {ckpt.all_steps()}.")
  if found := ckpt_steps.problems(f"{ckpt.directory}/{step}"):
    raise CheckpointDamagedError(f"Checkpoint {ckpt.directory}/{step} is damaged:\n  "
                                 + "\n  ".join(found))
  return ckpt, step


def abstract_like(tree, shardings):
  """ShapeDtypeStructs carrying the target shardings (what orbax restores onto)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def restore_or_init(ckpt: Checkpointer, config: ml_collections.ConfigDict,
                    abstract_state, state_sharding, init_fn: Callable[..., Any],
                    data_iterator=None):
  """Applies the resume order (module docstring) and says which branch it took.

  Args:
    ckpt: the run's own checkpointer.
    config: the run's config (`train.init_from`, `train.init_optimizer`).
    abstract_state: TrainState of ShapeDtypeStructs.
    state_sharding: TrainState of NamedShardings.
    init_fn: (params=None) -> sharded TrainState, freshly initialised, or
      built around the given params with a fresh optimiser state.
    data_iterator: restored in place when resuming.

  Returns:
    (state, description of where it came from).
  """
  target = abstract_like(abstract_state, state_sharding)
  ours = config_lib.model_config(config.model)
  step = ckpt.latest_step()
  if step is not None:
    restored = _restore_as_stored(ckpt, step, target, ours, True, data_iterator)
    state = abstract_state.replace(step=jnp.asarray(step, jnp.int32), params=restored["params"],
                                   opt_state=restored["opt_state"])
    return jax.device_put(state, state_sharding), f"resumed from {ckpt.directory}/{step}"
  if config.train.init_from:
    base, base_step = resolve_base(config.train.init_from)
    with_opt = config.train.init_optimizer
    restored = _restore_as_stored(base, base_step, target, ours, with_opt)
    if with_opt:
      state = abstract_state.replace(step=jnp.zeros((), jnp.int32), params=restored["params"],
                                     opt_state=optim.restart_schedule(restored["opt_state"]))
      state = jax.device_put(state, state_sharding)
    else:
      state = init_fn(restored["params"])
    what = "params + optimiser state" if with_opt else "params"
    return state, f"initialised {what} from {base.directory}/{base_step}"
  return init_fn(), "initialised from scratch"


def _restore_as_stored(ckpt: Checkpointer, step: int, target, ours, with_opt: bool,
                       data_iterator=None) -> dict:
  """Restores params (and optimiser state) into `ours`'s layer layout.

  A checkpoint in the other layout (scanned vs unscanned) is restored in its
  own layout, sharded alike, then converted (model/layer_stack.py).
  """
  stored = dataclasses.replace(ours, scan_layers=bool(ckpt.config(step).model.scan_layers))
  stored_target = layer_stack.state_to_layout(target, stored)
  restored = ckpt.restore(step, stored_target.params,
                          stored_target.opt_state if with_opt else None, data_iterator)
  return {k: layer_stack.state_to_layout(v, ours) for k, v in restored.items()}


def base_lr(init_from: str) -> float:
  """The LR the base run's schedule had at the checkpoint (anneal start LR).

  A base that was itself an anneal from a checkpoint needs its own start LR:
  recorded in its checkpoint, else (older checkpoints) recomputed from its base.
  """
  base, step = resolve_base(init_from)
  config = base.config(step)
  start_lr = None
  if config.optim.schedule == "anneal" and config.optim.anneal_start == "from_checkpoint":
    start_lr = base.meta(step).get("anneal_start_lr")
    if start_lr is None:
      start_lr = base_lr(config.train.init_from)
  return optim.lr_at_step(config, step, start_lr=start_lr)


def load_config(path: str) -> ml_collections.ConfigDict:
  """The config saved with a checkpoint (workdir or step dir)."""
  ckpt, step = resolve_base(path)
  return ckpt.config(step)


def load_params(path: str, abstract_params=None):
  """Params of a checkpoint (workdir or step dir) as host numpy arrays.

  Args:
    path: workdir or step directory.
    abstract_params: the model's params as ShapeDtypeStructs to restore onto.
      Give it whenever the params go into a model: the stored tree has string
      keys ("10" sorts before "2"), the model's has int list indices. Default:
      the stored tree, for key-by-key work such as souping.

  Returns:
    (params, config, step).
  """
  ckpt, step = resolve_base(path)
  metadata = ckpt.manager.item_metadata(step)["params"]
  config = ckpt.config(step)
  stored = config_lib.model_config(config.model)
  wanted = None
  if abstract_params is None:
    tree = getattr(metadata, "tree", metadata)
    abstract_params = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
  elif layer_stack.is_scanned(abstract_params) != stored.scan_layers:
    # The caller's model has the other layer layout: restore as stored, convert.
    wanted = dataclasses.replace(stored, scan_layers=not stored.scan_layers)
    abstract_params = layer_stack.to_layout(abstract_params, stored)
  check_compatible(metadata, abstract_params, f"{ckpt.directory}/{step}")
  params = ckpt.manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract_params)))["params"]
  params = jax.tree.map(np.asarray, params)
  if wanted is not None:
    params = layer_stack.to_layout(params, wanted)
  return params, config, step


def soup(inputs: list[str], out: str) -> str:
  """Averages the params of several checkpoints into a new checkpoint at `out`.

  Args:
    inputs: checkpoint paths (workdirs or step directories), same architecture.
    out: workdir for the soup; its checkpoint is written at step 0.

  Returns:
    The step directory written.
  """
  if len(inputs) < 2:
    raise ValueError(f"Souping needs at least two checkpoints, got {inputs}.")
  total, config, _ = load_params(inputs[0])
  total = jax.tree.map(lambda x: x.astype(np.float64), total)
  for path in inputs[1:]:
    params, _, _ = load_params(path)
    check_compatible(params, total, path)
    total = jax.tree.map(lambda a, b: a + b, total, params)
  averaged = jax.tree.map(lambda x: (x / len(inputs)).astype(np.float32), total)
  return write_params(out, averaged, config, soup_of=[str(_absolute(p)) for p in inputs])


def write_params(workdir: str, params, config: ml_collections.ConfigDict, **meta) -> str:
  """Writes `params` as the step-0 checkpoint of a new run directory (soups, imports).

  Args:
    workdir: the new run directory; must not hold a checkpoint yet.
    params: the parameter tree (host or device arrays).
    config: the run's config, saved with the checkpoint and as config.json.
    **meta: further JSON-serialisable provenance saved with it.

  Returns:
    The step directory written.
  """
  target = Checkpointer(workdir, config.ckpt)
  if target.all_steps():
    raise FileExistsError(f"{workdir!r} already holds a checkpoint; choose a new directory.")
  target.save_items(0, dict(
      params=ocp.args.StandardSave(params),
      meta=ocp.args.JsonSave({"step": 0, "config": config_lib.to_json(config), **meta})))
  target.wait()
  files.write_text(_absolute(workdir) / "config.json", config_lib.to_json(config))
  return f"{target.directory}/0"


def relayout(src: str, out: str, scan_layers: bool) -> str:
  """Writes a checkpoint's params in the scanned or unscanned layer layout (a new run dir).

  Training, evaluation and export convert between layouts by themselves; this
  writes a converted copy for other tools.
  """
  params, config, step = load_params(src)
  config.model.scan_layers = bool(scan_layers)
  params = layer_stack.to_layout(params, config_lib.model_config(config.model))
  return write_params(out, params, config, relayout_from=f"{src} (step {step})")
