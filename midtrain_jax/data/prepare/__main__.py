"""Prepare a mixture: read, decontaminate, tokenise and write ArrayRecord shards.

  python -m midtrain_jax.data.prepare --mixture=dolmino_demo --out=DIR
  python -m midtrain_jax.data.prepare --data.mixture=web_only --data.max_malformed=0 \
      --data.decontam.benchmarks="('gsm8k', 'humaneval')"
  python -m midtrain_jax.data.prepare --mixture=dolmino_demo --out=DIR --runner=beam \
      --beam_options="--runner=FnApiRunner --direct_num_workers=2 \
      --direct_running_mode=multi_processing"

`--runner=beam` runs every stage as one Apache Beam pipeline (Dataflow, Flink
or Spark, or a local runner, per `--beam_options`) and writes the same folder as
the default local runner, also at a URL its workers reach (`--out=gs://...`,
which Dataflow needs).

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
                           "<cache>/prepared/v<format>/<mixture>); a URL such as "
                           "gs://BUCKET/FOLDER with --runner=beam.")
_RUNNER = flags.DEFINE_enum("runner", "local", preparation.RUNNERS, "local (this process) "
                            "or beam (an Apache Beam pipeline); both write the same folder.")
_BEAM_OPTIONS = flags.DEFINE_string("beam_options", "", "Beam pipeline options with "
                                    "--runner=beam, e.g. \"--runner=FnApiRunner "
                                    "--direct_num_workers=2\", or Dataflow's or Flink's.")


def main(argv):
  del argv
  data_cfg = _DATA.value
  if _MIXTURE.value:
    data_cfg.mixture = _MIXTURE.value
  if _BEAM_OPTIONS.value and _RUNNER.value != "beam":
    raise ValueError("--beam_options is for --runner=beam.")
  preparation.prepare(data_cfg, _OUT.value or None, runner=_RUNNER.value,
                      beam_options=_BEAM_OPTIONS.value)


if __name__ == "__main__":
  cli.run(main)
