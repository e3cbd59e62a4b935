"""Train-step throughput of the tiny MoE preset next to the dense tiny model, in one run.

  python -m benchmarks.moe                 # seq 256, batch 16, fp32, 3 samples x 5 steps
  python -m benchmarks.moe --samples=5

Three models, same attention and the same active FLOPs per token in the
feed-forward: `tiny` (dense SwiGLU 1024 wide) and `tiny_moe` (8 experts of
512, top-2) with dropless and with capacity dispatch. MFU counts active
parameters only (`metrics.flops_per_token`), against the one measured fp32
peak of this CPU (train/peaks.py: the training logs' denominator). Every
sample is synchronised.

Last line: `dense_tokens_per_s=... dropless_tokens_per_s=... capacity_tokens_per_s=...`.
"""
import argparse
import statistics
import sys
import types

import jax

from benchmarks import train_step
from midtrain_jax.train import cpu_limit, peaks

VARIANTS = {"dense": ("tiny", ""), "dropless": ("tiny_moe", "dropless"),
            "capacity": ("tiny_moe", "capacity")}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=5, help="steps per timed sample")
  p.add_argument("--samples", type=int, default=3)
  args = p.parse_args()
  if args.samples < 3:
    p.error("--samples must be >= 3: a median and spread need several samples.")
  print(f"machine: {cpu_limit.host().summary()}", flush=True)
  # The training logs' denominator, measured before any step is built.
  peak = peaks.run_peak("float32", "auto", jax.devices()[:1])
  results = {}
  for name, (size, dispatch) in VARIANTS.items():
    variant = types.SimpleNamespace(size=size, dispatch=dispatch, dtype="float32",
                                    attention="auto", seq=args.seq, batch=args.batch,
                                    steps=args.steps, samples=args.samples)
    results[name] = train_step.jax_samples(variant)
  print(f"shape: seq={args.seq} batch={args.batch} fp32, {args.samples} samples x "
        f"{args.steps} steps; {peak.describe()} ({peak.check})")
  dense = statistics.median(results["dense"]["rates"])
  for name, r in results.items():
    tok = statistics.median(r["rates"])
    print(f"{name:9s} params={r['params'] / 1e6:6.2f}M  active FLOPs/token="
          f"{r['flops_per_token'] / 1e6:6.1f}M  tokens/s {train_step._spread(r['rates'])}  "
          f"mfu={peaks.mfu_field(tok, r['flops_per_token'], peak.flops)}  "
          f"vs dense {tok / dense:.2f}")
  print(" ".join(f"{name}_tokens_per_s={statistics.median(r['rates']):.0f}"
                 for name, r in results.items()))


if __name__ == "__main__":
  sys.exit(main())
