"""Full-attention layers compute only the causal half, one query block at a time."""
import jax
import jax.numpy as jnp
import numpy as np

from midtrain_jax.model import attention
from midtrain_jax.model.config import FULL_ATTENTION


def _xla(q, k, v, mask):
  return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=0.25, implementation="xla")


def test_causal_blocked_attention_equals_the_masked_reference():
  rng = np.random.default_rng(1)
  b, t, n, kh, h, block = 2, 96, 4, 2, 16, 32
  q, k, v = (jnp.asarray(rng.standard_normal((b, t, heads, h)), jnp.float32)
             for heads in (n, kh, kh))
  # Packed documents whose boundaries fall inside blocks, and trailing padding.
  segments = np.ones((b, t), np.int32)
  segments[0, 17:70], segments[0, 70:] = 2, 3
  segments[1, 40:], segments[1, 90:] = 2, 0
  segments = jnp.asarray(segments)
  slots = jnp.arange(t)
  mask = attention.attention_mask(slots, slots, segments, segments, FULL_ATTENTION)

  def blocked(q, k, v):
    return attention.causal_blocked_attention(q, k, v, segments, block, _xla)

  def reference(q, k, v):
    return attention.reference_attention(q, k, v, mask, 0.25)

  real = np.asarray(segments > 0)[..., None, None]
  np.testing.assert_allclose(np.where(real, blocked(q, k, v), 0),
                             np.where(real, reference(q, k, v), 0), atol=2e-6)
  weights = jnp.asarray(rng.standard_normal((b, t, n, h)), jnp.float32) * real
  grads = [jax.grad(lambda *a, f=f: (f(*a) * weights).sum(), argnums=(0, 1, 2))(q, k, v)
           for f in (blocked, reference)]
  for a, r in zip(*grads):
    np.testing.assert_allclose(a, r, atol=2e-5)


def test_only_xla_layers_seeing_the_whole_row_use_query_blocks():
  assert attention.causal_query_block(FULL_ATTENTION, 1024, "xla") == 128
  assert attention.causal_query_block(4096, 1024, "xla") == 128  # The window covers the row.
  assert attention.causal_query_block(FULL_ATTENTION, 8192, "xla") == 512  # At most 16 blocks.
  assert not attention.causal_query_block(256, 1024, "xla")  # A real window: local blocks.
  assert not attention.causal_query_block(FULL_ATTENTION, 1000, "xla")  # Does not tile.
  assert not attention.causal_query_block(FULL_ATTENTION, 128, "xla")  # Nothing to skip.
  assert not attention.causal_query_block(FULL_ATTENTION, 1024, "splash")
