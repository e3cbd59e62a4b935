"""Prepare a mixture: read, decontaminate, tokenise and write ArrayRecord shards.

  python -m midtrain_jax.data.prepare --mixture=dolmino_demo --out=DIR
  python -m midtrain_jax.data.prepare --data.mixture=web_only --data.max_malformed=0 \
      --data.decontam.benchmarks="('gsm8k', 'humaneval')"

Every key of the config's `data` section is a `--data.<key>` flag. Resumable
and idempotent (midtrain_jax/data/prepare/tasks.py); the folder's files are
described in midtrain_jax/data/layout.py.
"""
from absl import flags
from ml_collections import config_flags

from midtrain_jax import cli
from midtrain_jax.data import settings as data_settings
from midtrain_jax.data.prepare import tasks as preparation

_DATA = config_flags.DEFINE_config_dict("data", data_settings.data_config(), lock_config=True)
_MIXTURE = flags.DEFINE_string("mixture", "", "Shorthand for --data.mixture.")
_OUT = flags.DEFINE_string("out", "", "Output folder (default: data.data_dir or "
                           "<cache>/prepared/v<format>/<mixture>).")


def main(argv):
  del argv
  data_cfg = _DATA.value
  if _MIXTURE.value:
    data_cfg.mixture = _MIXTURE.value
  preparation.prepare(data_cfg, _OUT.value or None)


if __name__ == "__main__":
  cli.run(main)
