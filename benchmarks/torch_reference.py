#!/usr/bin/env python3
"""PyTorch reference for train-step throughput on this CPU (a peer to compare with).

Trains a Hugging Face LlamaForCausalLM of the given shape with AdamW on random
tokens and prints tokens/s and model GFLOP/s, plus the machine's fp32 matmul
peak, so a JAX step of the same shape can be compared side by side in one run.

Set up once in a separate venv (torch 2.13.0 CPU is served locally):
  python3 -m venv .torchref && .torchref/bin/pip install torch==2.13.0 transformers
Run:
  .torchref/bin/python benchmarks/torch_reference.py --vocab 8192 --d 256 \
      --layers 4 --heads 4 --kv-heads 4 --ffn 1024 --seq 256 --batch 16

FLOPs per token use 6 * (non-embedding params + output projection) + 12 * L * d * seq
(attention, not halved for causality) -- use the same formula on the JAX side.

Options beyond the shared reference (defaults behave as it does): --samples N
prints one `sample=i tokens_per_s=...` line per timed sample of --steps steps;
--interleave waits for a line on stdin before each sample (and warms up at
the first), so a caller can alternate its own samples with these;
--dtype bfloat16 runs forward and backward under CPU autocast (fp32 master
weights and AdamW, as the JAX side's compute_dtype=bfloat16); --profile traces
one more step with torch.profiler and prints `profile class=... ms=...` lines,
its ops summed into benchmarks/profile_step.py's classes. The matmul peak is
taken in --dtype.
"""
import argparse
import collections
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def matmul_peak(n=2048, reps=10, dtype=torch.float32):
  a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
  for _ in range(3):
    a @ b
  t = time.perf_counter()
  for _ in range(reps):
    a @ b
  return 2 * n**3 / ((time.perf_counter() - t) / reps) / 1e9


def main():
  p = argparse.ArgumentParser()
  for name, default in [("vocab", 8192), ("d", 256), ("layers", 4), ("heads", 4),
                        ("kv-heads", 4), ("ffn", 1024), ("seq", 256), ("batch", 16),
                        ("steps", 10), ("samples", 1)]:
    p.add_argument("--" + name, type=int, default=default)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--profile", action="store_true")
  p.add_argument("--interleave", action="store_true")
  a = p.parse_args()
  torch.manual_seed(0)
  cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d, intermediate_size=a.ffn,
                    num_hidden_layers=a.layers, num_attention_heads=a.heads,
                    num_key_value_heads=a.kv_heads, max_position_embeddings=a.seq,
                    tie_word_embeddings=False)
  cfg._attn_implementation = "sdpa"
  model = LlamaForCausalLM(cfg)
  n_params = sum(p.numel() for p in model.parameters())
  flops_per_token = 6 * (n_params - a.vocab * a.d) + 12 * a.layers * a.d * a.seq
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
  x = torch.randint(0, a.vocab, (a.batch, a.seq))

  def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bfloat16"):
      loss = model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  if a.interleave:
    print("ready", flush=True)
    sys.stdin.readline()
  for _ in range(3):
    step()
  times = []
  for i in range(a.samples):
    if a.interleave and i:
      sys.stdin.readline()
    t = time.perf_counter()
    for _ in range(a.steps):
      step()
    times.append((time.perf_counter() - t) / a.steps)
    if a.samples > 1 or a.interleave:
      print(f"sample={i} tokens_per_s={a.batch * a.seq / times[-1]:.0f}", flush=True)
  dt = sorted(times)[len(times) // 2]
  tok_s = a.batch * a.seq / dt
  peak = matmul_peak(dtype=getattr(torch, a.dtype))
  print(f"torch {torch.__version__} threads={torch.get_num_threads()} "
        f"params={n_params / 1e6:.2f}M step_ms={dt * 1e3:.0f} tokens_per_s={tok_s:.0f} "
        f"model_gflops={tok_s * flops_per_token / 1e9:.1f} matmul_peak_gflops={peak:.0f}")
  if a.profile:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=True) as prof:
      step()
    for kind, us in profile_classes(prof.events(), a.vocab).most_common():
      print(f"profile class={kind.replace(' ', '_')} ms={us / 1e3:.1f}")


_WRAPPERS = ("aten::linear", "aten::matmul", "aten::cross_entropy_loss")
_MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
_LAYOUT = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat", "aten::transpose",
           "aten::t", "aten::view", "aten::reshape", "aten::expand", "aten::slice",
           "aten::as_strided", "aten::_unsafe_view", "aten::empty", "aten::empty_like",
           "aten::zeros", "aten::zero_", "aten::fill_", "aten::index_select", "aten::embedding",
           "aten::embedding_dense_backward", "aten::index_put_", "aten::permute", "aten::unsqueeze",
           "aten::squeeze", "aten::_reshape_alias", "aten::split", "aten::narrow", "aten::select",
           "aten::new_zeros", "aten::to", "aten::_to_copy", "aten::empty_strided", "aten::detach")


def profile_classes(events, vocab: int) -> collections.Counter:
  """Self CPU time (us) of every traced op, summed into the JAX profile's classes."""
  totals = collections.Counter()
  for e in events:
    if e.name in _WRAPPERS:
      continue  # Their children hold the time.
    name, parent, in_optimizer = e.name, e.cpu_parent, False
    while parent is not None:
      in_optimizer |= parent.name.startswith("Optimizer.step")
      parent = parent.cpu_parent
    if in_optimizer:
      kind = "optimizer"
    elif name in _MATMULS:
      vocab_sized = any(vocab in shape for shape in e.input_shapes if shape)
      kind = "matmul: output layer" if vocab_sized else "matmul: other"
    elif "scaled_dot_product" in name:
      kind = "attention (fused kernel)"
    elif "log_softmax" in name or "nll_loss" in name:
      kind = "loss softmax"
    elif name in _LAYOUT:
      kind = "layout and copies"
    elif name in ("aten::mean", "aten::sum", "aten::max", "aten::amax", "aten::norm"):
      kind = "reductions"
    elif name.startswith("aten::"):
      kind = "elementwise"
    else:
      continue  # Autograd and Python wrappers: their children hold the time.
    totals[kind] += e.self_cpu_time_total
  return totals


if __name__ == "__main__":
  main()
