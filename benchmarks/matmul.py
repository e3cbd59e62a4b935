"""One GEMM shape of the train step in JAX and PyTorch, float32 and bfloat16.

  python -m benchmarks.matmul                    # [4096, 768] x [768, 3072]
  python -m benchmarks.matmul --m=4096 --k=256 --n=8192
  python -m benchmarks.matmul --weight-gradient   # [4096, 768]^T x [4096, 3072]

JAX in four forms: float32; bfloat16 in and out (XLA's CPU backend converts
the operands and runs a float32 GEMM); bfloat16 in with a float32 result
(`preferred_element_type`, run as a bfloat16 YNNPACK GEMM); float32 on the
native MKL GEMM the model uses on one CPU device (kernels/cpu_gemm.py).
PyTorch (when importable in this interpreter) in float32 and bfloat16.

`--weight-gradient` times a^T @ b instead (a [m, k], b [m, n]: the contraction
over the rows that every weight gradient is): XLA's dot of that form, and the
same product as the model runs it (`cpu_gemm.xla_matmul` / `bf16_matmul`:
a copied row-major first), each in float32 and bfloat16 -> float32. Each rate
is the best of `--samples` synchronised runs of `--reps` products, forms
alternating so the host's drift hits all alike.
"""
import argparse
import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step
from midtrain_jax.kernels import cpu_gemm, native
from midtrain_jax.train import cpu_limit, peaks


def _jax_forms(m: int, k: int, n: int) -> dict:
  rng = np.random.default_rng(0)
  a32, b32 = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((m, k), (k, n)))
  a16, b16 = a32.astype(jnp.bfloat16), b32.astype(jnp.bfloat16)
  plain = jax.jit(jnp.matmul)
  wide = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  forms = {"jax float32": lambda: plain(a32, b32).block_until_ready(),
           "jax bf16 -> bf16": lambda: plain(a16, b16).block_until_ready(),
           "jax bf16 -> f32": lambda: wide(a16, b16).block_until_ready()}
  if native.status()[0]:
    mkl = jax.jit(cpu_gemm.matmul)
    forms["jax float32 native"] = lambda: mkl(a32, b32).block_until_ready()
  return forms


def _jax_weight_gradient_forms(m: int, k: int, n: int) -> dict:
  rng = np.random.default_rng(0)
  a32, b32 = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((m, k), (m, n)))
  a16, b16 = a32.astype(jnp.bfloat16), b32.astype(jnp.bfloat16)
  rows = (((0,), (0,)), ((), ()))
  folded = jax.jit(lambda a, b: jax.lax.dot_general(a, b, rows,
                                                    preferred_element_type=jnp.float32))
  # The model's CPU GEMMs with a transposed left operand: copied row-major first.
  copied32 = jax.jit(lambda a, b: cpu_gemm.xla_matmul(a, b, True))
  copied16 = jax.jit(lambda a, b: cpu_gemm.bf16_matmul(a, b, True))
  return {"jax float32 a^T b": lambda: folded(a32, b32).block_until_ready(),
          "jax float32 copy": lambda: copied32(a32, b32).block_until_ready(),
          "jax bf16 a^T b": lambda: folded(a16, b16).block_until_ready(),
          "jax bf16 copy": lambda: copied16(a16, b16).block_until_ready()}


def _torch_forms(m: int, k: int, n: int, weight_gradient: bool) -> dict:
  if importlib.util.find_spec("torch") is None:
    return {}
  import torch  # Optional: only for the side-by-side rates.
  a32, b32 = torch.randn(m, k), torch.randn(m if weight_gradient else k, n)
  a16, b16 = a32.bfloat16(), b32.bfloat16()
  if weight_gradient:
    return {"torch float32 a^T b": lambda: a32.T @ b32, "torch bf16 a^T b": lambda: a16.T @ b16}
  return {"torch float32": lambda: a32 @ b32, "torch bf16": lambda: a16 @ b16}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--m", type=int, default=4096)
  p.add_argument("--k", type=int, default=768)
  p.add_argument("--n", type=int, default=3072)
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--samples", type=int, default=5)
  p.add_argument("--weight-gradient", action="store_true",
                 help="time a^T @ b (a [m, k], b [m, n]) instead of a @ b")
  args = p.parse_args()
  shape = (args.m, args.k, args.n)
  jax_forms = _jax_weight_gradient_forms if args.weight_gradient else _jax_forms
  forms = {**jax_forms(*shape), **_torch_forms(*shape, args.weight_gradient)}
  best = train_step.best_seconds(forms, args.samples, args.reps)
  limit = cpu_limit.host()
  print(f"machine: physical limit {limit.describe('float32')}; bf16 "
        f"{limit.describe('bfloat16').split(' = ')[0]}")
  product = (f"[{args.m}, {args.k}]^T x [{args.m}, {args.n}]" if args.weight_gradient
             else f"[{args.m}, {args.k}] x [{args.k}, {args.n}]")
  print(f"{product}, best of {args.samples} x {args.reps}")
  flops = 2 * args.m * args.k * args.n
  for name, seconds in best.items():
    rate = flops / seconds
    try:  # Every form is held to the physical limit of its operands' dtype.
      peaks.check_against_limit(rate, "bfloat16" if "bf16" in name else "float32", limit)
      verdict = ""
    except peaks.AboveLimitError:
      verdict = "  ABOVE the physical limit: a timing error"
    print(f"{name:20s} {rate / 1e9:7.0f} GFLOP/s{verdict}")


if __name__ == "__main__":
  sys.exit(main())
