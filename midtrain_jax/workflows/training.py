"""One training run as the main command runs it: data prepared, then trained and evaluated.

The loader only loads and the loop imports no evaluation; this is where the
two are wired: the run's mixture (and its eval mixture) are prepared when
missing (`data.prepare_if_missing`), then `train.loop.run` trains with the
evaluation hook (held-out BPB and `eval.downstream` accuracy).
"""
import ml_collections

from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.evals import heldout, in_training
from midtrain_jax.train import loop


def prepare_data(config: ml_collections.ConfigDict) -> None:
  """Prepares what the run trains on and what it is evaluated on, unless prepared."""
  preparation.ensure_prepared(config.data)
  if config.eval.batches and config.eval.mixture not in ("", config.data.mixture):
    preparation.ensure_prepared(heldout.eval_data_config(config))


def run(config: ml_collections.ConfigDict, workdir: str) -> loop.RunResult:
  """Prepares the run's data when missing, then trains (resuming), evaluating held-out BPB
  and `eval.downstream` tasks (`in_training.training_hook`)."""
  prepare_data(config)
  return loop.run(config, workdir, evaluation=in_training.training_hook)
