"""Attention kernels behind `model.attention`, with a fallback where one is missing.

  xla        jax.nn.dot_product_attention's XLA path: every platform.
  cudnn      cuDNN flash attention (GPU), sliding windows included.
  splash     Pallas splash attention (TPU), causal or local masks + segment ids.
  reference  plain float32 softmax attention (the ground truth in tests).

A kernel requested on a platform that lacks it (cudnn or splash on CPU, say)
falls back to `xla` with one logged warning, so one config runs everywhere.

The fused kernels (cudnn, splash) run per shard: under a mesh set with
`jax.set_mesh` they are wrapped in `jax.shard_map` over the batch axes
(`data`, `fsdp`) and the heads axis (`tensor`), and each device calls the
kernel on its own rows and heads. Mosaic (splash) kernels cannot be
partitioned by XLA at all, and cuDNN's partitioning rules do not cover
grouped KV heads sharded unlike the queries; per-shard calls need neither.
Attention never mixes batch rows or heads, so no communication is needed.

`splash_interpret()` runs splash through the Pallas interpreter on any
backend, so its sharded path is tested on CPU.
"""
import contextlib
import functools
import math

import jax
import jax.numpy as jnp
from absl import logging
from jax.sharding import PartitionSpec as P

from midtrain_jax.model.config import FULL_ATTENTION
from midtrain_jax.parallel import sharding

# Platforms (jax.default_backend()) each fused kernel runs on.
_KERNEL_PLATFORMS = {"cudnn": ("gpu", "cuda"), "splash": ("tpu",)}

# Set by `splash_interpret()`: splash runs in the Pallas interpreter everywhere.
_splash_interpret = False


@contextlib.contextmanager
def splash_interpret():
  """Runs `splash` in Pallas interpret mode on any backend (for tests on CPU).

  Inside the context `resolve("splash")` is "splash" on every platform and the
  kernel is built with `interpret=True`. It is read when a function is traced:
  a jitted function keeps the kernel it was first traced with. Interpret mode
  is slow (seconds for a 256-token sequence); it is not meant for training.
  """
  global _splash_interpret
  previous = _splash_interpret
  _splash_interpret = True
  resolve.cache_clear()  # Cached answers were made without the switch.
  try:
    yield
  finally:
    _splash_interpret = previous
    resolve.cache_clear()


@functools.cache
def resolve(requested: str, platform: str | None = None) -> str:
  """The kernel that will run for `requested` on `platform` (default backend).

  Args:
    requested: the `model.attention` setting.
    platform: a jax backend name; None reads jax.default_backend().

  Returns:
    `requested` where it is available, else "xla" (logged once).
  """
  if requested in ("auto", "cpu_native"):
    # Until kernels choose per platform: the xla path, which on one CPU device
    # runs the native attention kernel where it applies (model/attention.py).
    return "xla"
  if requested == "splash" and _splash_interpret:
    return "splash"
  platform = platform or jax.default_backend()
  if requested not in _KERNEL_PLATFORMS or platform in _KERNEL_PLATFORMS[requested]:
    if requested == "splash" and not _splash_available():
      logging.warning("model.attention='splash': the Pallas splash kernel cannot be "
                      "imported; falling back to 'xla'.")
      return "xla"
    return requested
  logging.warning("model.attention=%r is not available on %s (needs %s); falling back to "
                  "'xla'.", requested, platform, " or ".join(_KERNEL_PLATFORMS[requested]))
  return "xla"


def _splash_available() -> bool:
  try:
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel  # noqa: F401
  except ImportError:
    return False
  return True


def _splash(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT, *, window: int, scale: float,
            interpret: bool):
  """Splash attention on one device's rows and heads (vmapped over batch rows).

  The kernel is built for the local head count and sequence length. Grouped
  KV heads need no copies: the kernel reads KV head h // (N / K) for query
  head h, the grouping `reference_attention` uses.
  """
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib
  _, t, n, _ = q_BTNH.shape
  if window == FULL_ATTENTION:
    head_mask = mask_lib.CausalMask((t, t))
  else:
    head_mask = mask_lib.LocalMask((t, t), window_size=(window - 1, 0), offset=0)
  kernel = kernel_lib.make_splash_mha(mask_lib.MultiHeadMask([head_mask] * n),
                                      head_shards=1, q_seq_shards=1, interpret=interpret)
  q_BNTH = jnp.swapaxes(q_BTNH * scale, 1, 2)  # The kernel does not scale.
  k_BKSH = jnp.swapaxes(k_BSKH, 1, 2)
  v_BKSH = jnp.swapaxes(v_BSKH, 1, 2)
  segments = kernel_lib.SegmentIds(q=segment_ids_BT, kv=segment_ids_BT)
  out_BNTH = jax.vmap(kernel)(q_BNTH, k_BKSH, v_BKSH, segment_ids=segments)
  return jnp.swapaxes(out_BNTH, 1, 2)


