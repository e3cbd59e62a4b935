"""GEMMs on CPU: float32 through MKL (cpu_gemm.cc, an XLA FFI custom call),
bfloat16 through XLA's dot with a float32 result.

On Intel CPUs (benchmarks/README.md), MKL's sgemm runs the train step's GEMM
shapes 1.2-1.4x faster than XLA's CPU GEMMs (YNNPACK), the rate PyTorch's CPU
build gets from it. `matmul` runs op(a) @ op(b) as MKL calls on blocks of the
output's rows or columns spread over XLA's intra-op thread pool.

`bf16_matmul`: XLA's CPU dot of two bfloat16 operands runs about twice as fast
with a float32 result as with a bfloat16 one (845 vs 373 GFLOP/s on a
[4096, 768] x [768, 3072] GEMM on a Zen 5 EPYC), so the product is taken in
float32 and rounded once to bfloat16, and so are both gradients (a plain dot's
VJP would take them from a float32 cotangent, in float32 GEMMs).

Both have their own VJP: the gradients are GEMMs of the same kind, transposes
folded into the calls rather than materialised. `layers.dot_2d` decides where
each applies.
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


def _bf16_gemm(a, b, transpose_a: bool, transpose_b: bool):
  dims = (((0 if transpose_a else 1,), (1 if transpose_b else 0,)), ((), ()))
  out = jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)
  return out.astype(jnp.bfloat16)


def _with_folded_vjp(gemm):
  """op(a) @ op(b) through `gemm(a, b, transpose_a, transpose_b)`, gradients too."""

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
  def product(a, b, transpose_a: bool = False, transpose_b: bool = False):
    return gemm(a, b, transpose_a, transpose_b)

  def forward(a, b, transpose_a, transpose_b):
    return gemm(a, b, transpose_a, transpose_b), (a, b)

  def backward(transpose_a, transpose_b, residuals, g):
    a, b = residuals
    # C = op(A) op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g, each one GEMM
    # with the transposes folded in.
    da = gemm(b, g, transpose_b, True) if transpose_a else gemm(g, b, False, not transpose_b)
    db = gemm(g, a, True, transpose_a) if transpose_b else gemm(a, g, not transpose_a, False)
    return da, db

  product.defvjp(forward, backward)
  return product


matmul = _with_folded_vjp(_mkl_gemm)
matmul.__doc__ = "op(a) @ op(b) for 2-D float32 a, b (op: transposed when asked), on MKL."
bf16_matmul = _with_folded_vjp(_bf16_gemm)
bf16_matmul.__doc__ = ("op(a) @ op(b) for 2-D bfloat16 a, b, accumulated and returned by XLA "
                       "in float32, rounded once to bfloat16.")
