"""List the registered seqio Tasks and Mixtures.

  python -m midtrain_jax.data.mixtures --list
  python -m midtrain_jax.data.mixtures --list --mixture=path/to/mix.yaml [--data_dir=DIR]
  python -m midtrain_jax.data.mixtures --list --mixture=dolmino_demo \
      --data.qau.enabled=True [--tokens=2000000]

One line per task (capability, repetition cap, documents and tokens once
prepared, provenance and licence) and per mixture (rates as token fractions);
the registrations themselves are in midtrain_jax/data/mixtures/seqio_tasks.py. With
--mixture, one mixture (a registered one or a mixture file, whose tasks are
then registered too): rate, capability, tokens once prepared, repetition cap
and decontamination of each task. Every key of the config's `data` section is
a `--data.<key>` flag; with `--data.qau.enabled=True` the listing adds each
task's quality buckets: tokens before and after quality-aware upsampling and
the epochs of each bucket (per pass, or at `--tokens` training tokens), under
a header with the quality scorer's held-out accuracy (saved with the scorer in
the prepared folder).
"""
import sys

from absl import flags
from ml_collections import config_flags

from midtrain_jax import cli
from midtrain_jax.data import settings as data_settings
from midtrain_jax.data.mixtures import seqio_tasks
from midtrain_jax.data.reports import listing

_DATA = config_flags.DEFINE_config_dict("data", data_settings.data_config(), lock_config=True)
_LIST = flags.DEFINE_bool("list", False, "Print every task and mixture.")
_MIXTURE = flags.DEFINE_string("mixture", "", "List only this mixture (name or mixture file).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared folder to read token counts from "
                                "(default: the mixture's own folder in the cache).")
_TOKENS = flags.DEFINE_integer("tokens", 0, "Training budget in tokens for the epochs of "
                               "each quality bucket (0: epochs per pass).")


def main(argv):
  del argv
  if not _LIST.value:
    sys.exit("usage: python -m midtrain_jax.data.mixtures --list [--mixture=NAME_OR_FILE]")
  data_cfg = _DATA.value
  if _MIXTURE.value:
    data_settings.check_qau(data_cfg.qau)
    data_cfg.mixture = _MIXTURE.value
    data_cfg.data_dir = _DATA_DIR.value or data_cfg.data_dir
    seqio_tasks.register_all(data_cfg)
  print(listing.listing(_MIXTURE.value, data_cfg.data_dir, data_cfg, _TOKENS.value))


if __name__ == "__main__":
  cli.run(main)
