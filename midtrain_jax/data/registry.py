"""List the registered seqio Tasks and Mixtures.

  python -m midtrain_jax.data.registry --list
  python -m midtrain_jax.data.registry --list --mixture=path/to/mix.yaml [--data_dir=DIR]

One line per task (capability, repetition cap, documents and tokens once
prepared, provenance and licence) and per mixture (rates as token fractions);
the registrations themselves are in midtrain_jax/data/seqio_tasks.py. With
--mixture, one mixture (a registered one or a mixture file, whose tasks are
then registered too): rate, capability, tokens once prepared, repetition cap
and decontamination of each task.
"""
import sys

from absl import flags

from midtrain_jax import cli
from midtrain_jax import config as config_lib
from midtrain_jax.data import seqio_tasks

_LIST = flags.DEFINE_bool("list", False, "Print every task and mixture.")
_MIXTURE = flags.DEFINE_string("mixture", "", "List only this mixture (name or mixture file).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared folder to read token counts from "
                                "(default: the mixture's own folder in the cache).")


def main(argv):
  del argv
  if not _LIST.value:
    sys.exit("usage: python -m midtrain_jax.data.registry --list [--mixture=NAME_OR_FILE]")
  if _MIXTURE.value:
    data_cfg = config_lib.data_config()
    data_cfg.mixture, data_cfg.data_dir = _MIXTURE.value, _DATA_DIR.value
    seqio_tasks.register_all(data_cfg)
  print(seqio_tasks.listing(_MIXTURE.value, _DATA_DIR.value))


if __name__ == "__main__":
  cli.run(main)
