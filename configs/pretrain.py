"""Pretraining with a WSD schedule on web text (the base model an anneal branches from).

  python -m midtrain_jax.main --config=configs/pretrain.py:size=tiny --workdir=runs/base
  python -m midtrain_jax.main --config=configs/pretrain.py:size=7b --workdir=gs://bucket/base \
      --config.mesh.fsdp=-1 --config.mesh.data=1

Arguments after `:`: size=tiny|150m|1b|7b|32b.
"""
from midtrain_jax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, size="tiny")
  c = config_lib.base_config(args.size)
  c.data.mixture = "web_only"
  c.optim.schedule = "wsd"
  c.optim.lr = 3e-3 if args.size == "tiny" else 3e-4
  # Fractions, so a shorter or longer run (--config.train.steps) keeps the shape:
  # 45 of tiny's 300 steps, 2000 of the larger presets' 100k.
  c.optim.warmup_steps = 0
  c.optim.warmup_fraction = 0.15 if args.size == "tiny" else 0.02
  c.optim.decay_fraction = 0.2
  c.train.steps = 300 if args.size == "tiny" else 100_000
  # Checkpoint at the end of the stable phase (step 240 of 300 for tiny): where
  # anneals branch off.
  c.ckpt.every_steps = 60
  if args.size != "tiny":
    c.data.seq_len = 4096
    c.data.batch_size = 512
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "save_dots"
    c.ckpt.every_steps = 1000
  return config_lib.finalize(c)
