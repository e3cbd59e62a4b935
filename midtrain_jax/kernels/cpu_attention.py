"""Causal attention within documents on CPU, float32 (cpu_attention.cc, XLA FFI).

What the xla kernel's blocked and local paths compute (model/attention.py:
causal by slot, an optional sliding window, same segment id, GQA), in one
custom call per direction: scores and probabilities of one block of query rows
at a time against only the keys it can see, GEMMs through MKL, softmax in
between, nothing of size T x T stored (the backward pass recomputes the
probabilities from each query's log-sum-exp), the work split over (batch row,
KV head) on XLA's intra-op thread pool. XLA:CPU runs the same attention as
batched dots at ~40 GFLOP/s with the masks, softmax and rematerialisation as
separate ops; PyTorch's CPU build has a fused kernel of this kind.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _forward_call(q, k, v, segment_ids, window: int, scale: float):
  b, t, n, _ = q.shape
  return jax.ffi.ffi_call(
      "midtrain_cpu_attention_fwd",
      (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct((b, n, t), jnp.float32)),
      vmap_method="sequential")(q, k, v, segment_ids.astype(jnp.int32),
                                window=window, scale=np.float32(scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, window: int, scale: float):
  """Softmax attention of float32 q [B, T, N, H] over k, v [B, T, K, H] (N a multiple
  of K): a query sees keys at or before its slot, within `window` slots of it
  (0: no window), with its segment id. Returns [B, T, N, H]."""
  return _forward_call(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, window, scale)[0]


def _attention_fwd(q, k, v, segment_ids, window, scale):
  out, lse = _forward_call(q, k, v, segment_ids, window, scale)
  return out, (q, k, v, segment_ids, out, lse)


def _attention_bwd(window, scale, residuals, g):
  q, k, v, segment_ids, out, lse = residuals
  dq, dk, dv = jax.ffi.ffi_call(
      "midtrain_cpu_attention_bwd",
      (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct(k.shape, jnp.float32),
       jax.ShapeDtypeStruct(v.shape, jnp.float32)),
      vmap_method="sequential")(q, k, v, segment_ids.astype(jnp.int32), out, lse,
                                g.astype(jnp.float32), window=window, scale=np.float32(scale))
  return dq, dk, dv, None


attention.defvjp(_attention_fwd, _attention_bwd)
