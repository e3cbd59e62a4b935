"""Grouped-query attention with QK-norm, RoPE/YaRN, sliding windows and packing.

Masks combine three rules: causal, an optional sliding window (a query sees
itself and the `window - 1` tokens before it), and segment ids, so packed
documents never attend across boundaries. Positions restart per document.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.kernels import cpu_attention, select
from midtrain_jax.model import attention_kernels, rope
from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig
from midtrain_jax.model.layers import Dense, RMSNorm


def attention_mask(q_pos_T, k_pos_S, q_seg_BT, k_seg_BS, window: int):
  """Boolean mask [B, 1, T, S]: causal, windowed, same document.

  Args:
    q_pos_T, k_pos_S: absolute slot index of each query / key in the sequence.
    q_seg_BT, k_seg_BS: segment (document) ids of queries / keys.
    window: sliding-window size, or 0 for full causal attention.
  """
  delta_TS = q_pos_T[:, None] - k_pos_S[None, :]
  allowed_TS = delta_TS >= 0
  if window != FULL_ATTENTION:
    allowed_TS &= delta_TS < window
  same_doc_BTS = q_seg_BT[:, :, None] == k_seg_BS[:, None, :]
  return (allowed_TS[None] & same_doc_BTS)[:, None]


def reference_attention(q_BTNH, k_BSKH, v_BSKH, mask_B1TS, scale: float):
  """Plain softmax attention in float32: the ground truth kernels are checked against."""
  b, t, n, h = q_BTNH.shape
  k_heads = k_BSKH.shape[2]
  q_BTKGH = q_BTNH.reshape(b, t, k_heads, n // k_heads, h).astype(jnp.float32)
  logits = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_BSKH.astype(jnp.float32)) * scale
  logits = jnp.where(mask_B1TS[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bkgts,bskh->btkgh", probs, v_BSKH.astype(jnp.float32))
  return out.reshape(b, t, n, h).astype(q_BTNH.dtype)


def grouped_attention(q_BTNH, k_BSKH, v_BSKH, mask_B1TS, scale: float):
  """Masked softmax attention with each KV head shared by its group of query heads.

  What the xla kernel computes (float32 scores and softmax, probabilities in
  the inputs' dtype), written as two einsums over the groups: on CPU the
  blocked training step ran 15% faster than with jax.nn.dot_product_attention,
  which repeats the KV heads and transposes around its dots.
  """
  b, t, n, h = q_BTNH.shape
  k_heads = k_BSKH.shape[2]
  q_BTKGH = (q_BTNH * jnp.asarray(scale, q_BTNH.dtype)).reshape(b, t, k_heads, n // k_heads, h)
  logits = jnp.einsum("btkgh,bskh->bkgts", q_BTKGH, k_BSKH, preferred_element_type=jnp.float32)
  logits = jnp.where(mask_B1TS[:, :, None], logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v_BSKH.dtype)
  return jnp.einsum("bkgts,bskh->btkgh", probs, v_BSKH).reshape(b, t, n, h)


def local_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, window: int, attend_fn):
  """Sliding-window attention that computes only the blocks a window can see.

  The sequence is cut into blocks of `window` tokens. A query of block i sees
  at most `window - 1` tokens back, all in blocks i-1 and i, so each block
  attends to 2 * window keys: scores cost T x 2w instead of T x T.

  Args:
    q_BTNH, k_BTKH, v_BTKH: queries, keys, values (T a multiple of `window`).
    segment_ids_BT: document id per token.
    window: the sliding-window size.
    attend_fn: (q, k, v, mask [B', 1, T', S']) -> output, e.g. the xla kernel.

  Returns:
    The attention output [B, T, N, H].
  """
  b, t, n, h = q_BTNH.shape
  n_blocks = t // window

  def blocks(x):  # [B, T, ...] -> [B, nb, w, ...]
    return x.reshape((b, n_blocks, window) + x.shape[2:])

  def with_previous(x, fill=0):  # [B, nb, w, ...] -> [B * nb, 2w, ...]
    pad = [(0, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2)
    previous = jnp.pad(x, pad, constant_values=fill)[:, :-1]
    both = jnp.concatenate([previous, x], axis=2)
    return both.reshape((b * n_blocks, 2 * window) + x.shape[3:])

  q = blocks(q_BTNH).reshape((b * n_blocks, window, n, h))
  k, v = with_previous(blocks(k_BTKH)), with_previous(blocks(v_BTKH))
  # Before the first block: segment -1, which no token (not even padding) has.
  seg_k = with_previous(blocks(segment_ids_BT), fill=-1)
  seg_q = blocks(segment_ids_BT).reshape(b * n_blocks, window)
  mask = attention_mask(window + jnp.arange(window), jnp.arange(2 * window), seg_q, seg_k,
                        window)
  return attend_fn(q, k, v, mask).reshape(b, t, n, h)


# Query rows per block of `causal_blocked_attention`. Measured on a 2-core CPU
# (fp32, 12 heads of 64, batch 4, forward + backward): at 1024 tokens 128-row
# blocks took 0.56 s against 2.2 s for the whole score matrix (256 rows: 0.76 s,
# 64: 0.86 s); at 256 tokens 0.24 s against 0.35 s.
_QUERY_BLOCK = 128
# The blocks are unrolled in the layer's program: longer rows get larger blocks.
_MAX_QUERY_BLOCKS = 16


def causal_query_block(window: int, seq_len: int, kernel: str) -> int:
  """Query rows per block when a layer's training attention runs as
  `causal_blocked_attention`, else 0 (xla kernel, full attention or a window no
  shorter than the row, rows that tile)."""
  if kernel != "xla" or (window != FULL_ATTENTION and window < seq_len):
    return 0
  block = max(_QUERY_BLOCK, seq_len // _MAX_QUERY_BLOCKS)
  return block if seq_len % block == 0 and seq_len >= 2 * block else 0


def causal_blocked_attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, block: int, attend_fn):
  """Full causal attention, one block of queries at a time against the keys it can see.

  Queries [i*block, (i+1)*block) see only keys before (i+1)*block, so the
  blocks above the diagonal (about half the scores) are never computed, and
  each block's scores are small enough to stay in cache. Every block is
  recomputed in the backward pass (jax.checkpoint), so its probabilities are
  never stored: O(T) activation memory per row instead of O(T^2), the
  trade flash attention makes.

  Args:
    q_BTNH, k_BTKH, v_BTKH: queries, keys, values (T a multiple of `block`).
    segment_ids_BT: document id per token.
    block: query rows per block.
    attend_fn: (q, k, v, mask [B, 1, T', S']) -> output, e.g. the xla kernel.

  Returns:
    The attention output [B, T, N, H].
  """
  t = q_BTNH.shape[1]
  attend = jax.checkpoint(attend_fn)
  outputs = []
  for start in range(0, t, block):
    end = start + block
    mask = attention_mask(jnp.arange(start, end), jnp.arange(end),
                          segment_ids_BT[:, start:end], segment_ids_BT[:, :end], FULL_ATTENTION)
    outputs.append(attend(q_BTNH[:, start:end], k_BTKH[:, :end], v_BTKH[:, :end], mask))
  return jnp.concatenate(outputs, axis=1)


def uses_local_blocks(window: int, seq_len: int, kernel: str) -> bool:
  """Whether a layer's training attention runs as `local_attention` (xla kernel only:
  cuDNN and splash skip masked blocks themselves; the reference stays plain)."""
  return (kernel == "xla" and window != FULL_ATTENTION and seq_len % window == 0
          and seq_len >= 2 * window)


class Attention(nnx.Module):
  """Multi-head attention with `n_kv_heads` shared key/value heads."""

  def __init__(self, cfg: ModelConfig, window: int, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.window = window
    d, n, k, h = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    out_std = cfg.init_std / np.sqrt(2 * cfg.n_layers)
    dense = functools.partial(Dense, param_dtype=cfg.param_dtype, rngs=rngs,
                              dtype=cfg.compute_dtype, matmul=cfg.matmul)
    qkv = functools.partial(dense, std=cfg.init_std, bias=cfg.qkv_bias)
    self.q = qkv((d,), (n, h), axes=("embed", "heads", "head_dim"))
    self.k = qkv((d,), (k, h), axes=("embed", "kv_heads", "head_dim"))
    self.v = qkv((d,), (k, h), axes=("embed", "kv_heads", "head_dim"))
    self.o = dense((n, h), (d,), axes=("heads", "head_dim", "embed"), std=out_std)
    norm = functools.partial(RMSNorm, eps=cfg.norm_eps, param_dtype=cfg.param_dtype, rngs=rngs)
    if cfg.qk_norm == "head":
      self.q_norm = norm(h, axes=("head_dim",))
      self.k_norm = norm(h, axes=("head_dim",))
    elif cfg.qk_norm == "projection":
      self.q_norm = norm((n, h), axes=("heads", "head_dim"))
      self.k_norm = norm((k, h), axes=("kv_heads", "head_dim"))

  def _rope_tables(self, positions_BT):
    """RoPE's (cos, sin) tables of this layer (`rope.layer_frequencies`: its theta and
    YaRN / Llama 3 / linear scaling)."""
    return rope.rotation_tables(positions_BT, *rope.layer_frequencies(self.cfg, self.window))

  def __call__(self, x_BTD, positions_BT, segment_ids_BT, cache=None):
    """Attends within documents.

    Args:
      x_BTD: input activations.
      positions_BT: position of each token within its document (RoPE).
      segment_ids_BT: document id of each token.
      cache: None for training; for decoding a dict with `k`, `v` [B, S, K, H],
        `segment_ids` [B, S] and `index` (slots already filled).

    Returns:
      (output [B, T, D], updated cache or None).
    """
    q = self.q(x_BTD)
    k = self.k(x_BTD)
    v = self.v(x_BTD)
    if self.cfg.qk_norm != "none":
      q, k = self.q_norm(q), self.k_norm(k)
    tables = self._rope_tables(positions_BT)
    scale = 1.0 / np.sqrt(self.cfg.head_dim)
    t = x_BTD.shape[1]

    kernel = select.here(self.cfg.attention, dtype=self.cfg.compute_dtype).attention
    if cache is None and kernel == "cpu_native":
      # One CPU device: the fused kernel rotates q and k itself and keeps no
      # score matrices in XLA. (Decoding attends to its cache in XLA.)
      out = cpu_attention.attention(q, k, v, segment_ids_BT, self.window, float(scale), tables)
      return self.o(out), None
    # XLA's attention takes its operands in the compute dtype (on CPU the
    # activations may be wider; see layers.activation_dtype).
    q, k = rope.rotate(q, *tables), rope.rotate(k, *tables)
    q, k, v = (a.astype(self.cfg.compute_dtype) for a in (q, k, v))
    xla = functools.partial(grouped_attention, scale=scale)
    if cache is None and uses_local_blocks(self.window, t, kernel):
      out = local_attention(q, k, v, segment_ids_BT, self.window, xla)
      new_cache = None
    elif cache is None and (block := causal_query_block(self.window, t, kernel)):
      out = causal_blocked_attention(q, k, v, segment_ids_BT, block, xla)
      new_cache = None
    elif cache is None:
      slots = jnp.arange(t)
      mask = attention_mask(slots, slots, segment_ids_BT, segment_ids_BT, self.window)
      out = attention_kernels.attend(q, k, v, mask, segment_ids_BT, self.window, scale,
                                     kernel, reference_attention)
      new_cache = None
    elif "slot_positions" in cache:
      out, new_cache = self._attend_ring(q, k, v, segment_ids_BT, cache, scale)
    else:
      start = cache["index"]
      new_cache = {
          "k": jax.lax.dynamic_update_slice_in_dim(
              cache["k"], k.astype(cache["k"].dtype), start, 1),
          "v": jax.lax.dynamic_update_slice_in_dim(
              cache["v"], v.astype(cache["v"].dtype), start, 1),
          "segment_ids": jax.lax.dynamic_update_slice_in_dim(
              cache["segment_ids"], segment_ids_BT, start, 1),
          "index": start + t,
      }
      # Unfilled slots carry segment id 0, which no real token has.
      mask = attention_mask(start + jnp.arange(t), jnp.arange(cache["k"].shape[1]),
                            segment_ids_BT, new_cache["segment_ids"], self.window)
      out = reference_attention(q, new_cache["k"].astype(q.dtype),
                                new_cache["v"].astype(q.dtype), mask, scale)
    return self.o(out), new_cache

  def _attend_ring(self, q, k, v, segment_ids_BT, cache, scale):
    """Decoding a window layer: the cache is a ring of `window` slots.

    Queries attend to the ring (the last `window` slots before them) and to the
    new tokens themselves; then the newest min(t, window) tokens overwrite the
    ring slots (slot index mod window). Keys older than the window are never
    kept, so a long context costs `window` slots per window layer.
    """
    t, size = q.shape[1], cache["k"].shape[1]
    start = cache["index"]
    new_slots = start + jnp.arange(t)
    keys = jnp.concatenate([cache["k"].astype(q.dtype), k.astype(q.dtype)], axis=1)
    values = jnp.concatenate([cache["v"].astype(q.dtype), v.astype(q.dtype)], axis=1)
    key_segments = jnp.concatenate([cache["segment_ids"], segment_ids_BT], axis=1)
    key_slots = jnp.concatenate([cache["slot_positions"], new_slots])
    mask = attention_mask(new_slots, key_slots, segment_ids_BT, key_segments, self.window)
    out = reference_attention(q, keys, values, mask, scale)
    kept = min(t, size)
    ring = new_slots[t - kept:] % size
    new_cache = {
        "k": cache["k"].at[:, ring].set(k[:, t - kept:].astype(cache["k"].dtype)),
        "v": cache["v"].at[:, ring].set(v[:, t - kept:].astype(cache["v"].dtype)),
        "segment_ids": cache["segment_ids"].at[:, ring].set(segment_ids_BT[:, t - kept:]),
        "slot_positions": cache["slot_positions"].at[ring].set(new_slots[t - kept:]),
        "index": start + t,
    }
    return out, new_cache
