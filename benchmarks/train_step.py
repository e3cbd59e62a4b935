"""Train-step throughput of the JAX model, side by side with the PyTorch reference.

  python -m benchmarks.train_step                      # tiny preset, seq 256, batch 16, fp32
  python -m benchmarks.train_step --dtype=bfloat16 --samples=5
  python -m benchmarks.train_step --size=custom --d=768 --layers=12 --seq=1024 --batch=4
  python -m benchmarks.train_step --mesh=data:2,fsdp:4,tensor:1   # also the sharded step
  python -m benchmarks.train_step --malloc=tcmalloc   # apt install libtcmalloc-minimal4

The JAX model is configured with the reference's architecture (Llama: pre-norm,
no QK-norm, full attention, untied output) so both do the same work. FLOPs per
token use the reference's formula: 6 * (non-embedding params + output
projection) + 12 * layers * d * seq, asserted equal to the model's own
accounting. Both frameworks run `--samples` timed samples of `--steps` steps
each (every sample synchronised), alternating between the two so a drifting
host slows both alike, reported as median and min-max spread; the ratio's
spread is over the pairs of samples taken one after the other.

MFU of both is against one peak (`peak ...` line), the denominator of the
training logs (`peaks.run_peak`): this CPU's synchronised matmul rate on the
GEMM path the JAX step runs (`--matmul`: MKL where it runs MKL, else XLA's
dot) in the run's dtype, measured before any step is built and checked
against the host's physical limit (train/peaks.py, train/cpu_limit.py). The
PyTorch reference's own matmul rate is printed beside it, checked against the
same limit. A step rate above the peak prints `mfu=error(...)`, never an MFU
above 1. The torch reference runs in `--torch-python` (default:
`.torchref/bin/python` if present, else this interpreter when it has torch
and transformers); without one, only the JAX figures are printed.

The C allocator matters on CPU: with glibc's malloc every step's large
temporaries are fresh mmap'd pages, faulted in again each step (a 50 MB
elementwise op: 19 ms under glibc, 5 ms under tcmalloc). `--malloc=tcmalloc`
(or jemalloc) restarts the benchmark with that library preloaded, for both
frameworks; the machine line names the allocator in use.

With `--mesh`, the same step also runs sharded over that many CPU devices
(XLA's host platform split into fake devices: the cores are shared, so this
measures what sharding costs on one host, not a speedup).

Last line: `tokens_per_s=X mfu=Y` for the JAX step (median, unsharded).
"""
import argparse
import ctypes.util
import functools
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax.kernels import select
from midtrain_jax.parallel import sharding
from midtrain_jax.train import cpu_limit, metrics, optim, peaks
from midtrain_jax.train import memory_plan as plan
from midtrain_jax.train import step as ts

_REFERENCE = os.path.join(os.path.dirname(__file__), "torch_reference.py")


def model_section(args):
  """The benchmark's model: a preset, or --size=custom with --d/--layers/..."""
  c = config_lib.base_config(args.size)
  if args.size == "custom":
    c.model.update(d_model=args.d, n_layers=args.layers, n_heads=args.heads,
                   n_kv_heads=args.heads, mlp_dim=4 * args.d, vocab_size=args.vocab)
  # Full attention (the reference has no windows) unless a window is asked for.
  c.model.update(window_pattern=(getattr(args, "window", 0),), norm="pre", qk_norm="none",
                 tie_embeddings=False, compute_dtype=args.dtype, attention=args.attention,
                 matmul=getattr(args, "matmul", "auto"))
  if getattr(args, "dispatch", ""):
    c.model.moe.dispatch = args.dispatch
  c.optim.update(schedule="constant", warmup_steps=0, lr=1e-3)
  return c


ONE_DEVICE = {"data": 1, "fsdp": 1, "tensor": 1}


