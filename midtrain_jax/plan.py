"""Plan memory and throughput of a config on a mesh, before spending a chip-hour.

  python -m midtrain_jax.plan --config=configs/anneal.py:size=7b \
      --mesh=data:1,fsdp:256,tensor:1 --chip=v5p --mfu=0.4
  python -m midtrain_jax.plan --config=configs/anneal.py:size=tiny \
      --mesh=data:1,fsdp:8,tensor:1 --compile

Prints per-device state (exact, from the sharding rules), activations per
remat policy, FLOPs per token and step time at the stated MFU
(midtrain_jax/train/memory_plan.py). With --compile it also lowers and compiles the
real train step for the mesh on as many fake CPU devices (nothing of the
model's size is allocated) and prints XLA's memory analysis per device next
to the plan's figures, and the compile time: seconds for small models, minutes
for billions of parameters.
"""
import sys

import jax
from absl import flags
from ml_collections import config_flags

from midtrain_jax import cli
from midtrain_jax.parallel import sharding
from midtrain_jax.train import memory_plan as plan

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. "
                                          "configs/anneal.py:size=7b.", lock_config=True)
_MESH = flags.DEFINE_string("mesh", None, "Mesh, e.g. data:1,fsdp:256,tensor:1 "
                            "(default: the config's mesh, which must have no -1).")
_CHIP = flags.DEFINE_enum("chip", "v5p", plan.CHIPS, "Device type (cpu: this host, at "
                          "the peak its training logs measure).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Assumed model FLOPs utilisation.")
_COMPILE = flags.DEFINE_bool(
    "compile", False, "Also compile the real train step on one fake CPU device per mesh "
    "device and print XLA's memory analysis next to the estimate.")


def _use_fake_cpu_devices(count: int) -> None:
  """Makes JAX start `count` CPU devices, whatever accelerators the host has.

  JAX creates its backends at the first computation, not at import, and reads
  these two options then: `jax_num_cpu_devices` is what
  --xla_force_host_platform_device_count sets, as a JAX option. Nothing has
  computed yet when `main` starts, so setting them here is early enough.
  """
  try:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError as e:  # Only if something computed before main.
    sys.exit(f"--compile: JAX started before the fake devices could be set up ({e}).")


def main(argv):
  del argv
  config = _CONFIG.value
  if _MESH.value:
    mesh_sizes = plan.parse_mesh(_MESH.value)
  else:
    mesh_sizes = {a: int(config.mesh[a]) for a in sharding.MESH_AXES}
    if -1 in mesh_sizes.values():
      sys.exit(f"config.mesh {mesh_sizes} has a -1 axis; pass --mesh=data:N,fsdp:N,tensor:N.")
  if _COMPILE.value:
    _use_fake_cpu_devices(mesh_sizes["data"] * mesh_sizes["fsdp"] * mesh_sizes["tensor"])
  result = plan.make_plan(config, mesh_sizes, _CHIP.value, _MFU.value)
  print(plan.format_plan(result, config, _CHIP.value, _MFU.value), flush=True)
  if _COMPILE.value:
    compiled = plan.compile_train_step(config, mesh_sizes)
    print(plan.format_compiled(compiled, result, config))


if __name__ == "__main__":
  cli.run(main, required=("config",))
