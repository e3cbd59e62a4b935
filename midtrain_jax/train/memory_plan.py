"""Memory and throughput plan for a config on a mesh of a given chip, without devices.

Command line: `python -m midtrain_jax.plan` (midtrain_jax/plan.py).

Per-device state (params, optimiser state, gradients) is exact: it comes from
the same abstract model, optimiser and sharding rules as training, laid out on
an abstract mesh of the requested shape. Activations are an estimate per remat
policy (`activation_bytes`) for the kernels `kernels/select.py` chooses for the
chip, dtype and device count, the choice the model makes when it runs there:
what every layer keeps for its backward pass, plus the larger of the loss's and
the backward's working sets; `working_bytes` adds the weights FSDP gathers.
Step time and tokens/day follow from FLOPs per token (metrics.flops_per_token,
sliding-window layers counted by their window) at the stated MFU of the chip's
peak in the config's compute dtype (train/peaks.py): the vendor's figure for
an accelerator; for `cpu`, this host's peak measured on the GEMM path the step
runs, the denominator of the training logs' MFU (fake CPU devices share it).

`compile_train_step` (`--compile`) compiles the real train step for abstract
inputs and reads XLA's memory analysis, to check the estimate against; on CPU
(fake devices) it stands in for an accelerator's compiler, computing bfloat16
in float32 (`as_compiled`). How close the estimate comes: benchmarks/README.md.
"""
import dataclasses
import os
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import AbstractMesh

from midtrain_jax import config as config_lib
from midtrain_jax.kernels import select
from midtrain_jax.model import attention, layer_stack
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.parallel import sharding
from midtrain_jax.train import losses, metrics, optim, peaks
from midtrain_jax.train import step as ts

# Every chip of the peak table, plus "cpu": this host (measured peak, its memory).
CHIPS = (*peaks.CHIPS, "cpu")
REMAT_POLICIES = ("none", "save_dots", "full")
# Headroom for XLA temporaries, fragmentation and collectives' buffers.
USABLE_HBM_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-device bytes (state exact; working memory and activations estimated) and throughput."""
  n_params: int
  mesh: dict[str, int]
  params_bytes: int
  opt_state_bytes: int
  grads_bytes: int
  working_bytes: float  # Gathered weights, gradient sums (`working_bytes`).
  activation_bytes: dict[str, float]  # Per remat policy.
  attention: str  # The attention kernel the activations are planned for.
  matmul: str  # The GEMM kernel that runs.
  flops_per_token: float
  tokens_per_step: int
  step_time_s: float
  tokens_per_day: float
  peak: peaks.Peak  # All the mesh's devices together, in the compute dtype.

  def total_bytes(self, remat: str) -> float:
    state = self.params_bytes + self.opt_state_bytes + self.grads_bytes
    return state + self.working_bytes + self.activation_bytes[remat]


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
  abstract = _abstract_train(config, mesh)
  params = _per_device_bytes(abstract.state.params, abstract.shardings.params)
  opt_state = _per_device_bytes(abstract.state.opt_state, abstract.shardings.opt_state)
  # Gradients have the params' shapes, dtypes and (after reduce-scatter) shardings.
  return metrics.param_count(abstract.state.params), params, opt_state, params


@dataclasses.dataclass(frozen=True)
class _AbstractTrain:
  """The train state as shapes and shardings, with what builds the step."""
  graphdef: object
  tx: object
  schedule: object
  state: ts.TrainState       # ShapeDtypeStructs.
  shardings: ts.TrainState   # NamedShardings.


def _abstract_train(config: ml_collections.ConfigDict, mesh) -> _AbstractTrain:
  """The model, optimiser and sharded state training would build, without allocating."""
  model_cfg = config_lib.model_config(config.model)
  # Any start LR: an anneal's base LR changes no shape.
  schedule = optim.make_schedule(config.optim, config.train.steps, start_lr=1.0)
  tx = optim.make_optimizer(config.optim, schedule)
  graphdef, abstract_params, axes = ts.abstract_model(model_cfg)
  shardings = ts.state_shardings(tx, abstract_params,
                                 ts.param_shardings(abstract_params, axes, mesh), mesh)
  state = ts.TrainState(step=jax.ShapeDtypeStruct((), np.int32), params=abstract_params,
                        opt_state=jax.eval_shape(tx.init, abstract_params))
  return _AbstractTrain(graphdef, tx, schedule, state, shardings)


@dataclasses.dataclass(frozen=True)
class LayerBytes:
  """Per-token bytes of one decoder layer's activations (see `layer_bytes`)."""
  kept: float       # Everything its backward reads, when nothing is recomputed.
  dots: float       # Its matmul outputs: what remat="save_dots" keeps.
  transient: float  # Extra while its attention's backward runs.


