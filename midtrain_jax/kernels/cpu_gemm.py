"""GEMMs on CPU: float32 through MKL (cpu_gemm.cc, an XLA FFI custom call),
bfloat16 through XLA's dot with a float32 result.

On Intel CPUs (benchmarks/README.md), MKL's sgemm runs the train step's GEMM
shapes 1.2-1.4x faster than XLA's CPU GEMMs (YNNPACK), the rate PyTorch's CPU
build gets from it. `matmul` runs op(a) @ op(b) as MKL calls on blocks of the
output's rows or columns spread over XLA's intra-op thread pool.

`bf16_matmul`: XLA's CPU dot of two bfloat16 operands runs about twice as fast
with a float32 result as with a bfloat16 one (845 vs 373 GFLOP/s on a
[4096, 768] x [768, 3072] GEMM on a Zen 5 EPYC), so the product stays float32
(PyTorch's CPU autocast keeps it too), and so do both gradients (a plain dot's
VJP would take them from a float32 cotangent, in float32 GEMMs).

Both cast their operands inside (float32 or bfloat16 activations and weights
alike), return float32, and have their own VJP: the gradients are GEMMs of
the same kind, transposes folded into the calls rather than materialised, each
returned in its operand's own dtype without a rounding on the way (a float32
weight's gradient straight from the GEMM's float32 result).
`layers.dot_2d` decides where each applies.
"""
import functools

import jax
import jax.numpy as jnp


def _mkl_gemm(a, b, transpose_a: bool, transpose_b: bool):
  m = a.shape[1] if transpose_a else a.shape[0]
  n = b.shape[0] if transpose_b else b.shape[1]
  return jax.ffi.ffi_call("midtrain_cpu_gemm", jax.ShapeDtypeStruct((m, n), jnp.float32),
                          vmap_method="sequential")(
      a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def transposed_copy(x):
  """x.T [k, m] of a 2-D x [m, k], written out row-major.

  XLA:CPU runs a dot contracting its left operand's leading axis (x.T @ y: every
  weight gradient) in float32 at 200-400 GFLOP/s, widening bfloat16 operands
  first, and it folds a plain transpose back into the dot or lays it out as a
  bitcast. A transpose through a 3-D view is neither: XLA copies it, and the dot
  keeps its fast row-major form (bf16 2-3x, float32 1.1-1.6x faster with the
  copy; benchmarks/matmul.py --weight-gradient).
  """
  m, k = x.shape
  split = next((s for s in (16, 8, 4, 2) if k % s == 0), None)
  if split is None:
    return x.T
  return x.reshape(m, k // split, split).transpose(1, 2, 0).reshape(k, m)


def _xla_gemm(a, b, transpose_a: bool, transpose_b: bool):
  if transpose_a:
    a = transposed_copy(a)
  dims = (((1,), (1 if transpose_b else 0,)), ((), ()))
  return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _with_folded_vjp(gemm, operand_dtype):
  """op(a) @ op(b) in float32 through `gemm(a, b, transpose_a, transpose_b)` on
  operands cast to `operand_dtype`; gradients too."""

  def forward(a, b, transpose_a, transpose_b, dtypes):
    del dtypes
    a, b = a.astype(operand_dtype), b.astype(operand_dtype)
    return gemm(a, b, transpose_a, transpose_b), (a, b)

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
  def product(a, b, transpose_a, transpose_b, dtypes):
    return forward(a, b, transpose_a, transpose_b, dtypes)[0]

  def backward(transpose_a, transpose_b, dtypes, residuals, g):
    a, b = residuals
    g = g.astype(operand_dtype)
    # C = op(A) op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g, each one GEMM
    # with the transposes folded in.
    da = gemm(b, g, transpose_b, True) if transpose_a else gemm(g, b, False, not transpose_b)
    db = gemm(g, a, True, transpose_a) if transpose_b else gemm(a, g, not transpose_a, False)
    return da.astype(dtypes[0]), db.astype(dtypes[1])

  product.defvjp(forward, backward)

  def call(a, b, transpose_a: bool = False, transpose_b: bool = False):
    return product(a, b, transpose_a, transpose_b, (jnp.dtype(a.dtype), jnp.dtype(b.dtype)))
  return call


matmul = _with_folded_vjp(_mkl_gemm, jnp.float32)
matmul.__doc__ = ("op(a) @ op(b) for 2-D a, b (op: transposed when asked) in float32, on MKL; "
                  "gradients in a's and b's dtypes.")
xla_matmul = _with_folded_vjp(_xla_gemm, jnp.float32)
xla_matmul.__doc__ = ("op(a) @ op(b) for 2-D a, b in float32 by XLA's dot, a transposed left "
                      "operand copied first; gradients in a's and b's dtypes.")
bf16_matmul = _with_folded_vjp(_xla_gemm, jnp.bfloat16)
bf16_matmul.__doc__ = ("op(a) @ op(b) for 2-D a, b rounded to bfloat16, accumulated and returned "
                       "by XLA in float32; gradients in a's and b's dtypes.")
