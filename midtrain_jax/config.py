"""Config composition, validation and freezing.

Configs are ml_collections ConfigDicts built by `configs/*.py` from the
sections declared here (`model`, `data`, `optim`, `train`, `ckpt`, `eval`,
`mesh`), every key with its default. They are locked, so `--config.a.b=value`
on an unknown key fails naming the key, and a value of the wrong type fails
naming the key too. Code past the boundary never sees a ConfigDict:
`model_config()` turns the `model` section into a frozen `ModelConfig`.

Mixture weights are plain `{task: weight}` dicts and benchmark lists plain
tuples, never strings to parse:

* `data.weights` replaces the registered rates of the mixture for the whole
  run, e.g. `--config.data.weights="{'web_c4': 0.7, 'math_synthetic': 0.3}"`.
* `data.weight_stages` changes the weights during training: a tuple of
  `(start_step, {task: weight})` pairs, sorted by start step, the first one
  starting at step 0. Tasks of the mixture missing from a stage get weight 0
  in that stage, so "introduce the math data at step 2000 with weight 0.3"
  reads `((0, {'web_c4': 1.0}), (2000, {'web_c4': 0.7, 'math_synthetic':
  0.3}))`. When it is set, `data.weights` must stay empty.
* `data.decontam.benchmarks` and `eval.benchmarks` are tuples of benchmark
  names: `--config.eval.benchmarks="('gsm8k', 'humaneval')"`.
"""
import dataclasses
import json
import math
from typing import Any

import ml_collections

