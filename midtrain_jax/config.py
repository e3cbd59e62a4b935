"""The config: the sections declared next to their readers, composed.

Each key is declared once, with its default, help and allowed values
(midtrain_jax/settings.py), by the code that reads it:

  model, model.moe   model/config.py (the ModelConfig fields)
  data               data/settings.py (data.dedup from dedup/params.py)
  optim, train, ckpt train/settings.py
  eval               evals/settings.py
  mesh               parallel/settings.py
  workflow, demo, sft  workflows/settings.py
  seed               here

Configs are ml_collections ConfigDicts built by `configs/*.py` from
`base_config(size)`. They are locked, so `--config.a.b=value` on an unknown
key fails naming the key, and a value of the wrong type fails naming the key
too; `validate` checks every key's type, choices and range and the
combinations the sections declare. `python -m midtrain_jax.main --help_config`
lists every key. Code past the boundary never sees a ConfigDict:
`model_config()` turns the `model` section into a frozen `ModelConfig`.
"""
import json
from typing import Any

import ml_collections

from midtrain_jax import settings
from midtrain_jax.data import settings as data_settings
from midtrain_jax.data.settings import DECONTAM_MODES, check_dedup, check_qau, data_config
from midtrain_jax.evals import settings as eval_settings
from midtrain_jax.model.config import CUSTOM_SIZE, ModelConfig, model_config, model_section
from midtrain_jax.model.config import SECTION as MODEL
from midtrain_jax.parallel import settings as mesh_settings
from midtrain_jax.train import settings as train_settings
from midtrain_jax.train.settings import schedule_steps
from midtrain_jax.workflows import settings as workflow_settings

__all__ = ["CUSTOM_SIZE", "DECONTAM_MODES", "ROOT", "ModelConfig", "base_config",
           "check_dedup", "check_qau", "data_config", "finalize", "from_json",
           "model_config", "parse_arg", "schedule_steps", "to_json", "validate"]


def _check_across_sections(config, path: str) -> None:
  del path  # The cross-section checks name full keys.
  for check in train_settings.CHECKS:
    check(config)


ROOT = settings.Section({
    "seed": settings.Setting(0, "Seed of the model initialisation and, with "
                             "data.shuffle_seed, of the data order."),
    "workflow": workflow_settings.WORKFLOW,
    "model": MODEL,
    "data": data_settings.SECTION,
    "optim": train_settings.OPTIM,
    "train": train_settings.TRAIN,
    "ckpt": train_settings.CKPT,
    "eval": eval_settings.SECTION,
    "mesh": mesh_settings.SECTION,
    "demo": workflow_settings.DEMO,
    "sft": workflow_settings.SFT,
}, help="every setting of a run (midtrain_jax/config.py composes the sections).",
   checks=(workflow_settings.check_workflow, _check_across_sections))


def base_config(size: str) -> ml_collections.ConfigDict:
  """All config sections with their defaults for a model size (unlocked)."""
  c = settings.defaults(ROOT)
  c.model = model_section(size)
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails with a message naming the key of a bad value or the keys of an impossible
  combination."""
  settings.validate(ROOT, config, "config")


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validates and locks a config built by a `configs/*.py` file."""
  validate(config)
  config.lock()
  return config


def help_lines() -> list[str]:
  """Every config key: `--config.section.key (type; default; choices)` and its help."""
  return settings.help_lines(ROOT, "config")


def to_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (written to `workdir/config.json`)."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Reads a config written by `to_json` (a run's config.json or checkpoint).

  The stored values are laid over today's defaults, so a config written by an
  earlier version reads as a complete one: keys added since keep their
  defaults, keys since removed are dropped, and values whose form changed are
  converted (benchmark lists were comma strings; the sections' own `migrate`
  rules, e.g. `model.qk_norm` was a bool).

  Returns:
    An unlocked config with every key `base_config` declares.
  """
  stored = json.loads(text)
  fresh = base_config(stored.get("model", {}).get("size", "tiny"))
  settings.overlay(ROOT, fresh, stored)
  return fresh


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a `key=value,key=value` config argument (big_vision style).

  Args:
    arg: the string after `:` in `--config=configs/x.py:size=7b`, or None.
    **defaults: every accepted key with its default; the type of the default
      decides how the value is parsed.

  Returns:
    A ConfigDict with all keys of `defaults`.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"Unknown config argument {item!r}; expected one of "
                       f"{sorted(defaults)} as key=value.")
    kind = type(defaults[key])
    parsed[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
  return parsed