def build_step(args, mesh_sizes: dict[str, int]) -> dict:
  """The jitted train step of the benchmark's model, its state and a random batch."""
  c = model_section(args)
  cfg = config_lib.model_config(c.model)
  devices = int(np.prod(list(mesh_sizes.values())))
  mesh = sharding.make_mesh(mesh_sizes, jax.devices()[:devices])
  schedule = optim.make_schedule(c.optim, 1_000)
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
      loss_mask=np.ones((args.batch, args.seq), np.int32),
      positions=np.tile(np.arange(args.seq, dtype=np.int32), (args.batch, 1))), mesh)
  return dict(step=step, state=state, batch=batch, cfg=cfg, abstract=abstract)


def timed_sample(b: dict, args) -> float:
  """Tokens/s of one synchronised sample of `args.steps` steps of a built step
  (build_step's dict; its state advances)."""
  start = time.perf_counter()
  for _ in range(args.steps):
    b["state"], m = b["step"](b["state"], b["batch"])
  jax.block_until_ready((b["state"], m))
  return args.batch * args.seq * args.steps / (time.perf_counter() - start)


def alternating_rates(built: dict[str, dict], args) -> dict[str, list[float]]:
  """Tokens/s of `args.samples` synchronised samples of `args.steps` steps of each
  built step (build_step's dicts, by name), alternating between them so the
  host's drift hits all alike."""
  rates = {name: [] for name in built}
  for _ in range(args.samples):
    for name, b in built.items():
      rates[name].append(timed_sample(b, args))
  return rates


def best_seconds(forms: dict, samples: int, reps: int) -> dict[str, float]:
  """Best seconds per call of each synchronised callable over `samples` runs of
  `reps` calls, forms alternating; each is called once first (compile, warm up)."""
  for run in forms.values():
    run()
  best = dict.fromkeys(forms, float("inf"))
  for _ in range(samples):
    for name, run in forms.items():
      start = time.perf_counter()
      for _ in range(reps):
        run()
      best[name] = min(best[name], (time.perf_counter() - start) / reps)
  return best


def jax_sampler(args, mesh_sizes: dict[str, int] = ONE_DEVICE):
  """The warmed-up JAX step as a function taking one synchronised sample of
  `args.steps` steps (returns tokens/s), and the model's FLOPs per token and
  parameter count."""
  built = build_step(args, mesh_sizes)
  cfg, abstract = built["cfg"], built["abstract"]
  for _ in range(3):
    built["state"], m = built["step"](built["state"], built["batch"])
  jax.block_until_ready((built["state"], m))

  n_params = metrics.param_count(abstract)
  ref_flops = 6 * (n_params - cfg.padded_vocab_size * cfg.d_model) + \
      12 * cfg.n_layers * cfg.d_model * args.seq
  model_flops = metrics.flops_per_token(cfg, n_params, args.seq)
  # The reference's formula is for full attention and dense layers; windows
  # count what they see, MoE layers the experts a token runs.
  assert getattr(args, "window", 0) or cfg.moe_experts or ref_flops == model_flops
  return functools.partial(timed_sample, built, args), dict(flops_per_token=model_flops,
                                                           params=n_params)


def jax_samples(args, mesh_sizes: dict[str, int] = ONE_DEVICE) -> dict:
  """Tokens/s of each timed sample, and the model's FLOPs per token and parameters."""
  sample, info = jax_sampler(args, mesh_sizes)
  return dict(info, rates=[sample() for _ in range(args.samples)])


def kernels_in_use(args) -> str:
  """Which kernels the unsharded JAX step runs (`kernels/select.py` on one device)."""
  choice = select.choose(args.attention, getattr(args, "matmul", "auto"),
                         platform=jax.default_backend(), device_count=1, dtype=args.dtype)
  text = f"attention {choice.attention}, GEMMs {choice.matmul}"
  if args.dtype != "float32" and jax.default_backend() == "cpu":
    text += " (bf16 GEMMs with float32 results, float32 activations as autocast)"
  return text + "".join(f"; {note}" for note in choice.notes)


def torch_python(args) -> str | None:
  if args.torch_python:
    return args.torch_python if os.path.exists(args.torch_python) else None
  if os.path.exists(".torchref/bin/python"):
    return ".torchref/bin/python"
  have = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
  return sys.executable if have else None