def layer_bytes(cfg: ModelConfig, seq_len: int, tensor: int, window: int,
                moe: bool = False) -> LayerBytes:
  """Activation bytes per token of one layer, split over `tensor` devices where XLA splits them.

  Counted as XLA keeps them (checked against compiled float32 steps): the
  hidden-size tensors (residual stream, both norms' inputs and outputs, the o
  and down projections' outputs and input rows) are not split by tensor
  parallelism; the heads, MLP units and attention weights are.

  Args:
    cfg: the model config (`attention` is the kernel that runs).
    seq_len: tokens per row.
    tensor: tensor-parallel size.
    window: the layer's window (0: full attention).

  Returns:
    The layer's LayerBytes.
  """
  b = np.dtype(cfg.compute_dtype).itemsize
  d = cfg.d_model
  q, kv = cfg.n_heads * cfg.head_dim / tensor, cfg.n_kv_heads * cfg.head_dim / tensor
  heads, mlp = cfg.n_heads / tensor, cfg.mlp_dim / tensor
  hidden = 8 * d
  # q, k, v; q and k after the norm and after RoPE; the attention output.
  projections = (q + 2 * kv) + 2 * (q + kv) + q
  # A MoE layer runs top_k experts per token: their SwiGLU units, plus the
  # token's top_k dispatched copies and expert outputs, and the float32 router
  # logits and probabilities. (As the TPU / GPU grouped matmuls keep them; the
  # CPU path also keeps one weight copy per row block: model/moe.py.)
  copies = cfg.moe_top_k if moe else 0
  if moe:
    mlp = cfg.moe_top_k * cfg.expert_mlp_dim / tensor
  # gate, up, the SiLU's sigmoid and output, their product, the down projection's input.
  swiglu = 6 * mlp + 2 * copies * d
  kept = b * (hidden + projections + swiglu) + (8 * cfg.moe_experts if moe else 0)
  transient = 0.0
  block = attention.causal_query_block(window, seq_len, cfg.attention)
  if block:
    # Query blocks rebuilt in the backward pass: kept are their inputs (the
    # query block, and the key and value prefix it sees: (n + 1) / 2 blocks on
    # average) and their boolean masks; one block's float32 scores, probabilities
    # and their gradients live while it is rebuilt.
    blocks = seq_len // block
    kept += b * (q + kv * (blocks + 1)) + (seq_len + block) / 2
    transient = 4 * 4 * heads * block
  elif cfg.attention in ("xla", "reference"):
    local = attention.uses_local_blocks(window, seq_len, cfg.attention)
    # Block-local windows attend to 2 * window keys, the rest to the whole row.
    keys = 2 * window if local else seq_len
    # Per head and key: the float32 scores' exponentials and the softmax output,
    # the xla kernel's probabilities in the compute dtype (the softmax output
    # itself in float32) and the mask, broadcast to every head.
    probs = 8 + (b if cfg.attention == "xla" and b != 4 else 0) + 1
    kept += heads * keys * probs
    if local:
      kept += b * (q + 4 * kv)  # Query blocks; keys and values with the previous block.
    # The gradients of the probabilities and of the scores, float32.
    transient = 2 * 4 * heads * keys
  else:
    kept += 4 * heads  # Fused kernels keep one float32 statistic per row and head.
  # q, k, v, gate, up; o and down outputs (top_k of them in a MoE layer).
  dots = b * ((q + 2 * kv) + 2 * mlp + (1 + max(copies, 1)) * d)
  return LayerBytes(kept, dots, transient)


