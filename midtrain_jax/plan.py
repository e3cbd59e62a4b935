"""Plan memory and throughput of a config on a mesh, before spending a chip-hour.

  python -m midtrain_jax.plan --config=configs/anneal.py:size=7b \
      --mesh=data:1,fsdp:256,tensor:1 --chip=v5p --mfu=0.4

Prints per-device state (exact, from the sharding rules), activations per
remat policy, FLOPs per token and step time at the stated MFU
(midtrain_jax/train/plan.py).
"""
import sys

from absl import flags
from ml_collections import config_flags

from midtrain_jax import cli
from midtrain_jax.parallel import sharding
from midtrain_jax.train import plan

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. "
                                          "configs/anneal.py:size=7b.", lock_config=True)
_MESH = flags.DEFINE_string("mesh", None, "Mesh, e.g. data:1,fsdp:256,tensor:1 "
                            "(default: the config's mesh, which must have no -1).")
_CHIP = flags.DEFINE_enum("chip", "v5p", plan.CHIPS, "Device type (cpu: this host).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Assumed model FLOPs utilisation.")


def main(argv):
  del argv
  config = _CONFIG.value
  if _MESH.value:
    mesh_sizes = plan.parse_mesh(_MESH.value)
  else:
    mesh_sizes = {a: int(config.mesh[a]) for a in sharding.MESH_AXES}
    if -1 in mesh_sizes.values():
      sys.exit(f"config.mesh {mesh_sizes} has a -1 axis; pass --mesh=data:N,fsdp:N,tensor:N.")
  result = plan.make_plan(config, mesh_sizes, _CHIP.value, _MFU.value)
  print(plan.format_plan(result, config, _CHIP.value, _MFU.value))


if __name__ == "__main__":
  cli.run(main, required=("config",))