def reference_command(args) -> list[str] | None:
  """The command running the PyTorch reference at the benchmark's shape, or None
  when there is no interpreter with torch and transformers."""
  python = torch_python(args)
  if python is None or not os.path.exists(args.reference):
    return None
  cfg = model_section(args).model
  return [python, args.reference, "--vocab", str(cfg.vocab_size), "--d", str(cfg.d_model),
          "--layers", str(cfg.n_layers), "--heads", str(cfg.n_heads),
          "--kv-heads", str(cfg.n_kv_heads), "--ffn", str(cfg.mlp_dim), "--seq", str(args.seq),
          "--batch", str(args.batch), "--steps", str(args.steps), "--dtype", args.dtype]


def paired_samples(args) -> tuple[dict, dict | None]:
  """Samples of the JAX step and of the PyTorch reference, alternating (JAX,
  torch, JAX, ...) so the host's drift hits both alike; torch None without an
  interpreter for it. The reference waits on its stdin between samples, so the
  two never share the cores while one is timed."""
  cmd = reference_command(args)
  if cmd is None:
    return jax_samples(args), None
  cmd += ["--samples", str(args.samples), "--interleave"]
  with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
    try:
      if proc.stdout.readline().strip() != "ready":  # Its model is built before JAX compiles.
        sys.exit(f"the PyTorch reference failed to start: {' '.join(cmd)}")
      sample, ours = jax_sampler(args)
      ours["rates"], torch_rates = [], []
      for _ in range(args.samples):
        ours["rates"].append(sample())
        proc.stdin.write("next\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        found = re.match(r"sample=\d+ tokens_per_s=([\d.]+)", line)
        if found is None:
          sys.exit(f"the PyTorch reference stopped mid-run: {line!r}")
        torch_rates.append(float(found.group(1)))
    except BaseException:
      proc.kill()  # Not left running samples on its own.
      raise
    proc.stdin.close()
    last = proc.stdout.read().strip().splitlines()[-1]
  if proc.returncode:
    sys.exit(f"the PyTorch reference exited with status {proc.returncode}")
  fields = dict(re.findall(r"(\w+)=([\w.+]+)", last))
  return ours, dict(rates=torch_rates, version=last.split()[1], threads=int(fields["threads"]),
                    params=float(fields["params"].rstrip("M")),
                    peak=float(fields["matmul_peak_gflops"]) * 1e9)


_MALLOC_LIBRARIES = {"tcmalloc": "tcmalloc_minimal", "jemalloc": "jemalloc"}


def allocator() -> str:
  """The C allocator of this process: a preloaded tcmalloc / jemalloc, or glibc's."""
  preload = os.environ.get("LD_PRELOAD", "")
  return next((name for name in _MALLOC_LIBRARIES if name in preload), "glibc malloc")


def preload_malloc(name: str, module: str = "benchmarks.train_step") -> None:
  """Restarts `python -m module` with the allocator `name` preloaded (no return), unless it is."""
  if name == "system" or allocator() == name:
    return
  library = ctypes.util.find_library(_MALLOC_LIBRARIES[name])
  if library is None:
    sys.exit(f"--malloc={name}: lib{_MALLOC_LIBRARIES[name]} is not installed "
             f"(Debian/Ubuntu: apt install libtcmalloc-minimal4 / libjemalloc2).")
  env = dict(os.environ, LD_PRELOAD=" ".join(filter(None, [library,
                                                           os.environ.get("LD_PRELOAD")])))
  os.execve(sys.executable, [sys.executable, "-m", module] + sys.argv[1:], env)


def _spread(rates: list[float]) -> str:
  return (f"median {statistics.median(rates):,.0f} (min {min(rates):,.0f}, "
          f"max {max(rates):,.0f}, n={len(rates)})")


def add_step_arguments(p: argparse.ArgumentParser, steps: int, steps_help: str) -> None:
  """The model, shape and allocator flags shared with benchmarks/profile_step.py."""
  p.add_argument("--size", default="tiny", help="a preset, or custom (with --d, --layers ...)")
  p.add_argument("--d", type=int, default=768)
  p.add_argument("--layers", type=int, default=12)
  p.add_argument("--heads", type=int, default=12)
  p.add_argument("--vocab", type=int, default=8192)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--steps", type=int, default=steps, help=steps_help)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--attention", default="auto", choices=select.ATTENTION,
                 help="model.attention kernel")
  p.add_argument("--matmul", default="auto", choices=select.MATMUL, help="model.matmul kernel")
  p.add_argument("--malloc", default="system", choices=["system", *_MALLOC_LIBRARIES],
                 help="C allocator of the run (system: as started)")
  p.add_argument("--torch-python", default="", help="interpreter with torch + transformers")
  p.add_argument("--reference", default=_REFERENCE,
                 help="path of the PyTorch reference script (torch_reference.py)")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_step_arguments(p, 5, "steps per timed sample")
  p.add_argument("--samples", type=int, default=3)
  p.add_argument("--mesh", default="", help="also time the step sharded over this mesh "
                 "of fake CPU devices, e.g. data:2,fsdp:4,tensor:1")
  args = p.parse_args()
  if args.samples < 3:
    p.error("--samples must be >= 3: a median and spread need several samples.")
  preload_malloc(args.malloc)
  mesh_sizes = None
  if args.mesh:
    try:
      mesh_sizes = plan.parse_mesh(args.mesh)
    except ValueError as e:
      p.error(str(e))
    # Before the backend starts: the host platform is split into this many devices.
    jax.config.update("jax_num_cpu_devices", int(np.prod(list(mesh_sizes.values()))))
    if args.batch % (mesh_sizes["data"] * mesh_sizes["fsdp"]):
      p.error(f"--batch={args.batch} is not divisible by data x fsdp of --mesh={args.mesh}.")

  limit = cpu_limit.host()
  print(f"machine: physical limit {limit.describe(args.dtype)}; allocator: {allocator()}",
        flush=True)
  print(f"shape: {args.size} seq={args.seq} batch={args.batch} dtype={args.dtype}, "
        f"{args.samples} samples x {args.steps} steps", flush=True)
  # Before the steps are built and the reference starts: on an otherwise idle host.
  peak = peaks.run_peak(args.dtype, args.matmul, jax.devices()[:1])
  ours, torch = paired_samples(args)
  threads = len(os.sched_getaffinity(0))
  print(f"jax {jax.__version__}: XLA CPU intra-op threads = {threads} (one per logical CPU), "
        f"params={ours['params'] / 1e6:.2f}M, {kernels_in_use(args)}")
  if torch is not None:
    print(f"torch {torch['version']}: intra-op threads = {torch['threads']}, "
          f"params={torch['params']:.2f}M, matmul {peaks.format_rate(torch['peak'])} "
          f"({peaks.check_against_limit(torch['peak'], args.dtype)})")
  print(f"{peak.describe()} ({peak.check})")
  fpt = ours["flops_per_token"]
  jax_tok = statistics.median(ours["rates"])
  print(f"jax   tokens/s {_spread(ours['rates'])}  mfu={peaks.mfu_field(jax_tok, fpt, peak.flops)}")
  if torch is not None:
    torch_tok = statistics.median(torch["rates"])
    ratios = [j / t for j, t in zip(ours["rates"], torch["rates"])]
    print(f"torch tokens/s {_spread(torch['rates'])}  "
          f"mfu={peaks.mfu_field(torch_tok, fpt, peak.flops)}")
    print(f"jax/torch ratio={jax_tok / torch_tok:.2f} (per-sample min {min(ratios):.2f}, "
          f"max {max(ratios):.2f})")
  else:
    print("torch reference not run (no interpreter with torch and transformers).")
  if mesh_sizes is not None:
    rates = jax_samples(args, mesh_sizes)["rates"]
    sharded = statistics.median(rates)
    print(f"jax sharded over {args.mesh} ({len(jax.devices())} CPU devices on "
          f"{limit.cores} cores): tokens/s {_spread(rates)}  vs unsharded "
          f"{sharded / jax_tok:.2f}")
  print(f"tokens_per_s={jax_tok:.0f} mfu={peaks.mfu_field(jax_tok, fpt, peak.flops)}")


if __name__ == "__main__":
  sys.exit(main())
