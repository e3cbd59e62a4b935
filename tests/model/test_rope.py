"""RoPE and YaRN against values computed independently from the YaRN paper."""
import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model import rope
from midtrain_jax.model.transformer import Transformer
from tests import helpers


def _yarn_reference(dim, base, factor, beta_fast, beta_slow, original_len):
  """YaRN "NTK-by-parts" (Peng et al. 2023, Sec. 3.2 + the authors' released code), per pair.

  Pair d rotates r_d = L / (2*pi*base^(2d/|D|)) times over the original context
  L. The band edges are the (fractional) pair indices where r = beta_fast and
  r = beta_slow, rounded outwards to whole dims; gamma ramps linearly between
  them: h(theta_d) = (1 - gamma) * theta_d / s + gamma * theta_d, gamma = 1 for
  fast pairs (kept), 0 for slow pairs (interpolated).
  """
  def pair_index(rotations):  # Solve r_d = rotations for d, in units of dims.
    return dim * math.log(original_len / (rotations * 2 * math.pi)) / (2 * math.log(base))
  low = max(math.floor(pair_index(beta_fast)), 0)
  high = min(math.ceil(pair_index(beta_slow)), dim - 1)
  out = []
  for d in range(dim // 2):
    theta = base ** (-2 * d / dim)
    gamma = 1.0 - min(max((d - low) / (high - low), 0.0), 1.0)
    out.append((1 - gamma) * theta / factor + gamma * theta)
  return np.array(out)


def test_factor_one_is_plain_rope():
  plain = 1.0 / 10000 ** (np.arange(0, 64, 2) / 64)
  np.testing.assert_allclose(rope.inverse_frequencies(64, 10000.0), plain, rtol=1e-6)
  assert rope.yarn_attention_scale(1.0) == 1.0


def test_yarn_matches_paper_formula():
  dim, base, factor, original = 128, 500_000.0, 8.0, 8192
  ours = rope.inverse_frequencies(dim, base, yarn_factor=factor, beta_fast=32, beta_slow=1,
                                  original_len=original)
  expected = _yarn_reference(dim, base, factor, beta_fast=32, beta_slow=1,
                             original_len=original)
  np.testing.assert_allclose(ours, expected, rtol=1e-6)
  # The paper's limits: pairs rotating > beta_fast times over the context keep
  # their frequency, pairs rotating < beta_slow times are divided by the factor.
  plain = 1.0 / base ** (np.arange(0, dim, 2) / dim)
  rotations = original * plain / (2 * math.pi)
  np.testing.assert_allclose(ours[rotations > 32], plain[rotations > 32], rtol=1e-6)
  np.testing.assert_allclose(ours[rotations < 1], plain[rotations < 1] / factor, rtol=1e-6)
  assert math.isclose(rope.yarn_attention_scale(8.0), 0.1 * math.log(8.0) + 1.0)


def test_rope_rotation_preserves_norm_and_relative_positions():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 2, 16)), jnp.float32)
  inv = rope.inverse_frequencies(16, 10000.0)
  pos = jnp.arange(6)[None]
  rotated = rope.apply_rope(x, pos, inv)
  np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1),
                             rtol=1e-5)
  # q.k depends only on the position difference.
  q, k = x[:, :1], x[:, 1:2]
  dot = lambda a, b: float((rope.apply_rope(q, jnp.array([[a]]), inv) *
                            rope.apply_rope(k, jnp.array([[b]]), inv)).sum())
  assert math.isclose(dot(3, 1), dot(7, 5), rel_tol=1e-4)


def test_yarn_applies_to_full_layers_only():
  cfg = helpers.tiny_model(yarn_factor=4.0, yarn_original_max_len=16)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  window_layer, full_layer = model.blocks[0].attn, model.blocks[1].attn
  assert window_layer.window == 8 and full_layer.window == 0
  x = jnp.ones((1, 4, 4, cfg.head_dim))
  pos = jnp.arange(4)[None]
  plain = rope.apply_rope(x, pos, rope.inverse_frequencies(cfg.head_dim, cfg.rope_theta))

  def rotated(layer):
    return rope.rotate(x, *layer._rope_tables(pos))

  np.testing.assert_allclose(rotated(window_layer), plain, rtol=1e-6)
  assert np.abs(np.asarray(rotated(full_layer) - plain)).max() > 1e-3
  everywhere = dataclasses.replace(cfg, yarn_full_layers_only=False)
  assert np.abs(np.asarray(rotated(Transformer(everywhere, rngs=nnx.Rngs(0)).blocks[0].attn)
                           - plain)).max() > 1e-3


def test_sliding_layers_take_their_own_theta():
  # tiny_model: layer 0 slides (window 8), layer 1 attends fully.
  cfg = helpers.tiny_model(rope_theta=10_000.0, rope_theta_sliding=500_000.0)
  sliding, sliding_scale = rope.layer_frequencies(cfg, 8)
  full, full_scale = rope.layer_frequencies(cfg, 0)
  pairs = np.arange(cfg.head_dim // 2)
  np.testing.assert_allclose(sliding, 500_000.0 ** (-2 * pairs / cfg.head_dim), rtol=1e-6)
  np.testing.assert_allclose(full, 10_000.0 ** (-2 * pairs / cfg.head_dim), rtol=1e-6)
  assert sliding_scale == full_scale == 1.0
  unset = helpers.tiny_model(rope_theta=10_000.0)  # 0: every layer takes rope_theta.
  np.testing.assert_array_equal(rope.layer_frequencies(unset, 8)[0], full)


def test_linear_scaling_divides_every_layers_frequencies():
  cfg = helpers.tiny_model(rope_theta=10_000.0, rope_linear_factor=4.0)
  pairs = np.arange(cfg.head_dim // 2)
  for window in (8, 0):
    inv_freq, scale = rope.layer_frequencies(cfg, window)
    # Position p rotates as position p / 4 would unscaled.
    np.testing.assert_allclose(inv_freq, 10_000.0 ** (-2 * pairs / cfg.head_dim) / 4, rtol=1e-6)
    assert scale == 1.0
