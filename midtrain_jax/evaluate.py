"""Evaluate a checkpoint: held-out BPB per capability, benchmark BPB, generative evals.

  python -m midtrain_jax.evaluate --workdir=runs/anneal [--step=N] \
      [--suite=heldout,bpb,gsm8k,humaneval,mbpp] [--base=runs/base] \
      [--bpb_items=32] [--gen_items=8] [--sample_seed=0] [--compare=runs/other]

Benchmarks are scored on a seeded sample stratified over their subjects (at
least one item per subject; 0 items = the whole benchmark): runs evaluated
with the same sizes and seed are scored on the same items. Prints a summary
(each benchmark score as `value ± 95% interval` with its item count, and its
clean / contaminated split where the training data recorded one) and writes
`workdir/eval/step_<N>.json` plus TensorBoard scalars under `workdir/eval`
(midtrain_jax/evals/suite.py). `--compare` also prints the change of every
benchmark against another run's latest saved evaluation, with its paired 95%
interval over the items both scored (`*` = it excludes zero).
"""
import os

from absl import flags

from midtrain_jax import cli
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.evals import heldout, suite, tables
from midtrain_jax.train import checkpoint

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (with checkpoints/).")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (default: the latest).")
_SUITE = flags.DEFINE_string("suite", "default", f"{sorted(suite.SUITES)} or a comma list "
                             f"of {suite.COMPONENTS}.")
_BASE = flags.DEFINE_string("base", "", "Base checkpoint for the forgetting figure.")
_EVAL_MIXTURE = flags.DEFINE_string("eval_mixture", "", "Mixture whose held-out splits to "
                                    "score (default: eval.mixture, else the run's mixture).")
_BPB_ITEMS = flags.DEFINE_integer("bpb_items", 32, "Items per benchmark for benchmark BPB, "
                                  "at least one per subject (0 = all).")
_GEN_ITEMS = flags.DEFINE_integer("gen_items", 8, "Items per generative benchmark (0 = all).")
_SAMPLE_SEED = flags.DEFINE_integer("sample_seed", 0, "Which stratified sample of items; runs "
                                    "compared must share it.")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")
_COMPARE = flags.DEFINE_string("compare", "", "Another run's workdir: print paired benchmark "
                               "deltas against its latest saved evaluation.")


def main(argv):
  del argv
  path = _WORKDIR.value
  if _STEP.value >= 0:
    path = os.path.join(path, checkpoint.CKPT_SUBDIR, str(_STEP.value))
  model = suite.load_model(path)
  options = suite.EvalOptions(suite=_SUITE.value, bpb_items=_BPB_ITEMS.value,
                              gen_items=_GEN_ITEMS.value, seed=_SAMPLE_SEED.value,
                              max_batches=_MAX_BATCHES.value, base=_BASE.value)
  data_cfg = heldout.eval_data_config(model.config)
  if _EVAL_MIXTURE.value:
    data_cfg.mixture = _EVAL_MIXTURE.value
  if "heldout" in suite.parse_suite(options.suite) or options.base:
    preparation.ensure_prepared(data_cfg)  # The loader only reads prepared data.
  results = suite.evaluate(model, options, data_cfg)
  written = suite.write_results(_WORKDIR.value, results)
  print(tables.format_results(results))
  if _COMPARE.value:
    other = suite.read_results(_COMPARE.value)
    if other is None:
      raise FileNotFoundError(f"--compare={_COMPARE.value}: no saved evaluation "
                              f"({suite.results_path(_COMPARE.value, '*')}).")
    print(f"change vs {_COMPARE.value} (step {other['step']}):")
    print(tables.format_comparison({"this": results, "other": other}, baseline="other"))
  print(f"wrote {written}")


if __name__ == "__main__":
  cli.run(main, required=("workdir",))
