"""Memory and throughput plan for a config on a mesh of a given chip, without devices.

Command line: `python -m midtrain_jax.plan` (midtrain_jax/plan.py).

Per-device state (params, optimiser state, gradients) is exact: it comes from
the same abstract model, optimiser and sharding rules as training, laid out on
an abstract mesh of the requested shape (tests check it against the real
sharded state). Activations are an estimate per remat policy: the tensors a
decoder layer keeps for its backward pass, times layers, plus the logits.
Step time and tokens/day follow from FLOPs per token (metrics.flops_per_token,
sliding-window layers counted by their window) at the stated MFU of the chip's
peak in the config's compute dtype (train/peaks.py: the same peak table and
MFU definition as the training logs).
"""
import dataclasses

import jax
import ml_collections
import numpy as np
from jax.sharding import AbstractMesh

from midtrain_jax import config as config_lib
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.parallel import sharding
from midtrain_jax.train import metrics, optim, peaks
from midtrain_jax.train import step as ts

# Every chip of the peak table, plus "cpu": this host (theoretical peak, its memory).
CHIPS = (*peaks.CHIPS, "cpu")
REMAT_POLICIES = ("none", "save_dots", "full")
# Headroom for XLA temporaries, fragmentation and collectives' buffers.
USABLE_HBM_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-device bytes (state exact, activations estimated) and throughput."""
  n_params: int
  mesh: dict[str, int]
  params_bytes: int
  opt_state_bytes: int
  grads_bytes: int
  activation_bytes: dict[str, float]  # Per remat policy.
  flops_per_token: float
  tokens_per_step: int
  step_time_s: float
  tokens_per_day: float

  def total_bytes(self, remat: str) -> float:
    state = self.params_bytes + self.opt_state_bytes + self.grads_bytes
    return state + self.activation_bytes[remat]


def parse_mesh(text: str) -> dict[str, int]:
  """Parses `data:1,fsdp:256,tensor:1` (every axis named once, sizes >= 1)."""
  sizes = {}
  for item in filter(None, text.split(",")):
    name, sep, size = item.partition(":")
    if not sep or name not in sharding.MESH_AXES or not size.isdigit() or int(size) < 1:
      raise ValueError(f"--mesh entry {item!r} is not AXIS:SIZE with AXIS in "
                       f"{sharding.MESH_AXES} and SIZE >= 1.")
    sizes[name] = int(size)
  missing = [a for a in sharding.MESH_AXES if a not in sizes]
  if missing:
    raise ValueError(f"--mesh={text!r} does not give a size for {missing}.")
  return sizes


def _per_device_bytes(tree, shardings) -> int:
  return int(sum(np.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
                 for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings))))


def state_bytes(config: ml_collections.ConfigDict, mesh) -> tuple[int, int, int, int]:
  """(param count, params, optimiser state, gradients) bytes per device on `mesh`.

  Args:
    config: a full config.
    mesh: a Mesh or AbstractMesh with the axes data, fsdp, tensor.

  Returns:
    The parameter count and per-device bytes of each part of the train state.
  """
  model_cfg = config_lib.model_config(config.model)
  schedule = optim.make_schedule(config.optim, config.train.steps, start_lr=1.0)
  tx = optim.make_optimizer(config.optim, schedule)
  _, abstract_params, axes = ts.abstract_model(model_cfg)
  params_sharding = ts.param_shardings(abstract_params, axes, mesh)
  state_sharding = ts.state_shardings(tx, abstract_params, params_sharding, mesh)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  params = _per_device_bytes(abstract_params, params_sharding)
  opt_state = _per_device_bytes(abstract_opt, state_sharding.opt_state)
  # Gradients have the params' shapes, dtypes and (after reduce-scatter) shardings.
  return metrics.param_count(abstract_params), params, opt_state, params


def activation_bytes(cfg: ModelConfig, seq_len: int, rows_per_device: float,
                     tensor: int, remat: str) -> float:
  """Estimated activation memory per device kept for the backward pass.

  Args:
    cfg: the model config.
    seq_len: tokens per row.
    rows_per_device: batch rows each device processes.
    tensor: tensor-parallel size (splits heads, MLP units and vocabulary).
    remat: "none", "save_dots" or "full".

  Returns:
    Bytes per device.
  """
  tokens = rows_per_device * seq_len
  b = np.dtype(cfg.compute_dtype).itemsize
  d, h = cfg.d_model, cfg.head_dim
  qkv = (cfg.n_heads + 2 * cfg.n_kv_heads) * h / tensor
  attn = cfg.n_heads * h / tensor
  mlp = cfg.mlp_dim / tensor
  # Residual, the two norms' inputs and outputs, q/k after norm+RoPE, the
  # attention output, gate/up/activated hidden, and the two projections.
  layer_all = b * (6 * d + 2 * qkv + attn + 3 * mlp + 2 * d)
  # The xla kernel materialises float32 attention weights; fused kernels
  # (cudnn, splash) keep only row statistics.
  if cfg.attention in ("xla", "reference"):
    layer_all += 4 * cfg.n_heads / tensor * seq_len
  layer_dots = b * (qkv + d + 2 * mlp + d)  # Matmul outputs only.
  layer_input = b * d
  layers = cfg.n_layers
  per_token = {"none": layers * layer_all,
               "save_dots": layers * layer_dots + layer_all,  # One layer is rebuilt at a time.
               "full": layers * layer_input + layer_all}[remat]
  logits = 2 * 4 * cfg.padded_vocab_size / tensor  # float32 logits and their gradient.
  return tokens * (per_token + logits)


def make_plan(config: ml_collections.ConfigDict, mesh_sizes: dict[str, int], chip: str,
              mfu: float) -> Plan:
  """Plans `config` on a mesh of `chip` devices (see the module docstring).

  Args:
    config: a full config (its `mesh` section is ignored in favour of `mesh_sizes`).
    mesh_sizes: {"data": ..., "fsdp": ..., "tensor": ...}.
    chip: one of CHIPS.
    mfu: model FLOPs utilisation assumed for the step time, in (0, 1].

  Returns:
    The Plan.
  """
  if chip not in CHIPS:
    raise ValueError(f"Unknown --chip={chip!r}; choose from {sorted(CHIPS)}.")
  if not 0 < mfu <= 1:
    raise ValueError(f"--mfu={mfu} must be in (0, 1].")
  shape = tuple(mesh_sizes[a] for a in sharding.MESH_AXES)
  n_devices = int(np.prod(shape))
  batch_shards = mesh_sizes["data"] * mesh_sizes["fsdp"]
  if config.data.batch_size % batch_shards:
    raise ValueError(f"config.data.batch_size={config.data.batch_size} does not split over "
                     f"the data-parallel mesh size {batch_shards}.")
  mesh = AbstractMesh(shape, sharding.MESH_AXES)
  n_params, params, opt_state, grads = state_bytes(config, mesh)
  model_cfg = config_lib.model_config(config.model)
  # Activations live for one microbatch at a time (train.microbatches).
  rows = config.data.batch_size / config.train.microbatches / batch_shards
  acts = {r: activation_bytes(model_cfg, config.data.seq_len, rows, mesh_sizes["tensor"], r)
          for r in REMAT_POLICIES}
  fpt = metrics.flops_per_token(model_cfg, n_params, config.data.seq_len)
  tokens_per_step = config.data.batch_size * config.data.seq_len
  peak = chip_spec(chip).peak_flops(config.model.compute_dtype)
  step_time = fpt * tokens_per_step / (n_devices * peak * mfu)
  return Plan(n_params=n_params, mesh=dict(mesh_sizes), params_bytes=params,
              opt_state_bytes=opt_state, grads_bytes=grads, activation_bytes=acts,
              flops_per_token=fpt, tokens_per_step=tokens_per_step, step_time_s=step_time,
              tokens_per_day=tokens_per_step / step_time * 86400)


def chip_spec(chip: str) -> peaks.Chip:
  """The peak table's entry for `chip` ("cpu": this host)."""
  return peaks.host_chip() if chip == "cpu" else peaks.CHIPS[chip]


