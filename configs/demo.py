"""The embedded demo: prepare, pretrain a tiny base, anneal twice, evaluate, report.

  python -m midtrain_jax.main --config=configs/demo.py --workdir=runs/demo

On a fresh machine this prepares the demo corpus (decontaminated against the
eval benchmarks), trains a tiny base with WSD on `web_only`, branches two
anneals off its stable phase (`dolmino_demo` and `web_only`, same budget and
LR decay), evaluates them and prints per-capability BPB, forgetting and the
decontamination summary (about 3 minutes on 2 CPU cores). Re-running reuses
the prepared data and every finished run.

Arguments after `:`: scale=1.0 multiplies every step count (e.g. scale=4 for
a longer, more telling demo).
"""
from midtrain_jax import config as config_lib
from midtrain_jax.workflows.demo_config import demo_config


def get_config(arg=None):
  args = config_lib.parse_arg(arg, scale=1.0)
  return demo_config(args.scale)
