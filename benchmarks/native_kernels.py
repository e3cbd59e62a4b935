"""Train step on the native CPU kernels vs XLA's own ops, alternating in one process.

  python -m benchmarks.native_kernels --malloc=tcmalloc          # tiny, seq 256, batch 16
  python -m benchmarks.native_kernels --size=custom --d=768 --layers=12 --seq=1024 --batch=4

Builds benchmarks/train_step.py's step three times, with the kernel config
keys (`model.attention`, `model.matmul`) of each mode: `xla` (both `xla`: XLA's
dots, batched-dot attention), `auto` (both `auto`, the default: the fused
attention kernel, and MKL's GEMMs on Intel CPUs only) and `native` (both
`cpu_native`: MKL GEMMs, fused attention), checks that all give the same loss,
and times them in alternating synchronised samples so the host's drift hits
all alike. Prints each one's median tokens/s and spread and its ratio to `xla`
per sample. Needs the native kernels (`pip install -e ".[cpu]"`).
"""
import argparse
import statistics
import sys
import types

from benchmarks import train_step
from midtrain_jax.kernels import native

# Mode -> the value of both kernel config keys.
MODES = {"xla": "xla", "auto": "auto", "native": "cpu_native"}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  train_step.add_step_arguments(p, 3, "steps per timed sample")
  p.add_argument("--samples", type=int, default=6)
  args = p.parse_args()
  if args.samples < 3:
    p.error("--samples must be >= 3: a median and spread need several samples.")
  train_step.preload_malloc(args.malloc, "benchmarks.native_kernels")
  ready, why = native.status()
  if not ready:
    sys.exit(f"native CPU kernels unavailable: {why}")
  built, losses = {}, {}
  for name, kernel in MODES.items():
    variant = types.SimpleNamespace(**{**vars(args), "attention": kernel, "matmul": kernel},
                                    window=0, dispatch="")
    b = train_step.build_step(variant, train_step.ONE_DEVICE)
    for _ in range(2):
      b["state"], m = b["step"](b["state"], b["batch"])
    losses[name] = float(m["loss"])
    built[name] = b
  if any(abs(loss - losses["xla"]) > 1e-4 * abs(losses["xla"]) for loss in losses.values()):
    sys.exit(f"losses differ: {losses}")
  rates = train_step.alternating_rates(built, args)
  print(f"shape: {args.size} seq={args.seq} batch={args.batch} dtype={args.dtype}; "
        f"allocator: {train_step.allocator()}; {args.samples} alternating samples x "
        f"{args.steps} steps; loss after 2 steps "
        + ", ".join(f"{loss:.5f} ({name})" for name, loss in losses.items()))
  for name, r in rates.items():
    print(f"{name:7s} tokens/s median {statistics.median(r):,.0f} "
          f"(min {min(r):,.0f}, max {max(r):,.0f})")
  for name in ("auto", "native"):
    ratios = [n / x for n, x in zip(rates[name], rates["xla"])]
    median = statistics.median(rates[name]) / statistics.median(rates["xla"])
    print(f"{name}/xla={median:.3f} (per-sample min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
  sys.exit(main())