from midtrain_jax.benchmark_data import items
from midtrain_jax.dedup import params as dedup_params
from midtrain_jax.model.config import PRESETS, ModelConfig


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a `key=value,key=value` config argument (big_vision style).

  Args:
    arg: the string after `:` in `--config=configs/x.py:size=7b`, or None.
    **defaults: every accepted key with its default; the type of the default
      decides how the value is parsed.

  Returns:
    A ConfigDict with all keys of `defaults`.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"Unknown config argument {item!r}; expected one of "
                       f"{sorted(defaults)} as key=value.")
    kind = type(defaults[key])
    parsed[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
  return parsed


# A model whose shape keys come from elsewhere (an imported checkpoint's
# config.json); its section starts from tiny's values.
CUSTOM_SIZE = "custom"


# Presets at least this deep scan their layers by default.
SCAN_MIN_LAYERS = 8


def model_section(size: str) -> ml_collections.ConfigDict:
  """The `model` section for a preset size (or "custom"), every key declared."""
  if size not in PRESETS and size != CUSTOM_SIZE:
    raise ValueError(f"Unknown model size {size!r}; choose from {sorted(PRESETS)}.")
  c = ml_collections.ConfigDict()
  c.size = size
  c.vocab_size = 0
  c.d_model = 0
  c.n_layers = 0
  c.n_heads = 0
  c.n_kv_heads = 0
  c.head_dim = 0  # 0: d_model // n_heads.
  c.mlp_dim = 0
  c.window_pattern = (0,)  # Window sizes repeated through depth; 0 = full.
  c.last_layer_full = True
  c.rope_theta = 0.0
  # Llama 3 RoPE scaling (HF rope_type "llama3"); factor 1.0 disables it.
  c.llama3_factor = 1.0
  c.llama3_low_freq_factor = 1.0
  c.llama3_high_freq_factor = 4.0
  c.llama3_original_max_len = 8192
  # YaRN context extension; factor 1.0 disables it.
  c.yarn_factor = 1.0
  c.yarn_beta_fast = 32.0
  c.yarn_beta_slow = 1.0
  c.yarn_original_max_len = 8192
  c.yarn_attention_factor = 0.0  # 0: 0.1 * ln(yarn_factor) + 1.
  c.yarn_full_layers_only = True
  # "projection" (over the whole q / k projection: OLMo 2/3, every preset),
  # "head" (per head: Qwen3) or "none" (Llama, Qwen2).
  c.qk_norm = "projection"
  c.qkv_bias = False  # Qwen2-style biases on the q/k/v projections.
  c.norm = "reordered"  # "reordered" (OLMo 2/3: norm after sublayer) | "pre" (Llama).
  c.norm_eps = 1e-6
  c.tie_embeddings = False
  c.init_std = 0.02
  c.param_dtype = "float32"
  c.compute_dtype = "float32"  # "bfloat16" on accelerators.
  c.remat = "none"  # "none" | "full" | "save_dots".
  # Kernels (kernels/select.py): "auto" picks the best that applies; a requested
  # one that cannot run falls back to "xla" with a warning.
  c.attention = "auto"  # "auto" | "xla" | "cudnn" | "splash" | "cpu_native" | "reference".
  c.matmul = "auto"  # "auto" | "xla" | "cpu_native".
  c.moe = moe_section()
  c.update(PRESETS.get(size, PRESETS["tiny"]))
  # Scan over groups of len(window_pattern) layers: compile time and program
  # size stop growing with depth (model/layer_stack.py). On for deep presets.
  c.scan_layers = size != CUSTOM_SIZE and c.n_layers >= SCAN_MIN_LAYERS
  return c


def moe_section() -> ml_collections.ConfigDict:
  """`model.moe`: mixture-of-experts feed-forward layers (model/moe.py); 0 experts = dense."""
  c = ml_collections.ConfigDict()
  c.experts = 0
  c.top_k = 2  # Experts per token; their gates are renormalised over the k chosen.
  c.every = 1  # Layer i is MoE when (i + 1) % every == 0 (2: every second layer).
  c.mlp_dim = 0  # Each expert's hidden width; 0: model.mlp_dim.
  c.shared_experts = 0  # Always-on experts (a dense SwiGLU of shared_experts * mlp_dim).
  # "dropless" (grouped matmuls, every assignment computed) or "capacity"
  # (fixed per-expert buffers of capacity_factor * tokens * top_k / experts).
  c.dispatch = "dropless"
  c.capacity_factor = 1.25
  c.load_balance_loss = 0.01  # Weight of the load-balancing loss (Switch / OLMoE).
  c.router_z_loss = 0.001  # Weight of the router z-loss (ST-MoE).
  return c


def data_config() -> ml_collections.ConfigDict:
  """The `data` section: every key of the data pipeline with its default."""
  c = ml_collections.ConfigDict()
  # Which registered seqio Mixture to train on (`python -m
  # midtrain_jax.data.mixtures --list` shows them all).
  c.mixture = "dolmino_demo"
  c.seq_len = 256
  # Global batch size in rows; each process loads batch_size // process_count.
  c.batch_size = 16
  # Where prepared shards live; "" means <cache>/prepared/v<format>/<mixture>, with
  # <cache> = $MIDTRAIN_JAX_CACHE or ~/.cache/midtrain_jax.
  c.data_dir = ""
  # "demo_spm" (SentencePiece trained on the demo corpus, vocab 8192) or the
  # path of a Hugging Face `tokenizers` JSON file.
  c.tokenizer = "demo_spm"
  # Run prepare automatically when shards are missing (with progress output).
  c.prepare_if_missing = True
  # Python modules imported before preparing, e.g. ("my_pkg.my_tasks",): they
  # register seqio Tasks/Mixtures that a mixture file's `seqio_task` names
  # (README "Your own data"). Only prepare imports them (and TensorFlow).
  c.registry_modules = ()

  # Mixture weights: see the module docstring.
  c.weights = ml_collections.ConfigDict()
  c.weight_stages = ()
  # Caps how often a task's documents may repeat; 0 keeps each task's own cap.
  c.max_epochs = 0

  # Quality-aware upsampling (data/qau.py): a quality scorer trained on the
  # prepared folder's tokenizer (data/quality.py) grades every training
  # document; within each task the documents fall into buckets by score
  # quantile, and a pass over the task holds each document `factors[bucket]`
  # times. The mixture weights still fix each task's token share (the budget);
  # the repetition cap counts passes over this upsampled task.
  c.qau = ml_collections.ConfigDict()
  c.qau.enabled = False
  # Bucket edges as score quantiles within each task, strictly increasing in
  # (0, 1); (0.5, 0.8, 0.95) makes four buckets: bottom half, 50-80%, 80-95%, top 5%.
  c.qau.quantiles = (0.5, 0.8, 0.95)
  # Copies per pass of a document in each bucket (len(quantiles) + 1 numbers
  # > 0; fractions are spread over passes). OLMo 3-like: low quality ~1.2x, top 7x.
  c.qau.factors = (1.2, 2.0, 4.0, 7.0)
  # Per-task factors replacing `factors`, e.g. {'web_c4': (1.0, 1.0, 2.0, 4.0)}.
  c.qau.task_factors = ml_collections.ConfigDict()
  # The scorer's training text: "high quality" reference tasks (instruction
  # answers as DCLM's positives, encyclopedia text as GPT-3's) against random
  # web. Any task of the catalog or of a loaded mixture file can be named.
  c.qau.positive_tasks = ("instruction_alpaca", "web_wikipedia")
  c.qau.negative_tasks = ("web_c4", "web_openwebtext")
  # Documents read per scorer task (the first ones of its files).
  c.qau.scorer_docs = 2000

  # Fill-in-the-middle on code tasks: fraction of documents transformed, and
  # the fraction of those using the SPM layout (the rest use PSM).
  c.fim_rate = 0.5
  c.fim_spm_rate = 0.5

  # Data order: combined with the run seed, so soups of anneal runs can vary
  # the data order while keeping the model initialisation.
  c.shuffle_seed = 0
  # Best-fit packing works on windows of this many rows; bigger windows pack
  # tighter (padding ~ 0.5 / window_rows) but delay weight-stage switches.
  c.packing_window_rows = 64
  # Batches a background thread keeps ready (0 = load in the training thread).
  # Mixing and packing are one ordered stream, so there are no worker
  # processes; one core packs millions of tokens/s.
  c.num_workers = 0
  # Logical loader streams. Each packs batch_size / loader_shards rows from
  # its own 1/loader_shards of every task's documents; the global batch is
  # their rows in order, so any process count that divides loader_shards sees
  # the same batches (and can resume another's checkpoint exactly).
  # 0 = one stream per process.
  c.loader_shards = 0

  # Prepare: per-task held-out split used for bits-per-byte evaluation.
  c.heldout_fraction = 0.05
  c.heldout_max_docs = 500
  # Documents per ArrayRecord shard (shards are the unit of resumption).
  c.shard_docs = 5000
  # Stop reading a task after this many documents (0 = read everything).
  c.max_docs_per_task = 0
  # Malformed records (bad JSON, missing text, invalid UTF-8, empty) beyond
  # this count per task abort prepare with an error listing them.
  c.max_malformed = 100
  # Where the real corpora of `dolmino_olmo3` live (local dir or gs://...),
  # one sub-folder per task; `source_paths` overrides single tasks with a
  # file pattern, e.g. {'olmo3_tinymath': 'gs://bucket/tinymath/*.jsonl.zst'}.
  c.source_root = ""
  c.source_paths = ml_collections.ConfigDict()

  # Decontamination against evaluation benchmarks during prepare.
  c.decontam = ml_collections.ConfigDict()
  # Benchmark names, e.g. ('gsm8k', 'humaneval'); () disables.
  c.decontam.benchmarks = ()
  # "drop" removes a contaminated document, "cut" removes only the overlap,
  # "keep" keeps it unchanged: the items found are still recorded per task, so
  # evaluation can score them apart (a study of what leakage does).
  c.decontam.mode = "drop"
  # What to do when a benchmark's data cannot be loaded: "warn" or "error".
  c.decontam.on_missing = "warn"

  # Deduplication during prepare, before decontamination and the held-out
  # split (midtrain_jax/dedup; defaults explained in dedup/params.py, whose
  # DedupParams they are taken from).
  defaults = dedup_params.DedupParams()
  c.dedup = ml_collections.ConfigDict()
  # Levels from ("exact", "near", "code", "semantic"); () disables. Off here,
  # unlike DedupParams' ("exact", "near"): prepare changes no corpus unless a
  # config asks for it (the demo does), while the dedup command exists to dedup.
  c.dedup.levels = ()
  # Near duplicates: Jaccard similarity of word n-gram sets >= jaccard (MinHash
  # with LSH banding), or SimHash within simhash_distance bits, or both.
  c.dedup.ngram = defaults.ngram
  c.dedup.jaccard = defaults.jaccard
  c.dedup.num_perm = defaults.num_perm
  c.dedup.near_method = defaults.near_method  # "minhash" | "simhash" | "both".
  c.dedup.simhash_distance = defaults.simhash_distance
  # Code smaller than this (syntax-tree nodes or tokens) is not compared by structure.
  c.dedup.code_min_tokens = defaults.code_min_tokens
  # Semantic level: cosine threshold and the embedding function
  # "package.module:function" (texts -> [N, D]).
  c.dedup.semantic_threshold = defaults.semantic_threshold
  c.dedup.embedder = defaults.embedder
  # Compare documents across the tasks of the mixture, not only within each task.
  c.dedup.cross_task = True
  # Which copy is kept: tasks are deduplicated in this order and the first copy
  # wins, so list tasks highest quality first; the others follow in mixture order.
  c.dedup.priority = ()
  # Tasks compared by exact copies only: templated or generated text (math
  # from one template, program traces) shares wording, not content, and would
  # lose most documents to the near level. Their documents only join the exact
  # index, so they neither lose nor cause near duplicates.
  c.dedup.exact_only = ()
  # Reference documents (e.g. the base model's pretraining data): file patterns
  # of JSONL/Parquet files with a "text" field; () for none. Documents found in
  # them are removed ("drop") or only counted ("count").
  c.dedup.reference = ()
  c.dedup.reference_mode = defaults.reference_mode
  return c


def base_config(size: str) -> ml_collections.ConfigDict:
  """All config sections with their defaults for a model size (unlocked)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # What `main.py` runs: "train" (one training run) or "demo" (prepare, base,
  # two anneals, evaluation and a report; midtrain_jax/workflows/demo.py).
  c.workflow = "train"
  c.model = model_section(size)
  c.data = data_config()

  c.optim = ml_collections.ConfigDict()
  c.optim.schedule = "wsd"  # "wsd" | "cosine" | "constant" | "anneal".
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 100
  # Warmup as a fraction of the run instead (used when warmup_steps is 0), so
  # shortening a run (train.steps) shortens its warmup with it.
  c.optim.warmup_fraction = 0.0
  c.optim.decay_steps = 0  # WSD decay length; 0: use decay_fraction of the run.
  c.optim.decay_fraction = 0.2
  c.optim.decay_shape = "linear"  # "linear" | "cosine" | "1-sqrt".
  c.optim.final_lr_fraction = 0.0  # Schedule ends at this fraction of optim.lr.
  # Anneal start LR: "config" uses optim.lr; "from_checkpoint" uses the LR the
  # base run's schedule had at the step of train.init_from.
  c.optim.anneal_start = "config"
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.1
  c.optim.decay_embeddings = False
  c.optim.clip_norm = 1.0

  c.train = ml_collections.ConfigDict()
  c.train.steps = 200
  # Gradient accumulation: each step's batch (data.batch_size rows) runs in this
  # many sequential microbatches, so a large global batch fits in memory.
  c.train.microbatches = 1
  c.train.z_loss = 1e-5
  c.train.init_from = ""  # Base checkpoint (a step directory or a workdir).
  c.train.init_optimizer = True  # Also load the base run's optimiser state.
  c.train.log_every_steps = 10

  c.ckpt = ml_collections.ConfigDict()
  c.ckpt.every_steps = 100
  c.ckpt.keep = 3
  c.ckpt.async_save = True

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 0  # 0: evaluate only at the end.
  c.eval.batches = 4  # Held-out batches per task in training; 0: no evaluation.
  # Mixture whose held-out splits are scored; "" = data.mixture. Anneals on a
  # narrow mix set it to the full mix to see every capability.
  c.eval.mixture = ""
  # Benchmarks the run is evaluated on. Training checks that every task of
  # the mixture was decontaminated against them and warns, or fails, per
  # `decontam_check` ("warn" | "error" | "off").
  c.eval.benchmarks = items.EVAL_SUITE
  c.eval.decontam_check = "warn"

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 fills the devices left over by the other axes.
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  return c




_CHOICES = {
    "model.norm": ("reordered", "pre"),
    "model.qk_norm": ("none", "head", "projection"),
    "model.param_dtype": ("float32", "bfloat16"),
    "model.compute_dtype": ("float32", "bfloat16"),
    "model.remat": ("none", "full", "save_dots"),
    "model.attention": ("auto", "xla", "cudnn", "splash", "cpu_native", "reference"),
    "model.matmul": ("auto", "xla", "cpu_native"),
    "optim.schedule": ("wsd", "cosine", "constant", "anneal"),
    "optim.decay_shape": ("linear", "cosine", "1-sqrt"),
    "optim.anneal_start": ("config", "from_checkpoint"),
    "eval.decontam_check": ("warn", "error", "off"),
}
_WORKFLOWS = ("train", "demo")
# The modes of decontam/decontaminator.py (MODES); the config layer does not import it.
DECONTAM_MODES = ("drop", "cut", "keep")


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails with a message naming the keys of an impossible combination."""
  for key, choices in _CHOICES.items():
    section, name = key.split(".")
    if config[section][name] not in choices:
      raise ValueError(f"config.{key}={config[section][name]!r} is not one of {choices}.")
  if config.workflow not in _WORKFLOWS:
    raise ValueError(f"config.workflow={config.workflow!r} is not one of {_WORKFLOWS}.")
  if config.workflow == "demo" and config.train.init_from:
    raise ValueError("The demo workflow trains its own base, so config.train.init_from "
                     "is not used; to anneal a given base use e.g. "
                     "--config=configs/anneal.py:size=tiny --config.train.init_from=...")
  m = config.model
  if m.n_heads % m.n_kv_heads:
    raise ValueError(f"config.model.n_heads={m.n_heads} is not divisible by "
                     f"config.model.n_kv_heads={m.n_kv_heads}.")
  if not m.head_dim and m.d_model % m.n_heads:
    raise ValueError(f"config.model.d_model={m.d_model} is not divisible by "
                     f"config.model.n_heads={m.n_heads}; set config.model.head_dim.")
  if (m.head_dim or m.d_model // m.n_heads) % 2:
    raise ValueError("RoPE needs an even head dimension (config.model.head_dim).")
  if not m.window_pattern or any(w < 0 for w in m.window_pattern):
    raise ValueError(f"config.model.window_pattern={m.window_pattern} must be a "
                     "non-empty list of window sizes >= 0 (0 = full attention).")
  if m.yarn_factor < 1.0:
    raise ValueError(f"config.model.yarn_factor={m.yarn_factor} must be >= 1.")
  _check_moe(m.moe)
  positive = {"data.seq_len": config.data.seq_len, "data.batch_size": config.data.batch_size,
              "train.steps": config.train.steps, "ckpt.every_steps": config.ckpt.every_steps,
              "ckpt.keep": config.ckpt.keep, "train.log_every_steps": config.train.log_every_steps,
              "train.microbatches": config.train.microbatches}
  for key, value in positive.items():
    if value <= 0:
      raise ValueError(f"config.{key}={value} must be positive.")
  _check_benchmarks("data.decontam.benchmarks", config.data.decontam.benchmarks)
  if config.data.decontam.mode not in DECONTAM_MODES:
    raise ValueError(f"config.data.decontam.mode={config.data.decontam.mode!r} is not one of "
                     f"{DECONTAM_MODES}.")
  _check_benchmarks("eval.benchmarks", config.eval.benchmarks)
  check_dedup(config.data.dedup)
  if config.optim.anneal_start == "from_checkpoint" and not config.train.init_from:
    raise ValueError("config.optim.anneal_start='from_checkpoint' needs "
                     "config.train.init_from (the base checkpoint).")
  _check_schedule(config.optim, config.train.steps)
  check_qau(config.data.qau)
  if config.data.batch_size % config.train.microbatches:
    raise ValueError(f"config.data.batch_size={config.data.batch_size} does not split into "
                     f"config.train.microbatches={config.train.microbatches} equal microbatches.")


def _check_moe(moe: ml_collections.ConfigDict) -> None:
  if moe.experts < 0 or (moe.experts and not 1 <= moe.top_k <= moe.experts):
    raise ValueError(f"config.model.moe: top_k={moe.top_k} must be between 1 and "
                     f"experts={moe.experts} (experts=0 is a dense model).")
  if moe.every < 1 or moe.mlp_dim < 0 or moe.shared_experts < 0:
    raise ValueError(f"config.model.moe: every={moe.every} must be >= 1, mlp_dim="
                     f"{moe.mlp_dim} and shared_experts={moe.shared_experts} >= 0.")
  if moe.dispatch not in ("dropless", "capacity"):
    raise ValueError(f"config.model.moe.dispatch={moe.dispatch!r} is not one of "
                     "('dropless', 'capacity').")
  if moe.capacity_factor <= 0 or moe.load_balance_loss < 0 or moe.router_z_loss < 0:
    raise ValueError("config.model.moe: capacity_factor must be > 0 and the loss weights "
                     f">= 0, got {moe.capacity_factor}, {moe.load_balance_loss}, "
                     f"{moe.router_z_loss}.")


def schedule_steps(optim: ml_collections.ConfigDict, total_steps: int) -> tuple[int, int]:
  """(warmup, WSD decay) steps of a run: explicit step counts, else fractions of the run."""
  warmup = optim.warmup_steps or int(round(optim.warmup_fraction * total_steps))
  decay = optim.decay_steps or int(round(optim.decay_fraction * total_steps))
  return warmup, decay


def _check_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> None:
  """Schedule lengths that cannot fit the run fail here, before any data work."""
  for key in ("warmup_fraction", "decay_fraction", "final_lr_fraction"):
    if not 0.0 <= optim[key] <= 1.0:
      raise ValueError(f"config.optim.{key}={optim[key]} must be in [0, 1].")
  for key in ("warmup_steps", "decay_steps"):
    if optim[key] < 0:
      raise ValueError(f"config.optim.{key}={optim[key]} must be >= 0.")
  if optim.warmup_steps and optim.warmup_fraction:
    raise ValueError(f"config.optim.warmup_steps={optim.warmup_steps} and "
                     f"config.optim.warmup_fraction={optim.warmup_fraction} are both set; "
                     "give the warmup one way (set the other to 0).")
  warmup, decay = schedule_steps(optim, total_steps)
  needed = {"wsd": warmup + decay, "cosine": warmup}.get(optim.schedule, 0)
  if needed > total_steps:
    what = f"warmup ({warmup}) + decay ({decay})" if optim.schedule == "wsd" else \
        f"warmup ({warmup})"
    raise ValueError(
        f"The {optim.schedule} schedule's {what} steps exceed config.train.steps={total_steps} "
        "(optim.warmup_steps/warmup_fraction, optim.decay_steps/decay_fraction): lower them, "
        "or give them as fractions of the run so they scale with train.steps.")


def _check_factors(key: str, factors, buckets: int) -> None:
  if (isinstance(factors, str) or len(factors) != buckets or
      not all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in factors)):
    raise ValueError(f"config.{key}={factors!r} must be {buckets} finite numbers > 0, "
                     "one per quality bucket (len(data.qau.quantiles) + 1).")


def check_qau(qau: ml_collections.ConfigDict) -> None:
  """Fails naming the `data.qau` key whose value cannot make quality buckets.

  Args:
    qau: the `data.qau` section.

  Raises:
    ValueError: quantiles not strictly increasing in (0, 1), factors of the
      wrong count or not > 0, overlapping or empty scorer tasks.
  """
  quantiles = qau.quantiles
  if (isinstance(quantiles, str) or
      not all(isinstance(q, (int, float)) and 0 < q < 1 for q in quantiles) or
      any(b <= a for a, b in zip(quantiles, quantiles[1:]))):
    raise ValueError(f"config.data.qau.quantiles={quantiles!r} must be strictly increasing "
                     "numbers in (0, 1), e.g. (0.5, 0.8, 0.95).")
  _check_factors("data.qau.factors", qau.factors, len(quantiles) + 1)
  for task, factors in qau.task_factors.items():
    _check_factors(f"data.qau.task_factors.{task}", factors, len(quantiles) + 1)
  for key in ("positive_tasks", "negative_tasks"):
    if isinstance(qau[key], str) or not qau[key]:
      raise ValueError(f"config.data.qau.{key}={qau[key]!r} must be a non-empty tuple of "
                       "task names.")
  both = sorted(set(qau.positive_tasks) & set(qau.negative_tasks))
  if both:
    raise ValueError(f"config.data.qau: task(s) {both} are in both positive_tasks and "
                     "negative_tasks.")
  if qau.scorer_docs <= 0:
    raise ValueError(f"config.data.qau.scorer_docs={qau.scorer_docs} must be positive.")


def _check_benchmarks(key: str, names) -> None:
  """Benchmark lists are tuples of known names (a comma string is one wrong name)."""
  if isinstance(names, str):
    raise ValueError(f"config.{key}={names!r} must be a tuple of benchmark names, "
                     f"e.g. {tuple(items.EVAL_SUITE[:2])!r}.")
  unknown = [n for n in names if n not in items.SPECS]
  if unknown:
    raise ValueError(f"config.{key} names unknown benchmark(s) {unknown}; known: "
                     f"{sorted(items.SPECS)} (write a tuple: ('gsm8k', 'math')).")


def check_dedup(dedup: ml_collections.ConfigDict) -> None:
  """Fails naming the `data.dedup` key whose value is impossible."""
  for key in ("levels", "priority", "exact_only", "reference"):
    if isinstance(dedup[key], str):
      raise ValueError(f"config.data.dedup.{key}={dedup[key]!r} must be a tuple, "
                       f"e.g. {('exact', 'near') if key == 'levels' else ('name',)!r}.")
  dedup_params.from_config(dedup, prefix="config.data.dedup.")


def model_config(model: ml_collections.ConfigDict) -> ModelConfig:
  """Freezes the `model` section into a ModelConfig."""
  values = {f.name: (model.moe[f.name[len("moe_"):]] if f.name.startswith("moe_")
                     else model[f.name]) for f in dataclasses.fields(ModelConfig)}
  values["window_pattern"] = tuple(int(w) for w in values["window_pattern"])
  values["head_dim"] = model.head_dim or model.d_model // model.n_heads
  return ModelConfig(**values)


def finalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validates and locks a config built by a `configs/*.py` file."""
  validate(config)
  config.lock()
  return config


def to_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (written to `workdir/config.json`)."""
  return json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True)


