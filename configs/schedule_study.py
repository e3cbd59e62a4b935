"""Schedule study: WSD vs cosine, decaying to 0 or to peak/10 (tiny scale).

  for v in wsd wsd_tenth cosine cosine_tenth; do
    python -m midtrain_jax.main --config=configs/schedule_study.py:variant=$v \
        --workdir=runs/schedules/$v
  done

Every variant trains the same model on the same data for the same steps; the
warmup is the usual 2000 steps scaled down by the same factor as the run
(2000 / 100k steps -> 2% of `steps`). `notebooks/schedules.ipynb` plots the
LR curves and the final held-out BPB of the runs under runs/schedules/.

Arguments after `:`: variant=wsd|wsd_tenth|cosine|cosine_tenth, steps=N,
mixture=NAME.
"""
from midtrain_jax import config as config_lib

VARIANTS = {
    "wsd": ("wsd", 0.0),
    "wsd_tenth": ("wsd", 0.1),
    "cosine": ("cosine", 0.0),
    "cosine_tenth": ("cosine", 0.1),
}


def get_config(arg=None):
  args = config_lib.parse_arg(arg, variant="wsd", steps=400, mixture="web_only")
  if args.variant not in VARIANTS:
    raise ValueError(f"Unknown variant {args.variant!r}; choose from {sorted(VARIANTS)}.")
  schedule, final_fraction = VARIANTS[args.variant]
  c = config_lib.base_config("tiny")
  c.data.mixture = args.mixture
  c.optim.update(schedule=schedule, lr=3e-3, final_lr_fraction=final_fraction,
                 warmup_steps=max(1, round(0.02 * args.steps)), decay_fraction=0.2)
  c.train.steps = args.steps
  c.eval.update(every_steps=max(1, args.steps // 4), batches=4, mixture="dolmino_demo")
  return config_lib.finalize(c)
