"""Causal attention within documents on CPU, in float32 (cpu_attention.cc, XLA FFI).

What the xla kernel's blocked and local paths compute (model/attention.py:
causal by slot, an optional sliding window, same segment id, GQA), in one
custom call per direction: scores and probabilities of one block of query rows
at a time against only the keys it can see, GEMMs through MKL, softmax in
between, nothing of size T x T stored (the backward pass recomputes the
probabilities from each query's log-sum-exp), the work split over (batch row,
KV head) on XLA's intra-op thread pool. XLA:CPU runs the same attention as
batched dots at ~40 GFLOP/s with the masks, softmax and rematerialisation as
separate ops; PyTorch's CPU build has a fused kernel of this kind. bfloat16
inputs are attended in float32 (the xla kernel also takes scores and softmax
in float32) and the result rounded back.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np


def _forward_call(q, k, v, segment_ids, cos, sin, window: int, scale: float, rotate: bool):
  b, t, n, _ = q.shape
  return jax.ffi.ffi_call(
      "midtrain_cpu_attention_fwd",
      (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct((b, n, t), jnp.float32)),
      vmap_method="sequential")(q, k, v, segment_ids.astype(jnp.int32), cos, sin,
                                window=window, scale=np.float32(scale), rotate=rotate)


def attention(q_BTNH, k_BTKH, v_BTKH, segment_ids_BT, window: int, scale: float, rope=None):
  """Softmax attention of q [B, T, N, H] over k, v [B, T, K, H] (N a multiple of
  K; float32 or bfloat16): a query sees keys at or before its slot, within
  `window` slots of it (0: no window), with its segment id. `rope`: None, or
  the (cos, sin) tables [B, T, H/2] of `model/rope.py: rotation_tables`, by
  which q and k are rotated first. Returns [B, T, N, H] in q's dtype."""
  f32 = (x.astype(jnp.float32) for x in (q_BTNH, k_BTKH, v_BTKH))
  rotate = rope is not None
  # Without rotation the tables are not read: empty placeholders.
  cos, sin = rope if rotate else (jnp.zeros((0,), jnp.float32),) * 2
  out = _attention(*f32, segment_ids_BT, cos.astype(jnp.float32), sin.astype(jnp.float32),
                   window, scale, rotate)
  return out.astype(q_BTNH.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _attention(q, k, v, segment_ids, cos, sin, window: int, scale: float, rotate: bool):
  return _forward_call(q, k, v, segment_ids, cos, sin, window, scale, rotate)[0]


def _attention_fwd(q, k, v, segment_ids, cos, sin, window, scale, rotate):
  out, lse = _forward_call(q, k, v, segment_ids, cos, sin, window, scale, rotate)
  return out, (q, k, v, segment_ids, cos, sin, out, lse)


def _attention_bwd(window, scale, rotate, residuals, g):
  q, k, v, segment_ids, cos, sin, out, lse = residuals
  dq, dk, dv = jax.ffi.ffi_call(
      "midtrain_cpu_attention_bwd",
      (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct(k.shape, jnp.float32),
       jax.ShapeDtypeStruct(v.shape, jnp.float32)),
      vmap_method="sequential")(q, k, v, segment_ids.astype(jnp.int32), cos, sin, out, lse,
                                g.astype(jnp.float32), window=window, scale=np.float32(scale),
                                rotate=rotate)
  # The tables are functions of positions (integers) and constants: no gradient.
  return dq, dk, dv, None, None, None


_attention.defvjp(_attention_fwd, _attention_bwd)
