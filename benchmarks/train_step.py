"""Train-step throughput of the JAX model, side by side with the PyTorch reference.

  python benchmarks/train_step.py                      # tiny preset, seq 256, batch 16
  python benchmarks/train_step.py --torch-python=.torchref/bin/python

The JAX model is configured with the reference's architecture (Llama: pre-norm,
no QK-norm, full attention, untied output) so both do the same work. FLOPs per
token use the reference's formula: 6 * (non-embedding params + output
projection) + 12 * layers * d * seq. MFU is against a measured fp32 matmul peak.
The torch reference runs in its own interpreter (its venv: see
`.torchref/bin/python`); when absent, only the JAX figures are printed.

Last line: `tokens_per_s=X mfu=Y` for the JAX step.
"""
import argparse
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax.parallel import sharding
from midtrain_jax.train import metrics, optim
from midtrain_jax.train import step as ts

_REFERENCE = os.path.join(os.path.dirname(__file__), "torch_reference.py")


def jax_step_throughput(args) -> dict[str, float]:
  c = config_lib.base_config(args.size)
  c.model.update(window_pattern=(0,), norm="pre", qk_norm="none", tie_embeddings=False,
                 compute_dtype=args.dtype, attention=args.attention)
  c.optim.update(schedule="constant", warmup_steps=0, lr=1e-3)
  cfg = config_lib.model_config(c.model)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  schedule = optim.make_schedule(c.optim, args.steps)
  tx = optim.make_optimizer(c.optim, schedule)
  graphdef, abstract, axes = ts.abstract_model(cfg)
  shardings = ts.state_shardings(tx, abstract, ts.param_shardings(abstract, axes, mesh), mesh)
  state = ts.init_state(cfg, tx, 0, shardings)
  step = ts.jit_train_step(graphdef, tx, schedule, 0.0, mesh, shardings)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (args.batch, args.seq + 1), dtype=np.int32)
  batch = sharding.host_batch_to_global(dict(
      inputs=tokens[:, :-1], targets=tokens[:, 1:],
      segment_ids=np.ones((args.batch, args.seq), np.int32),
      positions=np.tile(np.arange(args.seq, dtype=np.int32), (args.batch, 1))), mesh)
  for _ in range(3):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, m = step(state, batch)
  jax.block_until_ready(m)
  step_s = (time.perf_counter() - start) / args.steps
  n_params = metrics.param_count(abstract)
  # The reference's formula, with the model's own FLOPs accounting as a check.
  ref_flops = 6 * (n_params - cfg.padded_vocab_size * cfg.d_model) + \
      12 * cfg.n_layers * cfg.d_model * args.seq
  assert ref_flops == metrics.flops_per_token(cfg, n_params, args.seq)
  tok_s = args.batch * args.seq / step_s
  peak = metrics.measure_matmul_peak()
  return dict(tok_s=tok_s, step_ms=step_s * 1e3, gflops=tok_s * ref_flops / 1e9,
              peak_gflops=peak / 1e9, mfu=tok_s * ref_flops / peak, params=n_params)


def torch_reference(args) -> dict[str, float] | None:
  python = args.torch_python
  if not python or not os.path.exists(python) or not os.path.exists(args.reference):
    return None
  cfg = config_lib.base_config(args.size).model
  cmd = [python, args.reference, "--vocab", str(cfg.vocab_size), "--d", str(cfg.d_model),
         "--layers", str(cfg.n_layers), "--heads", str(cfg.n_heads),
         "--kv-heads", str(cfg.n_kv_heads), "--ffn", str(cfg.mlp_dim), "--seq", str(args.seq),
         "--batch", str(args.batch), "--steps", str(args.steps)]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
  print(out.strip().splitlines()[-1])
  fields = dict(re.findall(r"(\w+)=([\d.]+)", out))
  tok_s, gflops, peak = (float(fields[k]) for k in ("tokens_per_s", "model_gflops",
                                                    "matmul_peak_gflops"))
  return dict(tok_s=tok_s, gflops=gflops, peak_gflops=peak, mfu=gflops / peak)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="tiny")
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--attention", default="xla", help="model.attention implementation")
  p.add_argument("--torch-python", default=".torchref/bin/python")
  p.add_argument("--reference", default=_REFERENCE,
                 help="path of the PyTorch reference script (torch_reference.py)")
  args = p.parse_args()

  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x1, {os.cpu_count()} cores; "
        f"{args.size} seq={args.seq} batch={args.batch}", flush=True)
  torch = torch_reference(args)  # First, so the two runs do not share the cores.
  ours = jax_step_throughput(args)
  print(f"jax params={ours['params'] / 1e6:.2f}M step_ms={ours['step_ms']:.0f} "
        f"tokens_per_s={ours['tok_s']:.0f} model_gflops={ours['gflops']:.1f} "
        f"matmul_peak_gflops={ours['peak_gflops']:.0f} mfu={ours['mfu']:.3f}")
  if torch is not None:
    # Each framework measures its own matmul peak; MFU against the higher of
    # the two is the like-for-like figure.
    peak = max(ours["peak_gflops"], torch["peak_gflops"])
    print(f"torch tokens_per_s={torch['tok_s']:.0f} mfu={torch['mfu']:.3f} (own peak) | "
          f"vs common peak {peak:.0f} GFLOP/s: jax mfu={ours['gflops'] / peak:.3f} "
          f"torch mfu={torch['gflops'] / peak:.3f} | "
          f"jax/torch tokens_per_s ratio={ours['tok_s'] / torch['tok_s']:.2f}")
  else:
    print("torch reference not run (no --torch-python interpreter with torch).")
  print(f"tokens_per_s={ours['tok_s']:.0f} mfu={ours['mfu']:.3f}")


if __name__ == "__main__":
  sys.exit(main())
