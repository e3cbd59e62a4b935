"""Midtraining anneal: branch off a base checkpoint and decay the LR linearly to 0
on a capability-targeted mixture (OLMo 2/3 Dolmino recipe).

  python -m midtrain_jax.main --config=configs/anneal.py:size=tiny --workdir=runs/anneal \
      --config.train.init_from=runs/base
  python -m midtrain_jax.main --config=configs/anneal.py:size=7b --workdir=gs://bucket/anneal \
      --config.train.init_from=gs://bucket/base --config.optim.anneal_start=from_checkpoint

Without arguments (`size=demo`) this runs the embedded demo, not a plain anneal, a whole midtraining
study in minutes on a laptop CPU: prepare the demo corpus (decontaminated),
pretrain a tiny base with WSD on web_only, anneal it on dolmino_demo and on
web_only for the same budget, evaluate both and print a report
(midtrain_jax/workflows/demo.py). `scale=4` makes every run 4x longer.

  python -m midtrain_jax.main --config=configs/anneal.py --workdir=runs/demo

An imported model (`python -m midtrain_jax.convert import --from=... --out=DIR`)
or any run directory anneals with `init=DIR`: the model section and the
tokenizer come from DIR (the mixture is prepared with that tokenizer), the LR
decays linearly to zero from `optim.lr`:

  python -m midtrain_jax.main --config=configs/anneal.py:init=runs/smollm2 --workdir=runs/a

Arguments after `:`: size=demo|tiny|tiny_moe|150m|1b|7b|32b|olmoe_1b_7b, scale= (demo
only), init=DIR.
"""
import os

from midtrain_jax import config as config_lib
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows.demo_config import demo_config


def _from_run(init: str):
  """An anneal of the model saved in `init`, with its own tokenizer."""
  base = checkpoint.load_config(init)
  c = config_lib.base_config(config_lib.CUSTOM_SIZE)
  c.model.update(base.model)
  c.data.update(mixture="dolmino_demo", tokenizer=base.data.tokenizer, seq_len=256,
                batch_size=16)
  c.data.decontam.benchmarks = c.eval.benchmarks
  c.optim.update(schedule="anneal", lr=3e-4, warmup_steps=0, weight_decay=0.1)
  # Imported models carry no optimiser state (their config says so).
  c.train.update(init_from=os.path.abspath(init), init_optimizer=base.train.init_optimizer,
                 steps=200, z_loss=1e-5)
  c.ckpt.every_steps = 100
  return config_lib.finalize(c)


def get_config(arg=None):
  args = config_lib.parse_arg(arg, size="demo", scale=1.0, init="")
  if args.init:
    return _from_run(args.init)
  if args.size == "demo":
    return demo_config(args.scale)
  c = config_lib.base_config(args.size)
  c.data.mixture = "dolmino_demo"
  c.optim.schedule = "anneal"  # Linear to zero, no warmup.
  small = args.size in ("tiny", "tiny_moe")
  c.optim.lr = 2e-3 if small else 2.07e-4  # OLMo 3 7B midtraining peak.
  c.optim.warmup_steps = 0
  c.optim.weight_decay = 0.1
  c.optim.decay_embeddings = False
  c.train.z_loss = 1e-5
  c.train.steps = 200 if small else 12_000
  if not small:
    # OLMo 3 7B midtraining: seq 8192, 2^21 tokens per batch.
    c.data.seq_len = 8192
    c.data.batch_size = 256
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "save_dots"
    c.ckpt.every_steps = 1000
  return config_lib.finalize(c)
