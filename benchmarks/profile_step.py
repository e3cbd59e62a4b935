"""Where a train step's time goes: a profiler trace of the step, summed by op class.

  python -m benchmarks.profile_step                # tiny preset, seq 256, batch 16, fp32
  python -m benchmarks.profile_step --size=custom --d=768 --layers=12 --seq=1024 --batch=4

Builds the step of benchmarks/train_step.py (same model, shapes and flags),
has XLA dump its optimised HLO, traces `--steps` synchronised steps with
jax.profiler and attributes every executed XLA op (a fusion, a GEMM, a copy)
to a class by what its HLO computes:

  matmul: output layer   dots with the vocabulary as a dimension (logits, their gradients)
  attention (fused kernel)  the native CPU attention kernel (kernels/cpu_attention.py)
  matmul: attention      batched dots (scores and weighted values)
  matmul: other          projections and the MLP (forward and both gradients)
  loss softmax           exp / log over the vocabulary (cross-entropy)
  attention softmax      the other exponentials (but the SiLU's)
  optimizer              ops outside the model's forward and backward (AdamW, norms of updates)
  layout and copies      copies, transposes, concatenation, slicing, padding
  reductions             other reductions (RMSNorm statistics, loss sums)
  elementwise            the rest (activations, RoPE, masks, residual adds)

Matmul classes also get their rate (FLOPs from the dot shapes / time). Times
are per step; the last line gives the top classes. The trace adds a little
overhead per op, so the total is slightly above the benchmark's step time.

With `--torch`, the PyTorch reference of the same shape is traced too
(torch.profiler, one step after warm-up, `torch_reference.py --profile`) and
its ops summed into the same classes beside JAX's; its attention is one fused
kernel (scaled_dot_product_attention), shown as a class of its own.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import types

import jax

from benchmarks import train_step
from midtrain_jax.train import cpu_limit

# An instruction's name and dims; tuple-shaped ones (e.g. a custom call with two
# results) match with no dims.
_SHAPE = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (?:\w+\[([\d,]*)\]|\()")
_CALLS = re.compile(r"calls=%([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_LAYOUT_OPS = ("copy(", "transpose(", "concatenate(", "slice(", "pad(", "dynamic-slice(",
               "dynamic-update-slice(", "bitcast(", "parameter(", "broadcast(", "reshape(")


def parse_hlo(text: str) -> tuple[dict, dict]:
  """(computation name -> its instruction lines, instruction name -> (line, computation))."""
  computations, where, current = {}, {}, None
  for line in text.splitlines():
    if line and not line.startswith(" ") and line.rstrip().endswith("{"):
      current = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
      current = current.lstrip("%")
      computations[current] = []
    elif current and line.startswith("  "):
      computations[current].append(line)
      m = _SHAPE.match(line)
      if m:
        where[m.group(1)] = (line, current)
  return computations, where


def _dims(text: str | None) -> list[int]:
  return [int(x) for x in (text or "").split(",") if x]


def dot_flops(lines: list[str]) -> tuple[float, bool, list[list[int]]]:
  """FLOPs of the dots among `lines` (2 x output elements x contracted size),
  whether one is batched, and every shape the dots touch."""
  shapes = {m.group(1): _dims(m.group(2)) for line in lines if (m := _SHAPE.match(line))}
  flops, batched, seen = 0.0, False, []
  for line in lines:
    if " dot(" not in line:
      continue
    out = _dims(_SHAPE.match(line).group(2))
    operands = re.search(r" dot\(%([\w.\-]+), %([\w.\-]+)\)", line)
    lhs = shapes.get(operands.group(1), []) if operands else []
    contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
    k = 1
    for i in _dims(contract.group(1)) if contract else []:
      k *= lhs[i] if i < len(lhs) else 1
    n = 1
    for x in out:
      n *= x
    flops += 2.0 * n * k
    batched |= "lhs_batch_dims" in line
    seen += [out, lhs]
  return flops, batched, seen


_TARGET = re.compile(r'custom_call_target="(midtrain_cpu_\w+)"')
_OPERAND_SHAPES = re.compile(r"operand_layout_constraints=\{(.*?)\}, api_version")


def native_kernel(line: str, vocab: int) -> tuple[str, float] | None:
  """(op class, FLOPs) of a native CPU kernel's custom call (kernels/), else None."""
  target = _TARGET.search(line)
  if target is None:
    return None
  if "attention" in target.group(1):
    return "attention (fused kernel)", 0.0
  out = _dims(_SHAPE.match(line).group(2))
  lhs = _dims(re.search(r"\[([\d,]*)\]", _OPERAND_SHAPES.search(line).group(1)).group(1))
  k = lhs[0] if "transpose_a = true" in line else lhs[1]
  kind = "matmul: output layer" if vocab in out or vocab in lhs else "matmul: other"
  return kind, 2.0 * out[0] * out[1] * k


