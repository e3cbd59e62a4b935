"""SwiGLU's elementwise part on CPU: SiLU(gate) * up evaluated in bfloat16 vs in float32.

  python -m benchmarks.swiglu                      # [4096, 1024], the tiny step's MLP
  python -m benchmarks.swiglu --rows=4096 --width=3072

XLA:CPU evaluates SiLU on bfloat16 operands much slower than on float32 ones,
one reason why bfloat16 on CPU keeps activations in float32 and rounds only
GEMM operands (`model/layers.py: activation_dtype`). Times the forward and
the backward (VJP) of both forms on bfloat16 inputs, best of `--samples`
synchronised runs of `--reps` calls, alternating, and prints the largest
difference between the two.
"""
import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import train_step


def in_bf16(gate, up):
  return jax.nn.silu(gate) * up


def in_f32(gate, up):
  return (jax.nn.silu(gate.astype(jnp.float32)) * up.astype(jnp.float32)).astype(gate.dtype)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--rows", type=int, default=4096)
  p.add_argument("--width", type=int, default=1024)
  p.add_argument("--reps", type=int, default=10)
  p.add_argument("--samples", type=int, default=5)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  gate, up, cotangent = (jnp.asarray(rng.normal(size=(args.rows, args.width)), jnp.bfloat16)
                         for _ in range(3))
  forms = {}
  for name, f in (("bf16", in_bf16), ("f32", in_f32)):
    forward = jax.jit(f)
    backward = jax.jit(lambda g, u, f=f: jax.vjp(f, g, u)[1](cotangent))
    forms[f"{name} forward"] = lambda forward=forward: jax.block_until_ready(forward(gate, up))
    forms[f"{name} backward"] = lambda backward=backward: jax.block_until_ready(
        backward(gate, up))
  best = train_step.best_seconds(forms, args.samples, args.reps)
  print(f"SiLU(gate) * up on bfloat16 [{args.rows}, {args.width}], evaluated in bf16 or f32; "
        f"best of {args.samples} x {args.reps}")
  for name, seconds in best.items():
    print(f"{name:14s} {seconds * 1e3:7.2f} ms")
  diff = jnp.abs(in_bf16(gate, up).astype(jnp.float32) - in_f32(gate, up).astype(jnp.float32))
  print(f"largest difference {float(diff.max()):.4f} "
        f"(largest value {float(jnp.abs(in_f32(gate, up).astype(jnp.float32)).max()):.2f})")


if __name__ == "__main__":
  sys.exit(main())
