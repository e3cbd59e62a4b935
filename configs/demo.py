"""The embedded demo: prepare, pretrain a tiny base, anneal twice, evaluate, report.

  python -m midtrain_jax.main --config=configs/demo.py --workdir=runs/demo

On a fresh machine this prepares the demo corpus (decontaminated against the
eval benchmarks), trains a tiny base with WSD on `web_only`, branches two
anneals off its stable phase (`dolmino_demo` and `web_only`, same budget and
LR decay), evaluates them and prints per-capability BPB, forgetting and the
decontamination summary (about 8 minutes on 2 CPU cores). Re-running reuses
the prepared data and every finished run.

Arguments after `:`: scale=1.0 multiplies every step count (e.g. scale=4 for
a longer, more telling demo).
"""
import ml_collections

from midtrain_jax import config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, scale=1.0)
  c = config_lib.base_config("tiny")
  c.workflow = "demo"
  # Smaller than `tiny` so that three runs fit in minutes on two CPU cores.
  c.model.update(d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, mlp_dim=512,
                 window_pattern=(64, 64, 64, 0))
  c.data.update(mixture="dolmino_demo", seq_len=128, batch_size=16)
  c.data.decontam.benchmarks = "gsm8k,math,humaneval,mbpp,mmlu,arc_easy,arc_challenge"
  # The anneals (the base run's settings are in the `demo` section).
  # The anneals start from the LR the base had where they branch off (demo.py).
  c.optim.update(schedule="anneal", lr=3e-3, warmup_steps=0)
  c.train.update(steps=max(1, int(60 * args.scale)), log_every_steps=10)
  c.ckpt.update(every_steps=c.train.steps, keep=1, async_save=False)
  c.eval.update(every_steps=0, batches=4, mixture="dolmino_demo")

  # Settings only this workflow reads.
  c.demo = ml_collections.ConfigDict()
  c.demo.base_steps = max(10, int(250 * args.scale))  # WSD on web_only.
  c.demo.base_warmup_steps = max(1, int(25 * args.scale))
  c.demo.base_decay_fraction = 0.2
  c.demo.base_lr = 3e-3
  c.demo.bpb_items = 16  # Benchmark BPB items per benchmark.
  c.demo.gen_items = 0  # GSM8K/HumanEval generative items (0: skip).
  c.demo.eval_batches = 0  # Held-out batches per task in the report (0: all).
  return config_lib.finalize(c)
