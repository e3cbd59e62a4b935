"""Attention kernels behind `model.attention`, with a fallback where one is missing.

  xla        jax.nn.dot_product_attention's XLA path: every platform.
  cudnn      cuDNN flash attention (GPU), sliding windows included.
  splash     Pallas splash attention (TPU), causal or local masks + segment ids.
  reference  plain float32 softmax attention (the ground truth in tests).

A kernel requested on a platform that lacks it (cudnn or splash on CPU, say)
falls back to `xla` with one logged warning, so one config runs everywhere.
"""
import functools

import jax
import jax.numpy as jnp
from absl import logging

from midtrain_jax.model.config import FULL_ATTENTION

# Platforms (jax.default_backend()) each fused kernel runs on.
_KERNEL_PLATFORMS = {"cudnn": ("gpu", "cuda"), "splash": ("tpu",)}


@functools.cache
def resolve(requested: str, platform: str | None = None) -> str:
  """The kernel that will run for `requested` on `platform` (default backend).

  Args:
    requested: the `model.attention` setting.
    platform: a jax backend name; None reads jax.default_backend().

  Returns:
    `requested` where it is available, else "xla" (logged once).
  """
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


def _splash(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT, window: int, scale: float):
  """Splash attention per batch row; GQA by repeating KV heads into groups."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel_lib
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib
  _, t, n, _ = q_BTNH.shape
  if window == FULL_ATTENTION:
    head_mask = mask_lib.CausalMask((t, t))
  else:
    head_mask = mask_lib.LocalMask((t, t), window_size=(window - 1, 0), offset=0)
  kernel = kernel_lib.make_splash_mha(mask_lib.MultiHeadMask([head_mask] * n),
                                      head_shards=1, q_seq_shards=1)
  groups = n // k_BSKH.shape[2]
  q_BNTH = jnp.swapaxes(q_BTNH * scale, 1, 2)  # The kernel does not scale.
  k_BNSH = jnp.swapaxes(jnp.repeat(k_BSKH, groups, axis=2), 1, 2)
  v_BNSH = jnp.swapaxes(jnp.repeat(v_BSKH, groups, axis=2), 1, 2)
  segments = kernel_lib.SegmentIds(q=segment_ids_BT, kv=segment_ids_BT)
  out_BNTH = jax.vmap(kernel)(q_BNTH, k_BNSH, v_BNSH, segment_ids=segments)
  return jnp.swapaxes(out_BNTH, 1, 2)


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
    return _splash(q_BTNH, k_BSKH, v_BSKH, segment_ids_BT, window, scale)
  if kernel == "xla":
    # The mask already holds causality and the window; passing them again
    # makes XLA build and apply two more masks (1.5x slower backward on CPU).
    return jax.nn.dot_product_attention(q_BTNH, k_BSKH, v_BSKH, mask=mask_B1TS, scale=scale,
                                        implementation="xla")
  # cuDNN's flash kernel needs causality and the window as flags to skip blocks.
  local = None if window == FULL_ATTENTION else (window - 1, 0)
  return jax.nn.dot_product_attention(
      q_BTNH, k_BSKH, v_BSKH, mask=mask_B1TS, scale=scale, is_causal=True,
      local_window_size=local, implementation=kernel)
