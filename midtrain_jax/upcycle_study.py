"""Dense vs upcycled vs drop-upcycled continuations of one dense base, side by side.

  python -m midtrain_jax.upcycle_study --base=runs/demo/base/checkpoints/200 \
      --tokens=500000 --workdir=runs/upcycle_study [--experts=8 --top_k=2 --drop_ratio=0.5]

Three runs from `--base` on the same mixture, tokens and LR decay: the dense
model, its plain upcycling (r = 0) and its drop-upcycling (r = --drop_ratio);
prints and saves the table of held-out BPB per capability and router load
(midtrain_jax/workflows/upcycling_comparison.py).
"""
from absl import flags

from midtrain_jax import cli
from midtrain_jax.workflows import upcycling_comparison

_BASE = flags.DEFINE_string("base", None, "Dense base checkpoint (workdir or step directory).")
_TOKENS = flags.DEFINE_integer("tokens", None, "Training tokens per run.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/upcycle_study", "Folder for the runs and table.")
_EXPERTS = flags.DEFINE_integer("experts", 8, "Experts per MoE layer.")
_TOP_K = flags.DEFINE_integer("top_k", 2, "Experts per token.")
_DROP = flags.DEFINE_float("drop_ratio", 0.5, "Drop ratio r of the drop-upcycled run.")
_MIXTURE = flags.DEFINE_string("mixture", "dolmino_demo", "Mixture the runs continue on.")
_SEED = flags.DEFINE_integer("seed", 0, "Drop-upcycling seed.")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")


def main(argv):
  del argv
  upcycling_comparison.run(_BASE.value, _WORKDIR.value, tokens=_TOKENS.value,
                           experts=_EXPERTS.value, top_k=_TOP_K.value, drop_ratio=_DROP.value,
                           mixture=_MIXTURE.value, seed=_SEED.value,
                           max_batches=_MAX_BATCHES.value)


if __name__ == "__main__":
  cli.run(main, required=("base", "tokens"))