# Sections holding user-chosen names, copied whole rather than key by key.
_OPEN_SECTIONS = ("weights", "source_paths", "task_factors")


def from_json(text: str) -> ml_collections.ConfigDict:
  """Reads a config written by `to_json` (a run's config.json or checkpoint).

  The stored values are laid over today's defaults, so a config written by an
  earlier version reads as a complete one: keys added since keep their
  defaults, keys since removed are dropped, and values whose type changed are
  converted (`model.qk_norm` was a bool; benchmark lists were comma strings;
  `model.attention="xla"` of a config without `model.matmul` is "auto").

  Returns:
    An unlocked config with every key `base_config` declares.
  """
  stored = json.loads(text)
  fresh = base_config(stored.get("model", {}).get("size", "tiny"))

  def merge(dst, src):
    for key, value in src.items():
      if key not in dst:
        continue  # A key this version no longer has.
      if isinstance(dst[key], ml_collections.ConfigDict) and key not in _OPEN_SECTIONS:
        merge(dst[key], value)
      elif key == "qk_norm" and isinstance(value, bool):
        dst[key] = "head" if value else "none"
      elif isinstance(dst[key], tuple) and isinstance(value, str):
        dst[key] = tuple(name for name in value.split(",") if name)
      elif isinstance(dst[key], tuple) and isinstance(value, list):
        dst[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
      else:
        dst[key] = value
  merge(fresh, stored)
  if "model" in stored and "scan_layers" not in stored["model"]:
    fresh.model.scan_layers = False  # Written before layers could be scanned.
  if "model" in stored and "matmul" not in stored["model"]:
    # Written before model.matmul: its "xla" attention meant XLA's ops plus the
    # native CPU kernels wherever they applied, what "auto" means now.
    fresh.model.matmul = "auto"
    if fresh.model.attention == "xla":
      fresh.model.attention = "auto"
  return fresh