def remat_units(cfg: ModelConfig) -> tuple[tuple[int, ...], ...]:
  """Layer indices rematerialised together: a scanned group of `len(window_pattern)`
  layers (model/layer_stack.py) or one unscanned layer."""
  n_scanned = layer_stack.groups(cfg).n_scanned if cfg.scan_layers else 0
  period = len(cfg.window_pattern)
  units = [tuple(range(i, i + period)) for i in range(0, n_scanned, period)]
  return tuple(units + [(i,) for i in range(n_scanned, cfg.n_layers)])


def loss_bytes(cfg: ModelConfig, seq_len: int, rows_per_device: float, tensor: int) -> float:
  """Bytes of the fused output layer + loss (`train/losses.py`) per device: one
  chunk's float32 logits, exponentials and their gradient, plus the input
  gradient it hands to the backward pass (one hidden vector per token)."""
  chunk = losses.chunk_len(max(1, int(rows_per_device)), seq_len, cfg.padded_vocab_size)
  chunk_bytes = 3 * 4 * rows_per_device * chunk * cfg.padded_vocab_size / tensor
  return chunk_bytes + rows_per_device * seq_len * np.dtype(cfg.compute_dtype).itemsize * \
      cfg.d_model


def activation_bytes(cfg: ModelConfig, seq_len: int, rows_per_device: float,
                     tensor: int, remat: str) -> float:
  """Estimated activation memory per device at the step's peak.

  What every layer keeps for the backward pass (all of it, its matmul outputs
  or its input, by remat policy), plus the larger of the loss's working set and
  the backward's working set: for remat, the rebuilt unit (a whole scanned
  group of layers, or one layer) with one attention backward's transient.

  Args:
    cfg: the model config (`attention` is the kernel assumed to run).
    seq_len: tokens per row.
    rows_per_device: batch rows each device processes at a time.
    tensor: tensor-parallel size (splits heads, MLP units and vocabulary).
    remat: "none", "save_dots" or "full".

  Returns:
    Bytes per device.
  """
  if remat not in REMAT_POLICIES:
    raise ValueError(f"Unknown remat policy {remat!r}; choose from {REMAT_POLICIES}.")
  layers = [layer_bytes(cfg, seq_len, tensor, w, moe) for w, moe in cfg.layer_kinds()]
  tokens = rows_per_device * seq_len
  loss = loss_bytes(cfg, seq_len, rows_per_device, tensor)
  if remat == "none":
    return tokens * sum(x.kept for x in layers) + max(
        loss, tokens * max(x.transient for x in layers))

  def rebuilt(unit):
    lost = sum(layers[i].kept - (layers[i].dots if remat == "save_dots" else 0) for i in unit)
    return lost + max(layers[i].transient for i in unit)
  # save_dots keeps every matmul output; full keeps each layer's input only.
  kept = (sum(x.dots for x in layers) if remat == "save_dots"
          else len(layers) * np.dtype(cfg.compute_dtype).itemsize * cfg.d_model)
  return tokens * kept + max(loss, tokens * max(rebuilt(u) for u in remat_units(cfg)))


