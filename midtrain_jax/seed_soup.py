"""Seed soup (the integration anneal): K anneals of one mixture, averaged, evaluated.

  python -m midtrain_jax.seed_soup --base=runs/demo/base/checkpoints/200 \
      --mixture=dolmino_demo --tokens=200000 --k=3 --workdir=runs/seed_soup

The K runs differ only in their data order (OLMo 2's final anneals); their
params are averaged and the soup is compared with the mean of its runs
(midtrain_jax/workflows/integration_anneal.py).
"""
from absl import flags

from midtrain_jax import cli
from midtrain_jax.evals import suite
from midtrain_jax.workflows import integration_anneal

_BASE = flags.DEFINE_string("base", None, "Base checkpoint (workdir or step directory).")
_MIXTURE = flags.DEFINE_string("mixture", "dolmino_demo", "Anneal mixture.")
_TOKENS = flags.DEFINE_integer("tokens", None, "Training tokens per run.")
_K = flags.DEFINE_integer("k", 3, "Number of anneals (data-order seeds) to soup.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/seed_soup", "Folder for the runs and the soup.")
_EVAL_MIXTURE = flags.DEFINE_string("eval_mixture", "dolmino_demo",
                                    "Mixture whose held-out splits to score.")
_BPB_ITEMS = flags.DEFINE_integer("bpb_items", 16, "Benchmark BPB items per benchmark.")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")


def main(argv):
  del argv
  options = suite.EvalOptions(bpb_items=_BPB_ITEMS.value, max_batches=_MAX_BATCHES.value)
  integration_anneal.run(_BASE.value, _MIXTURE.value, _TOKENS.value, _K.value, _WORKDIR.value,
                         eval_mixture=_EVAL_MIXTURE.value, options=options)


if __name__ == "__main__":
  cli.run(main, required=("base", "tokens"))
