"""Basic layers: token embedding, RMSNorm, dense projections and the SwiGLU MLP.

Every parameter carries logical axis names in its `axes` metadata; the rules in
`midtrain_jax.sharding` turn them into mesh shardings.
"""
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from midtrain_jax.kernels import cpu_gemm, native


def param(rngs: nnx.Rngs, init, shape: Sequence[int], axes: Sequence[str | None],
          dtype=jnp.float32) -> nnx.Param:
  """A parameter initialised by `init` and annotated with logical `axes`."""
  if len(shape) != len(axes):
    raise ValueError(f"shape {tuple(shape)} and axes {tuple(axes)} differ in rank")
  return nnx.Param(init(rngs.params(), tuple(shape), dtype), axes=tuple(axes))


class RMSNorm(nnx.Module):
  """RMS normalisation over the trailing `len(axes)` axes, computed in float32.

  One axis for hidden states and per-head QK-norm; two ([heads, head_dim]) for
  OLMo 2/3's QK-norm over the whole projection.
  """

  def __init__(self, shape: int | Sequence[int], *, eps: float, axes: Sequence[str | None],
               param_dtype, rngs: nnx.Rngs):
    self.eps = eps
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    self.scale = param(rngs, nnx.initializers.ones, shape, axes, param_dtype)

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    reduce = tuple(range(x.ndim - self.scale.ndim, x.ndim))
    x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=reduce, keepdims=True) + self.eps)
    return (x32 * self.scale[...].astype(jnp.float32)).astype(x.dtype)


class Dense(nnx.Module):
  """A projection contracting the trailing `len(in_shape)` axes (bias optional).

  Multi-axis kernels (e.g. [embed, heads, head_dim]) keep heads as a real axis,
  so tensor parallelism can shard it without reshapes in the model.
  """

  def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], *,
               axes: Sequence[str | None], std: float, param_dtype, rngs: nnx.Rngs,
               bias: bool = False):
    self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
    init = nnx.initializers.normal(std)
    self.kernel = param(rngs, init, self.in_shape + self.out_shape, axes, param_dtype)
    self.bias = (param(rngs, nnx.initializers.zeros, self.out_shape,
                       axes[len(self.in_shape):], param_dtype) if bias else None)

  def __call__(self, x, out_dtype=None):
    """`out_dtype`: the product's dtype (default x's), accumulated at that precision."""
    out = matmul_2d(x, self.kernel[...].astype(x.dtype), len(self.in_shape), out_dtype)
    return out if self.bias is None else out + self.bias[...].astype(out.dtype)


def matmul_2d(x, kernel, n_in: int, out_dtype=None):
  """Contracts the trailing `n_in` axes of x with the leading ones of kernel.

  Both sides are flattened to one 2-D GEMM: XLA's CPU backend runs the weight
  gradient of a dot with several contracting (batch, time) axes about 3x
  slower than the same GEMM on flattened [B*T, D] rows. `out_dtype` (e.g.
  float32 logits from bfloat16 inputs) is the dot's preferred element type,
  so the result is never rounded to the input dtype on the way.
  """
  lead, k_in, k_out = x.shape[:x.ndim - n_in], kernel.shape[:n_in], kernel.shape[n_in:]
  rows = x.reshape(-1, math.prod(k_in))
  out = dot_2d(rows, kernel.reshape(math.prod(k_in), math.prod(k_out)), out_dtype)
  return out.reshape(lead + k_out)


def dot_2d(a, b, out_dtype=None, *, transpose_a: bool = False, transpose_b: bool = False):
  """op(a) @ op(b) for 2-D a, b (op: transposed when asked), in `out_dtype`
  (None: the operands' dtype).

  On one Intel CPU device in float32 this is MKL's GEMM (kernels/cpu_gemm.py:
  1.2-1.4x XLA's CPU GEMMs on the step's shapes there); on CPU in bfloat16,
  XLA's dot with a float32 result rounded once (about 2x a bfloat16 result's
  rate); elsewhere XLA's dot.
  """
  if out_dtype in (None, jnp.float32) and native.gemm_applies(a, b):
    return cpu_gemm.matmul(a, b, transpose_a, transpose_b)
  if (out_dtype in (None, jnp.bfloat16) and a.dtype == b.dtype == jnp.bfloat16
      and jax.default_backend() == "cpu"):
    return cpu_gemm.bf16_matmul(a, b, transpose_a, transpose_b)
  dims = (((0 if transpose_a else 1,), (1 if transpose_b else 0,)), ((), ()))
  return jax.lax.dot_general(a, b, dims, preferred_element_type=out_dtype)


def output_logits(x, w_DV, vocab_size: int):
  """float32 logits [..., padded vocab] of the output layer, padding-vocab
  columns at the float32 minimum (so they take no probability).

  float32 straight out of the dot: bf16 logits would round away the small
  differences the loss and its gradient are made of. Used by the model's
  forward pass and, one chunk at a time, by the fused loss (train/losses.py).
  """
  logits = matmul_2d(x, w_DV.astype(x.dtype), 1, jnp.float32)
  if w_DV.shape[1] != vocab_size:
    valid = jnp.arange(w_DV.shape[1]) < vocab_size
    logits = jnp.where(valid, logits, jnp.finfo(jnp.float32).min)
  return logits


class Embed(nnx.Module):
  """Token embedding; its transpose is the output projection when tied."""

  def __init__(self, vocab: int, dim: int, *, std: float, param_dtype, rngs: nnx.Rngs):
    self.embedding = param(rngs, nnx.initializers.normal(std), (vocab, dim),
                           ("vocab", "embed"), param_dtype)

  def __call__(self, tokens_BT, dtype):
    return jnp.take(self.embedding[...], tokens_BT, axis=0).astype(dtype)


class SwiGLU(nnx.Module):
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

  def __init__(self, dim: int, hidden: int, *, std: float, out_std: float,
               param_dtype, rngs: nnx.Rngs):
    self.gate = Dense((dim,), (hidden,), axes=("embed", "mlp"), std=std,
                      param_dtype=param_dtype, rngs=rngs)
    self.up = Dense((dim,), (hidden,), axes=("embed", "mlp"), std=std,
                    param_dtype=param_dtype, rngs=rngs)
    self.down = Dense((hidden,), (dim,), axes=("mlp", "embed"), std=out_std,
                      param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x_BTD):
    gate, up = self.gate(x_BTD), self.up(x_BTD)
    if x_BTD.dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
      # XLA:CPU evaluates SiLU on bfloat16 far slower than on float32
      # (benchmarks/swiglu.py, [4096, 1024]: 5.2 vs 1.9 ms forward, 6.7 vs 3.9
      # backward); float32 also rounds once. Accelerators keep bf16 here: their
      # compilers widen it themselves, and float32 residuals would cost memory.
      hidden = (jax.nn.silu(gate.astype(jnp.float32)) * up.astype(jnp.float32)).astype(x_BTD.dtype)
    else:
      hidden = jax.nn.silu(gate) * up
    return self.down(hidden)