def working_bytes(cfg: ModelConfig, mesh_sizes: dict[str, int], grads_bytes: int,
                  microbatches: int) -> float:
  """Other temporaries of a step per device, besides activations and gradients.

  With fsdp > 1: the embedding, the output head and about two layers' weights
  gathered whole (a layer's weights for its matmuls, and its gradient before the
  reduce-scatter). With microbatches > 1: the float32 gradient sums.
  """
  tensor, b = mesh_sizes["tensor"], np.dtype(cfg.param_dtype).itemsize
  total = 0.0
  if mesh_sizes["fsdp"] > 1:
    q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    # MoE weights are split by expert over fsdp and gathered whole for the grouped matmuls.
    mlp = max(cfg.mlp_dim, cfg.moe_experts * cfg.expert_mlp_dim)
    layer = cfg.d_model * (2 * q + 2 * kv + 3 * mlp)
    tables = (1 if cfg.tie_embeddings else 2) * cfg.padded_vocab_size * cfg.d_model
    total += b * (2 * layer + tables) / tensor
  if microbatches > 1:
    total += grads_bytes * 4 / b
  return total


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
  # The kernels that run on the chip: fused attention keeps no [heads, seq, keys] weights.
  kernels = kernel_choice(config_lib.model_config(config.model), chip_platform(chip),
                          n_devices)
  model_cfg = dataclasses.replace(config_lib.model_config(config.model),
                                  attention=kernels.attention, matmul=kernels.matmul)
  # Activations live for one microbatch at a time (train.microbatches).
  rows = config.data.batch_size / config.train.microbatches / batch_shards
  acts = {r: activation_bytes(model_cfg, config.data.seq_len, rows, mesh_sizes["tensor"], r)
          for r in REMAT_POLICIES}
  fpt = metrics.flops_per_token(model_cfg, n_params, config.data.seq_len)
  tokens_per_step = config.data.batch_size * config.data.seq_len
  peak = chip_peak(chip, config.model.compute_dtype, kernels.matmul, n_devices)
  step_time = fpt * tokens_per_step / (peak.flops * mfu)
  working = working_bytes(model_cfg, mesh_sizes, grads, config.train.microbatches)
  return Plan(n_params=n_params, mesh=dict(mesh_sizes), params_bytes=params,
              opt_state_bytes=opt_state, grads_bytes=grads, working_bytes=working,
              activation_bytes=acts, attention=model_cfg.attention, matmul=model_cfg.matmul,
              flops_per_token=fpt, tokens_per_step=tokens_per_step, step_time_s=step_time,
              tokens_per_day=tokens_per_step / step_time * 86400, peak=peak)


def kernel_choice(cfg: ModelConfig, platform: str, n_devices: int) -> select.Choice:
  """The kernels `cfg` runs with on `n_devices` devices of `platform`: the model's choice."""
  return select.choose(cfg.attention, cfg.matmul, platform=platform, device_count=n_devices,
                       dtype=cfg.compute_dtype)


def chip_platform(chip: str) -> str:
  """The JAX platform of `chip`: "tpu" (v4, v5e, v5p, v6e), "gpu" or "cpu"."""
  if chip == "cpu":
    return "cpu"
  return "tpu" if chip.startswith("v") else "gpu"


def chip_memory(chip: str) -> float:
  """Bytes of memory per device of `chip` ("cpu": this host's physical memory)."""
  if chip == "cpu":
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return peaks.CHIPS[chip].hbm_bytes


def chip_peak(chip: str, dtype: str, matmul: str, n_devices: int) -> peaks.Peak:
  """The peak of `n_devices` of `chip` in `dtype`: the vendor table, or for "cpu"
  this host's measured peak on the `matmul` kernel (fake devices share the host)."""
  if chip == "cpu":
    return peaks.cpu_peak(dtype, matmul)
  return peaks.chip_peak(chip, dtype, n_devices)


def _gib(n: float) -> str:
  """Bytes as GiB, or MiB below one GiB (small models would read 0.00 GiB)."""
  return f"{n / 2**30:8.2f} GiB" if n >= 2**30 else f"{n / 2**20:8.2f} MiB"