def _gib(n: float) -> str:
  return f"{n / 2**30:8.2f} GiB"


def format_plan(plan: Plan, config: ml_collections.ConfigDict, chip: str, mfu: float) -> str:
  """The plan as text, with a warning for every remat policy that does not fit."""
  hbm = chip_spec(chip).hbm_bytes
  peak = chip_spec(chip).peak_flops(config.model.compute_dtype)
  n_devices = int(np.prod(list(plan.mesh.values())))
  lines = [
      f"model {config.model.size}: {plan.n_params / 1e9:.3f}B params, seq_len "
      f"{config.data.seq_len}, batch {config.data.batch_size} rows "
      f"({plan.tokens_per_step:,} tokens/step)",
      f"mesh {plan.mesh} = {n_devices} x {chip} ({hbm / 1e9:.0f} GB HBM, "
      f"{peak / 1e12:.0f} TFLOP/s {config.model.compute_dtype} peak)",
      "per-device memory:",
      f"  params       {_gib(plan.params_bytes)}  ({config.model.param_dtype})",
      f"  optimiser    {_gib(plan.opt_state_bytes)}  (AdamW mu + nu)",
      f"  gradients    {_gib(plan.grads_bytes)}",
  ]
  for remat in REMAT_POLICIES:
    total = plan.total_bytes(remat)
    mark = " <- config" if remat == config.model.remat else ""
    fits = "fits" if total <= USABLE_HBM_FRACTION * hbm else "DOES NOT FIT"
    lines.append(f"  activations remat={remat:<9} {_gib(plan.activation_bytes[remat])}"
                 f"  total {_gib(total)}  {fits}{mark}")
  days = config.train.steps * plan.step_time_s / 86400
  lines += [
      f"FLOPs/token  {plan.flops_per_token:.4g} (training, sliding windows by window)",
      f"at MFU {mfu:.0%}: step {plan.step_time_s:.3f} s, {plan.tokens_per_day / 1e9:.2f}B "
      f"tokens/day, {config.train.steps} steps = {days:.2f} days",
  ]
  if plan.total_bytes(config.model.remat) > USABLE_HBM_FRACTION * hbm:
    lines.append(f"WARNING: remat={config.model.remat} needs "
                 f"{plan.total_bytes(config.model.remat) / 2**30:.1f} GiB per device, more than "
                 f"{USABLE_HBM_FRACTION:.0%} of {chip}'s {hbm / 2**30:.1f} GiB: raise fsdp, "
                 "lower data.batch_size per device, or use a stronger remat policy.")
  return "\n".join(lines)
