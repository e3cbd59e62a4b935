"""Full-attention layers compute only the causal half, one query block at a time."""
import jax.numpy as jnp
import numpy as np

from midtrain_jax.model import attention
from midtrain_jax.model.config import FULL_ATTENTION
from tests.model.test_local_attention import assert_matches_masked_reference, xla_attend


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
  assert_matches_masked_reference(
      lambda q, k, v: attention.causal_blocked_attention(q, k, v, segments, block, xla_attend),
      q, k, v, segments, FULL_ATTENTION)


def test_only_xla_layers_seeing_the_whole_row_use_query_blocks():
  assert attention.causal_query_block(FULL_ATTENTION, 1024, "xla") == 128
  assert attention.causal_query_block(4096, 1024, "xla") == 128  # The window covers the row.
  assert attention.causal_query_block(FULL_ATTENTION, 8192, "xla") == 512  # At most 16 blocks.
  assert not attention.causal_query_block(256, 1024, "xla")  # A real window: local blocks.
  assert not attention.causal_query_block(FULL_ATTENTION, 1000, "xla")  # Does not tile.
  assert not attention.causal_query_block(FULL_ATTENTION, 128, "xla")  # Nothing to skip.
  assert not attention.causal_query_block(FULL_ATTENTION, 1024, "splash")
