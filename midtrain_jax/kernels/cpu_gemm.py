"""Float32 GEMMs on CPU through MKL (cpu_gemm.cc, an XLA FFI custom call).

On the CPUs measured (benchmarks/README.md), MKL's sgemm runs the train step's
GEMM shapes 1.2-1.4x faster than XLA's CPU GEMMs (YNNPACK), the rate PyTorch's
CPU build gets from it. `matmul` runs op(a) @ op(b) as MKL calls on blocks of
the output's rows or columns spread over XLA's intra-op thread pool, with its
own VJP (both gradients are GEMMs of the same kind, transposes folded into the
calls rather than materialised). `layers.dot_2d` decides where it applies
(native.applies).
"""
import functools

import jax
import jax.numpy as jnp


def _gemm(a, b, transpose_a: bool, transpose_b: bool):
  m = a.shape[1] if transpose_a else a.shape[0]
  n = b.shape[0] if transpose_b else b.shape[1]
  return jax.ffi.ffi_call("midtrain_cpu_gemm", jax.ShapeDtypeStruct((m, n), jnp.float32),
                          vmap_method="sequential")(
      a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False):
  """op(a) @ op(b) for 2-D float32 a, b (op: transposed when asked)."""
  return _gemm(a, b, transpose_a, transpose_b)


def _matmul_fwd(a, b, transpose_a, transpose_b):
  return _gemm(a, b, transpose_a, transpose_b), (a, b)


def _matmul_bwd(transpose_a, transpose_b, residuals, g):
  a, b = residuals
  # C = op(A) op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g, each one GEMM
  # with the transposes folded in.
  da = _gemm(b, g, transpose_b, True) if transpose_a else _gemm(g, b, False, not transpose_b)
  db = _gemm(g, a, True, transpose_a) if transpose_b else _gemm(a, g, not transpose_a, False)
  return da, db


matmul.defvjp(_matmul_fwd, _matmul_bwd)
