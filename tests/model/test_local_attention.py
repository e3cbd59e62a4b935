"""Window layers compute only what their window sees: block-local attention in
training, a ring of `window` slots in the decoding cache."""
import jax
import jax.numpy as jnp
import numpy as np

from midtrain_jax.model import attention
from midtrain_jax.model.config import FULL_ATTENTION
from midtrain_jax.model.transformer import init_cache
from tests import helpers


def xla_attend(q, k, v, mask):
  return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.25, implementation="xla")


def packed_qkv(seed: int, t: int, boundaries):
  """Random q [2, t, 4, 16], k and v [2, t, 2, 16] (grouped heads), and the
  segment ids of packed rows: `boundaries[row]` lists (start, id) pairs, the
  tokens from `start` on carrying `id` (0: padding); the rest are document 1."""
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.standard_normal((2, t, heads, 16)), jnp.float32)
             for heads in (4, 2, 2))
  segments = np.ones((2, t), np.int32)
  for row, starts in enumerate(boundaries):
    for start, segment in starts:
      segments[row, start:] = segment
  return q, k, v, jnp.asarray(segments)


def assert_matches_masked_reference(attend, q, k, v, segments, window):
  """`attend(q, k, v)` equals the masked float32 reference on real (non-padding)
  tokens, outputs and gradients both."""
  slots = jnp.arange(q.shape[1])
  mask = attention.attention_mask(slots, slots, segments, segments, window)

  def reference(q, k, v):
    return attention.reference_attention(q, k, v, mask, 0.25)

  real = np.asarray(segments > 0)[..., None, None]
  np.testing.assert_allclose(np.where(real, attend(q, k, v), 0),
                             np.where(real, reference(q, k, v), 0), atol=2e-6)
  # Gradients through the real tokens' outputs agree too.
  weights = jnp.asarray(np.random.default_rng(2).standard_normal(q.shape), jnp.float32) * real
  grads = [jax.grad(lambda *a, f=f: (f(*a) * weights).sum(), argnums=(0, 1, 2))(q, k, v)
           for f in (attend, reference)]
  for a, r in zip(*grads):
    np.testing.assert_allclose(a, r, atol=2e-5)


def test_block_local_attention_equals_the_masked_reference():
  window = 16
  # Packed documents whose boundaries fall inside blocks, and trailing padding.
  q, k, v, segments = packed_qkv(0, 64, [[(21, 2), (50, 3)], [(9, 2), (60, 0)]])
  assert_matches_masked_reference(
      lambda q, k, v: attention.local_attention(q, k, v, segments, window, xla_attend),
      q, k, v, segments, window)


def test_only_xla_window_layers_that_tile_use_blocks():
  assert attention.uses_local_blocks(256, 2048, "xla")
  assert not attention.uses_local_blocks(FULL_ATTENTION, 2048, "xla")
  assert not attention.uses_local_blocks(256, 2000, "xla")  # Does not tile.
  assert not attention.uses_local_blocks(256, 256, "xla")  # Nothing to skip.
  assert not attention.uses_local_blocks(256, 2048, "reference")


def test_window_layers_cache_only_their_window():
  cfg = helpers.tiny_model()
  caches = init_cache(cfg, batch=2, max_len=1024)
  for window, cache in zip(cfg.layer_windows(), caches):
    expected = 1024 if window == FULL_ATTENTION else window
    assert cache["k"].shape[1] == expected
