"""Entry point: `python -m midtrain_jax.main --config=configs/anneal.py --workdir=DIR`.

Override any config value with `--config.section.key=value`, e.g.
`--config.train.steps=500 --config.optim.lr=1e-3`. `configs/anneal.py`
without arguments is the embedded demo (`config.workflow == "demo"`),
`configs/sft.py` a supervised fine-tuning probe (`"sft"`); every other config
is one training run. `--help_config` lists every config key with
its type, default, allowed values and help.

Exit status: 0 when the run finished, 75 when a SIGTERM (or the multi-host
preemption sync point) stopped it after checkpointing the step in flight
(`train/preemption.py`): run the same command again to resume.
"""
from absl import flags
from ml_collections import config_flags

from midtrain_jax import cli
from midtrain_jax import config as config_lib
from midtrain_jax.parallel import multihost
from midtrain_jax.workflows import demo, sft, training

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/anneal.py:size=tiny; override keys with "
    "--config.section.key=value (--help_config lists them).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/anneal",
                               "Directory for checkpoints, logs and config.json.")
# Multi-process runs; left unset, SLURM or TPU pods are detected (parallel/multihost.py).
_COORDINATOR = flags.DEFINE_string("coordinator", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  del argv
  multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _CONFIG.value.workflow == "demo":
    demo.run(_CONFIG.value, _WORKDIR.value)
  elif _CONFIG.value.workflow == "sft":
    sft.run(_CONFIG.value, _WORKDIR.value)
  else:
    training.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  cli.run(main, required=("config",), settings_flag=(config_lib.ROOT, "config"))
