"""Timing x mixture-weight grid: when to introduce target data, and how much.

  for start in 0.0 0.5 0.8; do for weight in 0.1 0.3 0.5; do
    python -m midtrain_jax.main \
        --config=configs/timing_weight.py:start=$start,weight=$weight \
        --workdir=runs/timing_weight/start${start}_w${weight}
  done; done

Web-only until `start` x steps, then `weight` of the target task (the rest
web, in the web tasks' own proportions) through `data.weight_stages`, with a
WSD schedule. Early introduction is expected to tolerate a higher weight than
late introduction; `notebooks/schedules.ipynb` draws the heat map of the
target capability's final BPB and of web BPB (forgetting).

Arguments after `:`: start (fraction of the run), weight, target=TASK, steps=N.
"""
from midtrain_jax import config as config_lib
from midtrain_jax.data.mixtures import catalog


def get_config(arg=None):
  args = config_lib.parse_arg(arg, start=0.5, weight=0.3, target="math_synthetic", steps=400)
  if not 0.0 <= args.start < 1.0 or not 0.0 < args.weight < 1.0:
    raise ValueError(f"start={args.start} must be in [0, 1) and weight={args.weight} in (0, 1).")
  target = catalog.get_task(args.target)
  web = catalog.get_mixture("web_only").rates
  total = sum(web.values())
  c = config_lib.base_config("tiny")
  c.data.mixture = "dolmino_demo"  # Holds the target and the web tasks.
  later = {name: (1.0 - args.weight) * rate / total for name, rate in web.items()}
  later[target.name] = args.weight
  start_step = int(round(args.start * args.steps))
  stages = [(0, {name: rate / total for name, rate in web.items()})] if start_step else []
  c.data.weight_stages = tuple(stages + [(start_step, later)])
  c.optim.update(schedule="wsd", lr=3e-3, warmup_steps=max(1, round(0.02 * args.steps)),
                 decay_fraction=0.2)
  c.train.steps = args.steps
  c.eval.update(every_steps=0, batches=4, mixture="dolmino_demo")
  return config_lib.finalize(c)
