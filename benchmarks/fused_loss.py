"""Train step with the fused output layer + loss vs materialised logits, in one process.

  python -m benchmarks.fused_loss --malloc=tcmalloc          # tiny, seq 256, batch 16, fp32
  python -m benchmarks.fused_loss --size=custom --d=768 --layers=12 --seq=1024 --batch=4

Builds benchmarks/train_step.py's step twice: once with the model's loss
(`train/losses.py`: logits made and consumed one chunk at a time) and once
with the textbook loss (the whole [tokens, vocab] logits, then log-softmax),
then times them in alternating synchronised samples so the host's drift hits
both alike. Prints each one's compiled temporaries (XLA's memory analysis),
median tokens/s and spread, and the fused one's speed relative to the
materialised one.
"""
import argparse
import statistics
import sys
import types

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import train_step
from midtrain_jax.parallel import sharding
from midtrain_jax.train import step as ts


def materialised_loss_sums(params, graphdef, batch, z_loss: float):
  """`step.loss_sums` of a dense model with the whole logits held (what the fused loss replaces)."""
  model = nnx.merge(graphdef, params)
  logits, _ = model(batch["inputs"], batch["positions"], batch["segment_ids"])
  peak = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
  log_z = jnp.log(jnp.exp(logits - peak).sum(axis=-1)) + peak[..., 0]
  ce = log_z - jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
  weights = (batch["segment_ids"] > 0).astype(jnp.float32)
  sums = {"ce_sum": (ce * weights).sum(), "z_sum": (jnp.square(log_z) * weights).sum(),
          "tokens": weights.sum()}
  return sums["ce_sum"] + z_loss * sums["z_sum"], sums


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  train_step.add_step_arguments(p, 3, "steps per timed sample")
  p.add_argument("--samples", type=int, default=6)
  args = p.parse_args()
  if args.samples < 3:
    p.error("--samples must be >= 3: a median and spread need several samples.")
  train_step.preload_malloc(args.malloc, "benchmarks.fused_loss")
  variant = types.SimpleNamespace(**vars(args), window=0, dispatch="")
  fused_loss = ts.loss_sums
  built = {}
  for name, loss in (("materialised", materialised_loss_sums), ("fused", fused_loss)):
    ts.loss_sums = loss  # Read when the step is traced, below.
    b = train_step.build_step(variant, train_step.ONE_DEVICE)
    with jax.set_mesh(sharding.make_mesh(train_step.ONE_DEVICE, jax.devices()[:1])):
      compiled = b["step"].__wrapped__.lower(b["state"], b["batch"]).compile()
    b["temp_gib"] = compiled.memory_analysis().temp_size_in_bytes / 2**30
    for _ in range(2):
      b["state"], m = b["step"](b["state"], b["batch"])
    jax.block_until_ready((b["state"], m))
    built[name] = b
  ts.loss_sums = fused_loss
  rates = train_step.alternating_rates(built, args)
  print(f"shape: {args.size} seq={args.seq} batch={args.batch} dtype={args.dtype}; "
        f"allocator: {train_step.allocator()}; {args.samples} alternating samples x "
        f"{args.steps} steps")
  for name, r in rates.items():
    print(f"{name:13s} tokens/s median {statistics.median(r):,.0f} "
          f"(min {min(r):,.0f}, max {max(r):,.0f}); compiled temporaries "
          f"{built[name]['temp_gib']:.2f} GiB")
  ratios = [f / m for f, m in zip(rates["fused"], rates["materialised"])]
  medians = {name: statistics.median(r) for name, r in rates.items()}
  print(f"fused/materialised={medians['fused'] / medians['materialised']:.3f} "
        f"(per-sample min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
  sys.exit(main())
