"""Evaluate a checkpoint: held-out BPB per capability, benchmark BPB, generative evals.

  python -m midtrain_jax.evaluate --workdir=runs/anneal [--step=N] \
      [--suite=heldout,bpb,gsm8k,humaneval,mbpp] [--base=runs/base]

Prints a summary and writes `workdir/eval/step_<N>.json` plus TensorBoard
scalars under `workdir/eval` (midtrain_jax/evals/suite.py).
"""
import os

from absl import flags

from midtrain_jax import cli
from midtrain_jax.evals import heldout, suite, tables
from midtrain_jax.train import checkpoint

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (with checkpoints/).")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (default: the latest).")
_SUITE = flags.DEFINE_string("suite", "default", f"{sorted(suite.SUITES)} or a comma list "
                             f"of {suite.COMPONENTS}.")
_BASE = flags.DEFINE_string("base", "", "Base checkpoint for the forgetting figure.")
_EVAL_MIXTURE = flags.DEFINE_string("eval_mixture", "", "Mixture whose held-out splits to "
                                    "score (default: eval.mixture, else the run's mixture).")
_BPB_ITEMS = flags.DEFINE_integer("bpb_items", 32, "Items per benchmark for benchmark BPB "
                                  "(0 = all).")
_GEN_ITEMS = flags.DEFINE_integer("gen_items", 8, "Items per generative benchmark.")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")


def main(argv):
  del argv
  path = _WORKDIR.value
  if _STEP.value >= 0:
    path = os.path.join(path, checkpoint.CKPT_SUBDIR, str(_STEP.value))
  model = suite.load_model(path)
  options = suite.EvalOptions(suite=_SUITE.value, bpb_items=_BPB_ITEMS.value,
                              gen_items=_GEN_ITEMS.value, max_batches=_MAX_BATCHES.value,
                              base=_BASE.value)
  data_cfg = heldout.eval_data_config(model.config)
  if _EVAL_MIXTURE.value:
    data_cfg.mixture = _EVAL_MIXTURE.value
  results = suite.evaluate(model, options, data_cfg)
  written = suite.write_results(_WORKDIR.value, results)
  print(tables.format_results(results))
  print(f"wrote {written}")


if __name__ == "__main__":
  cli.run(main, required=("workdir",))
