"""Full-attention layers compute only the causal half, one query block at a time."""
from midtrain_jax.model import attention
from midtrain_jax.model.config import FULL_ATTENTION
from tests.model.test_local_attention import assert_matches_masked_reference, packed_qkv, xla_attend


def test_causal_blocked_attention_equals_the_masked_reference():
  block = 32
  # Packed documents whose boundaries fall inside blocks, and trailing padding.
  q, k, v, segments = packed_qkv(1, 96, [[(17, 2), (70, 3)], [(40, 2), (90, 0)]])
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
