"""Rotary position embeddings with optional YaRN, Llama 3 or linear scaling.

YaRN (Peng et al., 2023): frequencies that rotate fewer than `beta_slow` times
over the original context are interpolated by `factor`, those rotating more than
`beta_fast` times are kept, a linear ramp blends the band between; q and k are
both scaled by 0.1 * ln(factor) + 1, sharpening attention at long range.

`layer_frequencies` gives one layer's frequencies from the model's settings:
sliding-window and full-attention layers may differ in theta
(`rope_theta_sliding`) and in whether YaRN applies (`yarn_full_layers_only`),
as HF configs with RoPE parameters per layer type (OLMo 3) do.
"""
import math

import jax.numpy as jnp
import numpy as np

from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig


def _correction_dim(num_rotations: float, dim: int, theta: float, original_len: int) -> float:
  """The rotary dimension index that rotates `num_rotations` times over the context."""
  return dim * math.log(original_len / (num_rotations * 2 * math.pi)) / (2 * math.log(theta))


def inverse_frequencies(head_dim: int, theta: float, *, yarn_factor: float = 1.0,
                        beta_fast: float = 32.0, beta_slow: float = 1.0,
                        original_len: int = 8192) -> np.ndarray:
  """Per-pair inverse frequencies [head_dim // 2], YaRN-scaled when factor > 1."""
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if yarn_factor == 1.0:
    return inv_freq.astype(np.float32)
  low = max(math.floor(_correction_dim(beta_fast, head_dim, theta, original_len)), 0)
  high = min(math.ceil(_correction_dim(beta_slow, head_dim, theta, original_len)), head_dim - 1)
  if low == high:
    high += 0.001  # Avoids a zero-width ramp.
  ramp = np.clip((np.arange(head_dim // 2) - low) / (high - low), 0.0, 1.0)
  keep = 1.0 - ramp  # 1 for fast (high-frequency) pairs: extrapolate unchanged.
  return (inv_freq / yarn_factor * (1.0 - keep) + inv_freq * keep).astype(np.float32)


def llama3_scaled(inv_freq: np.ndarray, factor: float, low_freq_factor: float,
                  high_freq_factor: float, original_len: int) -> np.ndarray:
  """Llama 3.1's frequency scaling: long wavelengths divided by `factor`, short
  ones kept, a smooth blend between (HF rope_type "llama3")."""
  inv_freq = inv_freq.astype(np.float64)
  wavelen = 2 * math.pi / inv_freq
  low_freq_wavelen = original_len / low_freq_factor
  high_freq_wavelen = original_len / high_freq_factor
  scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth = (original_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def layer_frequencies(cfg: ModelConfig, window: int) -> tuple[np.ndarray, float]:
  """Inverse frequencies [head_dim // 2] and q/k scale of a layer with `window`.

  Args:
    cfg: the model; its rope_* / llama3_* / yarn_* settings.
    window: the layer's sliding window (FULL_ATTENTION: a full-attention layer).

  Returns:
    (inverse frequencies float32, the factor q and k are multiplied by).
  """
  sliding = window != FULL_ATTENTION
  theta = cfg.rope_theta_sliding if sliding and cfg.rope_theta_sliding else cfg.rope_theta
  use_yarn = cfg.yarn_factor > 1.0 and not (cfg.yarn_full_layers_only and sliding)
  factor = cfg.yarn_factor if use_yarn else 1.0
  inv_freq = inverse_frequencies(cfg.head_dim, theta, yarn_factor=factor,
                                 beta_fast=cfg.yarn_beta_fast, beta_slow=cfg.yarn_beta_slow,
                                 original_len=cfg.yarn_original_max_len)
  if cfg.llama3_factor != 1.0:
    inv_freq = llama3_scaled(inv_freq, cfg.llama3_factor, cfg.llama3_low_freq_factor,
                             cfg.llama3_high_freq_factor, cfg.llama3_original_max_len)
  if cfg.rope_linear_factor != 1.0:  # Positions divided by the factor: so are frequencies.
    inv_freq = (inv_freq / np.float32(cfg.rope_linear_factor)).astype(np.float32)
  scale = yarn_attention_scale(factor)
  if use_yarn and cfg.yarn_attention_factor:
    scale = cfg.yarn_attention_factor
  return inv_freq, scale


def yarn_attention_scale(yarn_factor: float) -> float:
  """The factor q and k are each multiplied by (1 without YaRN)."""
  return 1.0 if yarn_factor <= 1.0 else 0.1 * math.log(yarn_factor) + 1.0


def rotation_tables(positions_BT, inv_freq_K, scale: float = 1.0):
  """(cos, sin) [B, T, K] float32 of each token's angles (position * frequency),
  times the YaRN attention `scale`: what `rotate` and the CPU attention kernel
  (kernels/cpu_attention.py) rotate q and k by."""
  angles_BTK = positions_BT[..., None].astype(jnp.float32) * jnp.asarray(inv_freq_K)
  return jnp.cos(angles_BTK) * scale, jnp.sin(angles_BTK) * scale


def rotate(x_BTNH, cos_BTK, sin_BTK):
  """Rotates pairs (i, i + H/2) of each head by the angles of `rotation_tables`.

  Returns:
    The rotated array, same shape and dtype as `x_BTNH` (computed in float32).
  """
  cos, sin = cos_BTK[:, :, None, :], sin_BTK[:, :, None, :]
  x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x_BTNH.dtype)


def apply_rope(x_BTNH, positions_BT, inv_freq_K, scale: float = 1.0):
  """Rotates pairs (i, i + H/2) of each head by position * frequency.

  Args:
    x_BTNH: queries or keys.
    positions_BT: position of each token within its document.
    inv_freq_K: inverse frequencies, K = H // 2.
    scale: YaRN attention scale applied to the result.

  Returns:
    The rotated array, same shape and dtype as `x_BTNH`.
  """
  return rotate(x_BTNH, *rotation_tables(positions_BT, inv_freq_K, scale))
