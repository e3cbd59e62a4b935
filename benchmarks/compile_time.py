"""Compile time of the sharded train step, layers scanned vs unscanned.

  python -m benchmarks.compile_time                    # 7b and 32b presets
  python -m benchmarks.compile_time --sizes=150m,1b --seq=512

Lowers and compiles the real train step (`train.step.jit_train_step`: model,
loss, AdamW, shardings) for abstract inputs on 8 fake CPU devices (mesh
data 1, fsdp 8, tensor 1), so nothing of the model's size is allocated.
Prints per preset and layout: seconds to lower, seconds to compile and the
HLO text size. Last line: `<size> scanned_compile_s=X unscanned_compile_s=Y`
for the last size.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from midtrain_jax import config as config_lib  # noqa: E402
from midtrain_jax.parallel import sharding  # noqa: E402
from midtrain_jax.train import optim  # noqa: E402
from midtrain_jax.train import step as ts  # noqa: E402


def compile_step(size: str, scan: bool, seq: int, batch: int) -> dict:
  c = config_lib.base_config(size)
  c.model.update(scan_layers=scan, compute_dtype="bfloat16", remat="save_dots")
  cfg = config_lib.model_config(c.model)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
  schedule = optim.make_schedule(c.optim, 1000)
  tx = optim.make_optimizer(c.optim, schedule)
  graphdef, abstract, axes = ts.abstract_model(cfg)
  shardings = ts.state_shardings(tx, abstract, ts.param_shardings(abstract, axes, mesh), mesh)
  abstract_state = jax.eval_shape(lambda p: ts.TrainState(
      step=jax.numpy.zeros((), jax.numpy.int32), params=p, opt_state=tx.init(p)), abstract)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       abstract_state, shardings)
  batch_sharding = sharding.batch_sharding(mesh)
  inputs = {k: jax.ShapeDtypeStruct((batch, seq), jax.numpy.int32, sharding=batch_sharding)
            for k in ts.MODEL_INPUTS}
  step = ts.jit_train_step(graphdef, tx, schedule, 0.0, mesh, shardings)
  with jax.set_mesh(mesh):
    start = time.perf_counter()
    lowered = step.__wrapped__.lower(state, inputs)
    lowered_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - start
  return dict(lower_s=lowered_s, compile_s=compile_s, hlo_mb=len(lowered.as_text()) / 1e6,
              layers=cfg.n_layers)


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
      times[scan] = r["compile_s"]
      print(f"{size:>5} {r['layers']} layers {'scanned  ' if scan else 'unscanned'}: "
            f"lower {r['lower_s']:6.1f} s  compile {r['compile_s']:6.1f} s  "
            f"HLO {r['hlo_mb']:6.2f} MB", flush=True)
  print(f"{size} scanned_compile_s={times[True]:.1f} unscanned_compile_s={times[False]:.1f}")


if __name__ == "__main__":
  main()
