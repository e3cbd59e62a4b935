"""Long-context extension (OLMo 3 "Longmino" stage): YaRN RoPE scaling on a
midtrained checkpoint, trained on longer packed sequences.

  python -m midtrain_jax.main --config=configs/long_context.py --workdir=runs/long \
      --config.train.init_from=runs/anneal
  python -m midtrain_jax.main --config=configs/long_context.py:size=7b \
      --workdir=gs://bucket/long --config.train.init_from=gs://bucket/anneal \
      --config.model.attention=cudnn   # on GPU hosts; 7b defaults to splash (TPU)

YaRN (factor 8, beta_fast 32, beta_slow 1, original length 8192) rescales the
RoPE frequencies of the full-attention layers only; sliding-window layers never
see distances beyond their window and keep plain RoPE. Documents are masked
from each other (segment ids) and packed best-fit-decreasing: the longest
pieces are placed first, so long documents stay whole in their rows, and a
larger packing window gives them more short documents to fill the gaps with.

Arguments after `:`: size=tiny|150m|1b|7b|32b (tiny runs on a CPU in seconds,
extending the tiny models' 256 tokens to 1024).
"""
from midtrain_jax import config as config_lib


def get_config(arg=None):
  args = config_lib.parse_arg(arg, size="tiny")
  tiny = args.size == "tiny"
  c = config_lib.base_config(args.size)
  c.model.yarn_factor = 8.0
  c.model.yarn_beta_fast = 32.0
  c.model.yarn_beta_slow = 1.0
  c.model.yarn_original_max_len = 256 if tiny else 8192
  c.model.yarn_full_layers_only = True
  c.data.mixture = "dolmino_demo"
  c.data.seq_len = 1024 if tiny else 65_536
  # 2^21 tokens per step at 64K; 32 rows shard over at most 32 devices, so
  # large slices add tensor parallelism (e.g. fsdp 32 x tensor 8 on 256 chips).
  c.data.batch_size = 8 if tiny else 32
  c.data.packing_window_rows = 256
  c.optim.schedule = "anneal"  # Linear to zero from the midtrained model.
  c.optim.lr = 1e-3 if tiny else 2.07e-4
  c.optim.warmup_steps = 0
  c.train.init_from = ""  # Set to the midtrained checkpoint (workdir or step dir).
  c.train.init_optimizer = False  # Fresh moments: the positional geometry changed.
  c.train.steps = 50 if tiny else 5_000
  if not tiny:
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    # A fused kernel is a must at 64K: xla would hold T x T attention weights.
    # Splash runs per shard (shard_map): each chip attends over its own batch
    # rows and its n_heads / tensor query heads with their KV heads (a
    # tensor size that does not divide n_kv_heads repeats KV heads to fit).
    c.model.attention = "splash"
    c.ckpt.every_steps = 500
    c.mesh.fsdp = -1
    c.mesh.data = 1
    c.mesh.tensor = 8
  return config_lib.finalize(c)
