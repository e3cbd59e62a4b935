"""Entry point: `python -m midtrain_jax.main --config=configs/anneal.py --workdir=DIR`.

Override any config value with `--config.section.key=value`, e.g.
`--config.train.steps=500 --config.optim.lr=1e-3`.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from midtrain_jax import distributed, train  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/anneal.py:size=tiny.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/anneal", "Directory for checkpoints, logs and config.json.")
# Multi-process runs; left unset, SLURM or TPU pods are detected (distributed.py).
_COORDINATOR = flags.DEFINE_string("coordinator", None, "HOST:PORT of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  del argv
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  logging.info("workdir %s", _WORKDIR.value)
  if _CONFIG.value.workflow == "demo":
    from midtrain_jax.experiments import demo  # pylint: disable=g-import-not-at-top
    demo.run(_CONFIG.value, _WORKDIR.value)
  else:
    train.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