def classify(name: str, where: dict, computations: dict, vocab: int) -> tuple[str, float]:
  """(op class, matmul FLOPs) of one executed op."""
  line, _ = where[name]
  if (kernel := native_kernel(line, vocab)) is not None:
    return kernel
  called = _CALLS.search(line)
  body = computations.get(called.group(1), []) if called else []
  lines = body or [line]
  text = "\n".join(lines)
  op_name = (_OP_NAME.search(line) or _OP_NAME.search(text))
  op_name = op_name.group(1) if op_name else ""
  flops, batched, shapes = dot_flops(lines)
  if flops:
    if any(vocab in s for s in shapes):
      return "matmul: output layer", flops
    return ("matmul: attention" if batched else "matmul: other"), flops
  if "jvp(" not in op_name:
    return "optimizer", 0.0
  if ("exponential(" in text or " log(" in text) and "silu" not in op_name:
    vocab_sized = any(vocab in _dims(m.group(2)) for x in lines if (m := _SHAPE.match(x)))
    return ("loss softmax" if vocab_sized else "attention softmax"), 0.0
  ops = [re.sub(r"^.*? = \S+ ", "", x).split(" ")[0] for x in lines]
  if all(any(o.startswith(p) for p in _LAYOUT_OPS) for o in ops):
    return "layout and copies", 0.0
  if "reduce(" in text:
    return "reductions", 0.0
  return "elementwise", 0.0


def trace_events(log_dir: str) -> list[dict]:
  path = glob.glob(os.path.join(log_dir, "**", "*.trace.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def torch_classes(args) -> collections.Counter | None:
  """Seconds per op class of one traced step of the PyTorch reference, or None
  without an interpreter that has torch and transformers."""
  cmd = train_step.reference_command(args)
  if cmd is None:
    print("torch reference not traced (no interpreter with torch and transformers).")
    return None
  out = subprocess.run(cmd + ["--samples", "1", "--profile"], capture_output=True, text=True,
                       check=True).stdout
  return collections.Counter({k.replace("_", " "): float(v) / 1e3
                              for k, v in re.findall(r"profile class=(\S+) ms=([\d.]+)", out)})


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  train_step.add_step_arguments(p, 3, "traced steps")
  p.add_argument("--top", type=int, default=10, help="slowest single ops listed")
  p.add_argument("--torch", action="store_true", help="also trace the PyTorch reference")
  args = p.parse_args()
  train_step.preload_malloc(args.malloc, "benchmarks.profile_step")
  theirs = torch_classes(args) if args.torch else None
  dump = tempfile.mkdtemp(prefix="hlo_")
  # Read when the backend starts (not at import), so set before the first jax call.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_dump_to={dump} --xla_dump_hlo_as_text").strip()
  variant = types.SimpleNamespace(**vars(args), window=0, dispatch="")
  built = train_step.build_step(variant, train_step.ONE_DEVICE)
  step, state, batch = built["step"], built["state"], built["batch"]
  for _ in range(2):
    state, m = step(state, batch)
  jax.block_until_ready((state, m))
  start = time.perf_counter()
  for _ in range(args.steps):
    state, m = step(state, batch)
  jax.block_until_ready((state, m))
  step_s = (time.perf_counter() - start) / args.steps
  log_dir = tempfile.mkdtemp(prefix="trace_")
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    for _ in range(args.steps):
      state, m = step(state, batch)
    jax.block_until_ready((state, m))

  hlo = max(glob.glob(os.path.join(dump, "*jit_train_step*after_optimizations.txt")),
            key=os.path.getsize)
  with open(hlo) as f:
    computations, where = parse_hlo(f.read())
  vocab = built["cfg"].padded_vocab_size
  seconds, flops, single = collections.Counter(), collections.Counter(), collections.Counter()
  for e in trace_events(log_dir):
    if e.get("ph") != "X" or e["name"] not in where:
      continue
    kind, f = classify(e["name"], where, computations, vocab)
    seconds[kind] += e["dur"] / 1e6 / args.steps
    flops[kind] += f / args.steps
    single[(e["name"], kind)] += e["dur"] / 1e6 / args.steps
  total = sum(seconds.values())
  print(f"machine: {cpu_limit.host().summary()}; allocator: {train_step.allocator()}")
  print(f"shape: {args.size} seq={args.seq} batch={args.batch} dtype={args.dtype}; "
        f"step {step_s * 1e3:.0f} ms untraced, {total * 1e3:.0f} ms in traced XLA ops")
  print(f"{'op class':24s} {'ms/step':>8s} {'share':>6s} {'GFLOP/s':>8s}"
        + (f" {'torch ms':>9s} {'share':>6s}" if theirs is not None else ""))
  kinds = list(dict.fromkeys([k for k, _ in seconds.most_common()]
                             + ([k for k, _ in theirs.most_common()] if theirs else [])))
  torch_total = sum(theirs.values()) if theirs else 0.0
  for kind in kinds:
    s = seconds.get(kind, 0.0)
    rate = f"{flops[kind] / s / 1e9:8.0f}" if flops[kind] else " " * 8
    line = f"{kind:24s} {s * 1e3:8.1f} {s / total:6.1%} {rate}"
    if theirs is not None:
      t = theirs.get(kind, 0.0)
      line += f" {t * 1e3:9.1f} {t / torch_total:6.1%}"
    print(line)
  if theirs is not None:
    print(f"{'total':24s} {total * 1e3:8.1f} {'':6s} {'':8s} {torch_total * 1e3:9.1f}")
  print(f"slowest {args.top} ops:")
  for (name, kind), s in single.most_common(args.top):
    print(f"  {name:34s} {kind:22s} {s * 1e3:7.1f} ms")
  print(" ".join(f"{k.replace(': ', '_').replace(' ', '_')}={v / total:.3f}"
                 for k, v in seconds.most_common(4)))


if __name__ == "__main__":
  sys.exit(main())
