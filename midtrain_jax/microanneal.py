"""Microanneals: which candidate data source helps, and what does it cost?

  python -m midtrain_jax.microanneal --base=runs/demo/base/checkpoints/200 \
      --tasks=math_synthetic,code_python_stdlib,qa_python_docs --tokens=200000 \
      --workdir=runs/microanneal

A web-only baseline and one `microanneal/<task>` anneal (50% task + 50% web)
per candidate, all from `--base` with the same budget; prints and saves the
table of BPB changes against the baseline (midtrain_jax/workflows/microanneal_study.py).
"""
from absl import flags

from midtrain_jax import cli
from midtrain_jax.evals import suite
from midtrain_jax.workflows import microanneal_study

_BASE = flags.DEFINE_string("base", None, "Base checkpoint (workdir or step directory).")
_TASKS = flags.DEFINE_list("tasks", None, "Candidate tasks (each has a microanneal/<task> mix).")
_TOKENS = flags.DEFINE_integer("tokens", None, "Training tokens per run.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/microanneal", "Folder for the runs and the table.")
_EVAL_MIXTURE = flags.DEFINE_string("eval_mixture", "dolmino_demo",
                                    "Mixture whose held-out splits to score.")
_BASELINE_MIXTURE = flags.DEFINE_string("baseline_mixture", "web_only",
                                        "Mixture of the baseline run.")
_SUITE = flags.DEFINE_string("suite", "default", "Evaluation suite (see midtrain_jax.evaluate).")
_BPB_ITEMS = flags.DEFINE_integer("bpb_items", 16, "Benchmark BPB items per benchmark.")
_GEN_ITEMS = flags.DEFINE_integer("gen_items", 4, "Generative items per benchmark (suite=all).")
_UNSAFE_EXEC = flags.DEFINE_bool(
    "unsafe_exec", False, "Run generated code (suite=all: humaneval, mbpp) even where the "
    "operating-system sandbox is unavailable (README: Generated code).")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")


def main(argv):
  del argv
  options = suite.EvalOptions(suite=_SUITE.value, bpb_items=_BPB_ITEMS.value,
                              gen_items=_GEN_ITEMS.value, max_batches=_MAX_BATCHES.value,
                              unsafe_exec=_UNSAFE_EXEC.value)
  microanneal_study.run(_BASE.value, cli.names(_TASKS.value), _TOKENS.value, _WORKDIR.value,
                        eval_mixture=_EVAL_MIXTURE.value, baseline_mixture=_BASELINE_MIXTURE.value,
                        options=options)


if __name__ == "__main__":
  cli.run(main, required=("base", "tasks", "tokens"))