def format_plan(plan: Plan, config: ml_collections.ConfigDict, chip: str, mfu: float) -> str:
  """The plan as text, with a warning for every remat policy that does not fit."""
  hbm = chip_memory(chip)
  n_devices = int(np.prod(list(plan.mesh.values())))
  lines = [
      f"model {config.model.size}: {plan.n_params / 1e9:.3f}B params, seq_len "
      f"{config.data.seq_len}, batch {config.data.batch_size} rows "
      f"({plan.tokens_per_step:,} tokens/step)",
      f"mesh {plan.mesh} = {n_devices} x {chip} ({hbm / 1e9:.0f} GB "
      f"{'memory' if chip == 'cpu' else 'HBM'}; {plan.peak.describe()})",
      f"per-device memory (activations with the {plan.attention} attention kernel, "
      f"{plan.matmul} GEMMs):",
      f"  params       {_gib(plan.params_bytes)}  ({config.model.param_dtype})",
      f"  optimiser    {_gib(plan.opt_state_bytes)}  (AdamW mu + nu)",
      f"  gradients    {_gib(plan.grads_bytes)}",
      f"  working      {_gib(plan.working_bytes)}  (weights gathered over fsdp, gradient sums)",
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


@dataclasses.dataclass(frozen=True)
class Compiled:
  """XLA's memory analysis of the compiled train step (bytes per device) and its timings."""
  argument_bytes: int
  output_bytes: int
  alias_bytes: int  # Outputs written over donated arguments (the train state).
  temp_bytes: int
  generated_code_bytes: int
  lower_s: float
  compile_s: float
  platform: str
  attention: str  # The attention kernel that was compiled (cudnn/splash fall back on CPU).
  matmul: str  # The GEMM kernel that was compiled.

  @property
  def peak_bytes(self) -> int:
    """Arguments, outputs not written over arguments, and temporaries."""
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def compile_train_step(config: ml_collections.ConfigDict, mesh_sizes: dict[str, int],
                       devices=None) -> Compiled:
  """Lowers and compiles the real train step (`step.jit_train_step`) for abstract inputs.

  Nothing of the model's size is allocated: the state and batch are
  ShapeDtypeStructs with the training shardings, on a mesh of the first
  devices (fake CPU devices: `--xla_force_host_platform_device_count`).

  Args:
    config: a full config (model, optimiser, data.batch_size and seq_len, train).
    mesh_sizes: {"data": ..., "fsdp": ..., "tensor": ...}.
    devices: devices to lay the mesh on (default: jax.devices()).

  Returns:
    The compiled executable's memory analysis and the lowering and compile times.
  """
  devices = list(jax.devices() if devices is None else devices)
  n_devices = int(np.prod([mesh_sizes[a] for a in sharding.MESH_AXES]))
  if len(devices) < n_devices:
    raise ValueError(f"The mesh {mesh_sizes} needs {n_devices} devices but JAX has "
                     f"{len(devices)}: start JAX with --xla_force_host_platform_device_count"
                     f"={n_devices} (or jax_num_cpu_devices) on CPU.")
  mesh = sharding.make_mesh(mesh_sizes, devices[:n_devices])
  model_cfg = config_lib.model_config(config.model)
  abstract = _abstract_train(config, mesh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       abstract.state, abstract.shardings)
  rows = jax.ShapeDtypeStruct((config.data.batch_size, config.data.seq_len), np.int32,
                              sharding=sharding.batch_sharding(mesh))
  batch = {k: rows for k in ts.MODEL_INPUTS}
  step = ts.jit_train_step(abstract.graphdef, abstract.tx, abstract.schedule,
                           config.train.z_loss, mesh, abstract.shardings,
                           config.train.microbatches)
  # The model's activation constraints need the mesh set while tracing.
  with jax.set_mesh(mesh):
    start = time.perf_counter()
    lowered = step.__wrapped__.lower(state, batch)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  platform = devices[0].platform
  kernels = kernel_choice(model_cfg, platform, n_devices)
  return Compiled(argument_bytes=memory.argument_size_in_bytes,
                  output_bytes=memory.output_size_in_bytes,
                  alias_bytes=memory.alias_size_in_bytes,
                  temp_bytes=memory.temp_size_in_bytes,
                  generated_code_bytes=memory.generated_code_size_in_bytes,
                  lower_s=lower_s, compile_s=compile_s, platform=platform,
                  attention=kernels.attention, matmul=kernels.matmul)


def as_compiled(cfg: ModelConfig, compiled: Compiled) -> ModelConfig:
  """`cfg` as `compiled` runs it: the attention kernel it compiled and, on CPU,
  float32 compute (XLA:CPU computes bfloat16 in float32 and keeps float32 copies:
  a bfloat16 config's temporaries come out within 5% of its float32 twin's)."""
  dtype = "float32" if compiled.platform == "cpu" else cfg.compute_dtype
  return dataclasses.replace(cfg, attention=compiled.attention, matmul=compiled.matmul,
                             compute_dtype=dtype)


def estimate_for(compiled: Compiled, plan: Plan, config: ml_collections.ConfigDict) -> dict:
  """The plan's figures for what `compiled` holds, bytes per device.

  Returns:
    {"arguments": state and batch, "activations": the config's remat policy's
     activations for the model as compiled (`as_compiled`), "temporaries":
     those activations plus the gradients and the step's working memory}.
  """
  cfg = as_compiled(config_lib.model_config(config.model), compiled)
  batch_shards = plan.mesh["data"] * plan.mesh["fsdp"]
  rows = config.data.batch_size / config.train.microbatches / batch_shards
  acts = activation_bytes(cfg, config.data.seq_len, rows, plan.mesh["tensor"],
                          config.model.remat)
  batch = len(ts.MODEL_INPUTS) * 4 * config.data.batch_size / batch_shards * config.data.seq_len
  return {"arguments": plan.params_bytes + plan.opt_state_bytes + batch,
          "activations": acts,
          "temporaries": acts + plan.grads_bytes + plan.working_bytes}


def format_compiled(compiled: Compiled, plan: Plan, config: ml_collections.ConfigDict) -> str:
  """The compiled step's memory per device next to the plan's figures for it."""
  est = estimate_for(compiled, plan, config)
  cfg = as_compiled(config_lib.model_config(config.model), compiled)
  n_devices = int(np.prod(list(plan.mesh.values())))
  lines = [
      f"compiled train step on {n_devices} {compiled.platform} devices: lowered in "
      f"{compiled.lower_s:.1f} s, compiled in {compiled.compile_s:.1f} s",
      f"  (planned for it: attention {cfg.attention}, {cfg.matmul} GEMMs, "
      f"{cfg.compute_dtype} activations, "
      f"remat={config.model.remat})",
      "  per device           compiled       planned",
      f"  arguments       {_gib(compiled.argument_bytes)}  {_gib(est['arguments'])}"
      "  params, optimiser state, batch",
      f"  outputs         {_gib(compiled.output_bytes)}"
      f"                {_gib(compiled.alias_bytes).strip()} written over the donated state",
      f"  temporaries     {_gib(compiled.temp_bytes)}  {_gib(est['temporaries'])}"
      f"  activations {_gib(est['activations']).strip()} + gradients + working",
      f"  generated code  {_gib(compiled.generated_code_bytes)}",
      f"  peak            {_gib(compiled.peak_bytes)}  "
      f"{_gib(est['arguments'] + est['temporaries'])}",
      f"  temporaries planned / compiled: {est['temporaries'] / compiled.temp_bytes:.2f}",
  ]
  if compiled.platform == "cpu":
    lines.append("  XLA:CPU's temporaries stand in for an accelerator's: same program and "
                 "buffer assignment,\n  but float32 for bfloat16 and its own schedule "
                 "(see benchmarks/README.md).")
  return "\n".join(lines)


def decode_row_bytes(cfg: ModelConfig, prompt_len: int, cache_len: int) -> float:
  """Bytes one row of a decoding batch (`model/sampling.py`) needs at its peak.

  The KV cache: 2 (keys and values) x kv_heads x head_dim x slots x dtype
  bytes per layer, slots = `cache_len` (prompt bucket + new tokens) for a
  full-attention layer, the window for a sliding one (`init_cache`). Plus the
  prefill's activations, the largest of decoding: a layer's float32 attention
  scores and probabilities of the prompt over the cache, its hidden-size and
  MLP tensors, and the last position's float32 logits.

  Args:
    cfg: the model config.
    prompt_len: the padded prompt width.
    cache_len: cache slots per full-attention layer.
  """
  b = np.dtype(cfg.compute_dtype).itemsize
  slots = sum(cache_len if w == 0 else min(w, cache_len) for w in cfg.layer_windows())
  kv = 2 * cfg.n_kv_heads * cfg.head_dim * slots * b
  scores = 2 * 4 * cfg.n_heads * prompt_len * cache_len
  mlp = max(cfg.mlp_dim, cfg.moe_top_k * cfg.expert_mlp_dim if cfg.moe_experts else 0)
  hidden = b * prompt_len * (4 * cfg.d_model + 3 * cfg.n_heads * cfg.head_dim + 3 * mlp)
  return kv + scores + hidden + 4 * cfg.padded_vocab_size
