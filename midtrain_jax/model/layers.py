"""Basic layers: token embedding, RMSNorm, dense projections and the SwiGLU MLP.

Every parameter carries logical axis names in its `axes` metadata; the rules in
`midtrain_jax.sharding` turn them into mesh shardings.
"""
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from midtrain_jax.kernels import cpu_gemm, select


def activation_dtype(compute_dtype) -> jnp.dtype:
  """The dtype of the activations between GEMMs of a model computing in `compute_dtype`.

  On the CPU backend, bfloat16 compute rounds only the operands of GEMMs (and
  of attention) to bfloat16 and keeps activations, norms and residuals in
  float32, as PyTorch's CPU autocast does: XLA:CPU has no bfloat16 arithmetic
  outside its dots, so a bfloat16 activation costs a rounding pass after every
  GEMM and a widening inside every elementwise op and reduction that reads it
  (benchmarks/README.md). Accelerators keep bfloat16 activations.
  """
  dtype = jnp.dtype(compute_dtype)
  if dtype == jnp.bfloat16 and jax.default_backend() == "cpu":
    return jnp.dtype(jnp.float32)
  return dtype


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
  so tensor parallelism can shard it without reshapes in the model. `dtype`:
  the GEMM's operand dtype (None: the input's); the result is in the input's
  dtype unless asked otherwise. `matmul`: the `model.matmul` setting (`dot_2d`).
  """

  def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], *,
               axes: Sequence[str | None], std: float, param_dtype, rngs: nnx.Rngs,
               bias: bool = False, dtype=None, matmul: str = "xla"):
    self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
    self.dtype = dtype
    self.matmul = matmul
    init = nnx.initializers.normal(std)
    self.kernel = param(rngs, init, self.in_shape + self.out_shape, axes, param_dtype)
    self.bias = (param(rngs, nnx.initializers.zeros, self.out_shape,
                       axes[len(self.in_shape):], param_dtype) if bias else None)

  def __call__(self, x, out_dtype=None):
    """`out_dtype`: the product's dtype (default x's), accumulated at that precision."""
    out = matmul_2d(x, self.kernel[...], len(self.in_shape), out_dtype, self.dtype,
                    matmul=self.matmul)
    return out if self.bias is None else out + self.bias[...].astype(out.dtype)


def matmul_2d(x, kernel, n_in: int, out_dtype=None, operand_dtype=None, *,
              matmul: str = "xla"):
  """Contracts the trailing `n_in` axes of x with the leading ones of kernel.

  Both sides are flattened to one 2-D GEMM: XLA's CPU backend runs the weight
  gradient of a dot with several contracting (batch, time) axes about 3x
  slower than the same GEMM on flattened [B*T, D] rows. Operands are cast to
  `operand_dtype` (None: x's); `out_dtype` (None: x's; e.g. float32 logits
  from bfloat16 operands) is the dot's preferred element type, so the result
  is never rounded to the operand dtype on the way. `matmul`: as in `dot_2d`.
  """
  lead, k_in, k_out = x.shape[:x.ndim - n_in], kernel.shape[:n_in], kernel.shape[n_in:]
  rows = x.reshape(-1, math.prod(k_in))
  out = dot_2d(rows, kernel.reshape(math.prod(k_in), math.prod(k_out)), out_dtype,
               operand_dtype, matmul=matmul)
  return out.reshape(lead + k_out)


def dot_2d(a, b, out_dtype=None, operand_dtype=None, *, transpose_a: bool = False,
           transpose_b: bool = False, matmul: str = "xla"):
  """op(a) @ op(b) for 2-D a, b (op: transposed when asked) on operands cast to
  `operand_dtype`, in `out_dtype` (None: a's dtype for both).

  `matmul` (the `model.matmul` setting) requests the kernel; `select.here`
  decides. `cpu_native`: MKL's float32 GEMM (kernels/cpu_gemm.py: 1.2-1.4x
  XLA's CPU GEMMs on the step's shapes on Intel CPUs). Otherwise on CPU, XLA's
  dot with a float32 result (in bfloat16 about 2x a bfloat16 result's rate),
  operands cast and transposed left operands copied inside its VJP; on
  accelerators XLA's dot.
  """
  operand_dtype = jnp.dtype(operand_dtype or a.dtype)
  out_dtype = jnp.dtype(out_dtype or a.dtype)
  if (matmul != "xla" and out_dtype == jnp.float32 and
      select.here(matmul=matmul, dtype=operand_dtype).matmul == "cpu_native"):
    return cpu_gemm.matmul(a, b, transpose_a, transpose_b)
  if jax.default_backend() == "cpu" and operand_dtype in (jnp.bfloat16, jnp.float32):
    gemm = cpu_gemm.bf16_matmul if operand_dtype == jnp.bfloat16 else cpu_gemm.xla_matmul
    return gemm(a, b, transpose_a, transpose_b).astype(out_dtype)
  dims = (((0 if transpose_a else 1,), (1 if transpose_b else 0,)), ((), ()))
  return jax.lax.dot_general(a.astype(operand_dtype), b.astype(operand_dtype), dims,
                             preferred_element_type=out_dtype)


def output_logits(x, w_DV, vocab_size: int, matmul: str = "xla"):
  """float32 logits [..., padded vocab] of the output layer (w cast to x's
  dtype; `matmul` as in `dot_2d`), padding-vocab columns at the float32
  minimum (so they take no probability).

  float32 straight out of the dot: bf16 logits would round away the small
  differences the loss and its gradient are made of. Used by the model's
  forward pass and, one chunk at a time, by the fused loss (train/losses.py).
  """
  logits = matmul_2d(x, w_DV, 1, jnp.float32, matmul=matmul)
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
  """SwiGLU feed-forward: down(silu(gate(x)) * up(x)), GEMM operands in `dtype`
  (on the `matmul` kernel: see `dot_2d`)."""

  def __init__(self, dim: int, hidden: int, *, std: float, out_std: float,
               param_dtype, rngs: nnx.Rngs, dtype=None, matmul: str = "xla"):
    dense = functools.partial(Dense, param_dtype=param_dtype, rngs=rngs, dtype=dtype,
                              matmul=matmul)
    self.gate = dense((dim,), (hidden,), axes=("embed", "mlp"), std=std)
    self.up = dense((dim,), (hidden,), axes=("embed", "mlp"), std=std)
    self.down = dense((hidden,), (dim,), axes=("mlp", "embed"), std=out_std)

  def __call__(self, x_BTD):
    return self.down(jax.nn.silu(self.gate(x_BTD)) * self.up(x_BTD))
