"""Config helpers: presets, `get_config(arg)` parsing, validation, frozen views.

Configs are ml_collections ConfigDicts built by `configs/*.py`. They are locked,
so `--config.a.b=value` on an unknown key fails naming the key, and a value of
the wrong type fails naming the key too. Code past the boundary never sees a
ConfigDict: `model_config()` turns the `model` section into a frozen dataclass.
"""
import dataclasses
import json
import math
from typing import Any

import ml_collections

from midtrain_jax.data.config import data_config

FULL_ATTENTION = 0  # A window size of 0 in `window_pattern` means full attention.

# Model shapes. `tiny` matches the PyTorch reference benchmark's default shape.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=8192, d_model=256, n_layers=4, n_heads=4,
                 n_kv_heads=4, mlp_dim=1024, window_pattern=(64, 64, 64, 0),
                 rope_theta=10_000.0),
    "150m": dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12,
                 n_kv_heads=12, mlp_dim=3072, window_pattern=(1024, 1024, 1024, 0),
                 rope_theta=500_000.0),
    "1b": dict(vocab_size=100278, d_model=2048, n_layers=16, n_heads=16,
               n_kv_heads=16, mlp_dim=8192, window_pattern=(4096, 4096, 4096, 0),
               rope_theta=500_000.0),
    # OLMo 3 7B.
    "7b": dict(vocab_size=100278, d_model=4096, n_layers=32, n_heads=32,
               n_kv_heads=32, mlp_dim=11008, window_pattern=(4096, 4096, 4096, 0),
               rope_theta=500_000.0),
    # OLMo 3 32B (GQA with 8 KV heads).
    "32b": dict(vocab_size=100278, d_model=5120, n_layers=64, n_heads=40,
                n_kv_heads=8, mlp_dim=27648, window_pattern=(4096, 4096, 4096, 0),
                rope_theta=500_000.0),
}


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


def model_section(size: str) -> ml_collections.ConfigDict:
  """The `model` section for a preset size, every key declared."""
  if size not in PRESETS:
    raise ValueError(f"Unknown model size {size!r}; choose from {sorted(PRESETS)}.")
  c = ml_collections.ConfigDict()
  c.size = size
  c.vocab_size = 0
  c.d_model = 0
  c.n_layers = 0
  c.n_heads = 0
  c.n_kv_heads = 0
  c.head_dim = 0  # 0: d_model // n_heads.
  c.mlp_dim = 0
  c.window_pattern = (0,)  # Window sizes repeated through depth; 0 = full.
  c.last_layer_full = True
  c.rope_theta = 0.0
  # YaRN context extension; factor 1.0 disables it.
  c.yarn_factor = 1.0
  c.yarn_beta_fast = 32.0
  c.yarn_beta_slow = 1.0
  c.yarn_original_max_len = 8192
  c.yarn_full_layers_only = True
  c.qk_norm = True
  c.norm = "reordered"  # "reordered" (OLMo 2/3: norm after sublayer) | "pre" (Llama).
  c.norm_eps = 1e-6
  c.tie_embeddings = False
  c.init_std = 0.02
  c.param_dtype = "float32"
  c.compute_dtype = "float32"  # "bfloat16" on accelerators.
  c.remat = "none"  # "none" | "full" | "save_dots".
  c.attention = "xla"  # "xla" | "cudnn" (GPU) | "splash" (TPU) | "reference".
  c.update(PRESETS[size])
  return c


def base_config(size: str) -> ml_collections.ConfigDict:
  """All config sections with their defaults for a model size (unlocked)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # What `main.py` runs: "train" (one training run) or "demo" (prepare, base,
  # two anneals, evaluation and a report; midtrain_jax/experiments/demo.py).
  c.workflow = "train"
  c.model = model_section(size)
  c.data = data_config()

  c.optim = ml_collections.ConfigDict()
  c.optim.schedule = "wsd"  # "wsd" | "cosine" | "constant" | "anneal".
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 0  # WSD decay length; 0: use decay_fraction of the run.
  c.optim.decay_fraction = 0.2
  c.optim.decay_shape = "linear"  # "linear" | "cosine" | "1-sqrt".
  c.optim.final_lr_fraction = 0.0  # Schedule ends at this fraction of optim.lr.
  # Anneal start LR: "config" uses optim.lr; "from_checkpoint" uses the LR the
  # base run's schedule had at the step of train.init_from.
  c.optim.anneal_start = "config"
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.1
  c.optim.decay_embeddings = False
  c.optim.clip_norm = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 200
  c.train.z_loss = 1e-5
  c.train.init_from = ""  # Base checkpoint (a step directory or a workdir).
  c.train.init_optimizer = True  # Also load the base run's optimiser state.
  c.train.log_every_steps = 10

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every_steps = 100
  c.ckpt.keep = 3
  c.ckpt.async_save = True

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0  # 0: evaluate only at the end.
  c.eval.batches = 4  # Held-out batches per task in training; 0: no evaluation.
  # Mixture whose held-out splits are scored; "" = data.mixture. Anneals on a
  # narrow mix set it to the full mix to see every capability.
  c.eval.mixture = ""
  # Benchmarks the run is evaluated on (comma-separated). Training checks that
  # every task of the mixture was decontaminated against them and warns, or
  # fails, per `decontam_check` ("warn" | "error" | "off").
  c.eval.benchmarks = "gsm8k,math,humaneval,mbpp,mmlu,arc_easy,arc_challenge"
  c.eval.decontam_check = "warn"

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 fills the devices left over by the other axes.
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  return c


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything the model needs; built from the `model` config section."""
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  mlp_dim: int
  window_pattern: tuple[int, ...]
  last_layer_full: bool
  rope_theta: float
  yarn_factor: float
  yarn_beta_fast: float
  yarn_beta_slow: float
  yarn_original_max_len: int
  yarn_full_layers_only: bool
  qk_norm: bool
  norm: str
  norm_eps: float
  tie_embeddings: bool
  init_std: float
  param_dtype: str
  compute_dtype: str
  remat: str
  attention: str

  @property
  def padded_vocab_size(self) -> int:
    """Embedding rows, rounded up to 128 so the vocab axis shards evenly."""
    return int(math.ceil(self.vocab_size / 128) * 128)

  def layer_windows(self) -> tuple[int, ...]:
    """Window size per layer (0 = full attention)."""
    pattern = self.window_pattern
    windows = [pattern[i % len(pattern)] for i in range(self.n_layers)]
    if self.last_layer_full:
      windows[-1] = FULL_ATTENTION
    return tuple(windows)