def _cudnn(q_BTNH, k_BSKH, v_BSKH, mask_B1TS, *, window: int, scale: float):
  """cuDNN flash attention on one device's rows and heads."""
  # cuDNN's flash kernel needs causality and the window as flags to skip blocks.
  local = None if window == FULL_ATTENTION else (window - 1, 0)
  return jax.nn.dot_product_attention(
      q_BTNH, k_BSKH, v_BSKH, mask=mask_B1TS, scale=scale, is_causal=True,
      local_window_size=local, implementation="cudnn")


def _divisible_axes(mesh, logical: str, size: int) -> tuple[str, ...]:
  """The longest prefix of `logical`'s mesh axes (LOGICAL_RULES) that splits `size`.

  Axes missing from the mesh or already manual are skipped; a dimension no
  axis divides stays whole (replicated), as `sharding.fit_spec` does for
  parameters.
  """
  entry = sharding.logical_to_spec((logical,))[0]
  names = (entry,) if isinstance(entry, str) else tuple(entry or ())
  names = [a for a in names if a in mesh.axis_names and a not in mesh.manual_axes]
  while names and size % math.prod(mesh.shape[a] for a in names):
    names.pop()
  return tuple(names)


def _per_shard(kernel_fn, q_BTNH, k_BSKH, v_BSKH, *rows):
  """Calls `kernel_fn(q, k, v, *rows)` on each device's batch rows and heads.

  Under the mesh set by `jax.set_mesh`, the call runs in `jax.shard_map`:
  batch rows split over (`data`, `fsdp`), heads over `tensor`. Query and KV
  heads are split on the same axis, so each shard's query heads keep their KV
  head (head groups are contiguous). That needs K % shards == 0; otherwise
  (K < tensor, say) each KV head is repeated just enough, to lcm(K, shards)
  heads. Dimensions no axis divides are replicated. Without a mesh (single
  device, plain calls) the kernel is called directly.

  Args:
    kernel_fn: (q_BTNH, k_BSKH, v_BSKH, *rows) -> [B, T, N, H], local shapes.
    q_BTNH, k_BSKH, v_BSKH: global queries, keys, values.
    *rows: further inputs with a leading batch axis (segment ids, masks).

  Returns:
    The attention output [B, T, N, H], batch- and head-sharded like q.
  """
  mesh = jax.sharding.get_abstract_mesh()
  free = tuple(a for a in mesh.axis_names if a not in mesh.manual_axes)
  if mesh.empty or not free:
    return kernel_fn(q_BTNH, k_BSKH, v_BSKH, *rows)
  b, _, n, _ = q_BTNH.shape
  kv_heads = k_BSKH.shape[2]
  batch = _divisible_axes(mesh, "batch", b) or None
  heads = _divisible_axes(mesh, "heads", n) or None
  shards = math.prod(mesh.shape[a] for a in heads or ())
  if kv_heads % shards:
    # K and shards both divide N, so lcm(K, shards) does too: with each KV head
    # repeated in place, query head h still meets a copy of KV head h // (N / K).
    repeats = math.lcm(kv_heads, shards) // kv_heads
    k_BSKH = jnp.repeat(k_BSKH, repeats, axis=2)
    v_BSKH = jnp.repeat(v_BSKH, repeats, axis=2)
  heads_spec = P(batch, None, heads, None)
  # check_vma=False: Pallas and cuDNN calls do not declare how their outputs
  # vary over mesh axes; every output here is split exactly as out_specs say.
  return jax.shard_map(kernel_fn, mesh=mesh, axis_names=frozenset(free),
                       in_specs=(heads_spec,) * 3 + (P(batch),) * len(rows),
                       out_specs=heads_spec, check_vma=False)(q_BTNH, k_BSKH, v_BSKH, *rows)


def attend(q_BTNH, k_BSKH, v_BSKH, mask_B1TS, segment_ids_BT, window: int, scale: float,
           implementation: str, reference_fn):
  """Causal attention within documents with the chosen kernel.

  Args:
    q_BTNH, k_BSKH, v_BSKH: queries, keys, values (K KV heads shared by N/K queries).
    mask_B1TS: boolean mask (causal, window, same document) for xla/cudnn/reference.
    segment_ids_BT: document id per token (splash builds its mask from them).
    window: sliding window, or 0 for full attention.
    scale: logit scale.
    implementation: the `model.attention` setting.
    reference_fn: the float32 reference attention (q, k, v, mask, scale).

  Returns:
    The attention output [B, T, N, H].
  """
  kernel = resolve(implementation)
  if kernel == "reference":
    return reference_fn(q_BTNH, k_BSKH, v_BSKH, mask_B1TS, scale)
  if kernel == "splash":
    splash = functools.partial(_splash, window=window, scale=scale,
                               interpret=_splash_interpret)
    return _per_shard(splash, q_BTNH, k_BSKH, v_BSKH, segment_ids_BT)
  if kernel == "xla":
    # The mask already holds causality and the window; passing them again
    # makes XLA build and apply two more masks (1.5x slower backward on CPU).
    return jax.nn.dot_product_attention(q_BTNH, k_BSKH, v_BSKH, mask=mask_B1TS, scale=scale,
                                        implementation="xla")
  cudnn = functools.partial(_cudnn, window=window, scale=scale)
  return _per_shard(cudnn, q_BTNH, k_BSKH, v_BSKH, mask_B1TS)
