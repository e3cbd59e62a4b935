"""List the registered seqio Tasks and Mixtures.

  python -m midtrain_jax.data.registry --list

One line per task (capability, repetition cap, documents and tokens once
prepared, provenance and licence) and per mixture (rates as token fractions);
the registrations themselves are in midtrain_jax/data/seqio_tasks.py.
"""
import sys

from absl import flags

from midtrain_jax import cli
from midtrain_jax.data import seqio_tasks

_LIST = flags.DEFINE_bool("list", False, "Print every task and mixture.")


def main(argv):
  del argv
  if not _LIST.value:
    sys.exit("usage: python -m midtrain_jax.data.registry --list")
  print(seqio_tasks.listing())


if __name__ == "__main__":
  cli.run(main)