_CHOICES = {
    "model.norm": ("reordered", "pre"),
    "model.param_dtype": ("float32", "bfloat16"),
    "model.compute_dtype": ("float32", "bfloat16"),
    "model.remat": ("none", "full", "save_dots"),
    "model.attention": ("xla", "cudnn", "splash", "reference"),
    "optim.schedule": ("wsd", "cosine", "constant", "anneal"),
    "optim.decay_shape": ("linear", "cosine", "1-sqrt"),
    "optim.anneal_start": ("config", "from_checkpoint"),
    "eval.decontam_check": ("warn", "error", "off"),
}
_WORKFLOWS = ("train", "demo")


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails with a message naming the keys of an impossible combination."""
  for key, choices in _CHOICES.items():
    section, name = key.split(".")
    if config[section][name] not in choices:
      raise ValueError(f"config.{key}={config[section][name]!r} is not one of {choices}.")
  if config.workflow not in _WORKFLOWS:
    raise ValueError(f"config.workflow={config.workflow!r} is not one of {_WORKFLOWS}.")
  if config.workflow == "demo" and config.train.init_from:
    raise ValueError("The demo workflow trains its own base, so config.train.init_from "
                     "is not used; to anneal a given base use e.g. "
                     "--config=configs/anneal.py:size=tiny --config.train.init_from=...")
  m = config.model
  if m.n_heads % m.n_kv_heads:
    raise ValueError(f"config.model.n_heads={m.n_heads} is not divisible by "
                     f"config.model.n_kv_heads={m.n_kv_heads}.")
  if not m.head_dim and m.d_model % m.n_heads:
    raise ValueError(f"config.model.d_model={m.d_model} is not divisible by "
                     f"config.model.n_heads={m.n_heads}; set config.model.head_dim.")
  if (m.head_dim or m.d_model // m.n_heads) % 2:
    raise ValueError("RoPE needs an even head dimension (config.model.head_dim).")
  if not m.window_pattern or any(w < 0 for w in m.window_pattern):
    raise ValueError(f"config.model.window_pattern={m.window_pattern} must be a "
                     "non-empty list of window sizes >= 0 (0 = full attention).")
  if m.yarn_factor < 1.0:
    raise ValueError(f"config.model.yarn_factor={m.yarn_factor} must be >= 1.")
  positive = {"data.seq_len": config.data.seq_len, "data.batch_size": config.data.batch_size,
              "train.steps": config.train.steps, "ckpt.every_steps": config.ckpt.every_steps,
              "ckpt.keep": config.ckpt.keep, "train.log_every_steps": config.train.log_every_steps}
  for key, value in positive.items():
    if value <= 0:
      raise ValueError(f"config.{key}={value} must be positive.")
  if config.optim.anneal_start == "from_checkpoint" and not config.train.init_from:
    raise ValueError("config.optim.anneal_start='from_checkpoint' needs "
                     "config.train.init_from (the base checkpoint).")


def model_config(model: ml_collections.ConfigDict) -> ModelConfig:
  """Freezes the `model` section into a ModelConfig."""
  values = {f.name: model[f.name] for f in dataclasses.fields(ModelConfig)}
  values["window_pattern"] = tuple(int(w) for w in values["window_pattern"])
  values["head_dim"] = model.head_dim or model.d_model // model.n_heads
  return ModelConfig(**values)


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validates and locks a config built by a `configs/*.py` file."""
  validate(config)
  config.lock()
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (written to `workdir/config.json`)."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Reads a config written by `to_json` (e.g. a base run's config.json)."""
  return ml_collections.ConfigDict(json.loads(text))
