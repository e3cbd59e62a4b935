"""Compile time of the sharded train step, layers scanned vs unscanned.

  python -m benchmarks.compile_time                    # 7b and 32b presets
  python -m benchmarks.compile_time --sizes=150m,1b --seq=512

Lowers and compiles the real train step (`train.step.jit_train_step`: model,
loss, AdamW, shardings, via the planner's `compile_train_step`) for abstract
inputs on 8 fake CPU devices (mesh data 1, fsdp 8, tensor 1), so nothing of
the model's size is allocated.
Prints per preset and layout: seconds to lower, seconds to compile and the
compiled step's temporaries per device (`train/memory_plan.compile_train_step`, the
planner's `--compile`). Last line: `<size> scanned_compile_s=X unscanned_compile_s=Y`
for the last size.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402

import jax  # noqa: E402

from midtrain_jax import config as config_lib  # noqa: E402
from midtrain_jax.train import memory_plan as plan  # noqa: E402

_MESH = {"data": 1, "fsdp": 8, "tensor": 1}


def compile_step(size: str, scan: bool, seq: int, batch: int) -> plan.Compiled:
  """The planner's compile of the real train step, for one preset and layer layout."""
  c = config_lib.base_config(size)
  c.model.update(scan_layers=scan, compute_dtype="bfloat16", remat="save_dots")
  c.data.update(seq_len=seq, batch_size=batch)
  return plan.compile_train_step(c, _MESH)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="7b,32b")
  p.add_argument("--seq", type=int, default=4096)
  p.add_argument("--batch", type=int, default=8)
  args = p.parse_args()
  print(f"jax {jax.__version__}, {jax.device_count()} fake CPU devices, mesh fsdp 8; "
        f"seq {args.seq}, batch {args.batch}, bf16 compute, remat save_dots", flush=True)
  for size in args.sizes.split(","):
    times = {}
    for scan in (True, False):
      r = compile_step(size, scan, args.seq, args.batch)
      times[scan] = r.compile_s
      layers = config_lib.base_config(size).model.n_layers
      print(f"{size:>5} {layers} layers {'scanned  ' if scan else 'unscanned'}: "
            f"lower {r.lower_s:6.1f} s  compile {r.compile_s:6.1f} s  "
            f"temporaries {r.temp_bytes / 2**30:8.1f} GiB/device", flush=True)
  print(f"{size} scanned_compile_s={times[True]:.1f} unscanned_compile_s={times[False]:.1f}")


if __name__ == "__main__":
  main()
