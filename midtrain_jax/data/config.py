"""The `data` section of every config: declared keys with their defaults.

Mixture weights are plain `{task: weight}` dicts, never strings to parse:

* `weights` replaces the registered rates of the mixture for the whole run,
  e.g. `--config.data.weights="{'web_c4': 0.7, 'math_synthetic': 0.3}"`.
* `weight_stages` changes the weights during training: a tuple of
  `(start_step, {task: weight})` pairs, sorted by start step, the first one
  starting at step 0. Tasks of the mixture missing from a stage get weight 0 in
  that stage, so "introduce the math data at step 2000 with weight 0.3" reads
  `((0, {'web_c4': 1.0}), (2000, {'web_c4': 0.7, 'math_synthetic': 0.3}))`.
  From the command line: `--config.data.weight_stages="((0, {...}), (2000,
  {...}))"`. When it is set, `weights` must stay empty.
"""
import ml_collections


def data_config() -> ml_collections.ConfigDict:
  """Returns the default `data` config section.

  Returns:
    A ConfigDict with every key of the data pipeline and its default value.
  """
  c = ml_collections.ConfigDict()
  # Which registered seqio Mixture to train on (`python -m
  # midtrain_jax.data.registry --list` shows them all).
  c.mixture = "dolmino_demo"
  c.seq_len = 256
  # Global batch size in rows; each process loads batch_size // process_count.
  c.batch_size = 16
  # Where prepared shards live; "" means <cache>/prepared/<mixture>, with
  # <cache> = $MIDTRAIN_JAX_CACHE or ~/.cache/midtrain_jax.
  c.data_dir = ""
  # "demo_spm" (SentencePiece trained on the demo corpus, vocab 8192) or the
  # path of a Hugging Face `tokenizers` JSON file.
  c.tokenizer = "demo_spm"
  # Run prepare automatically when shards are missing (with progress output).
  c.prepare_if_missing = True

  # Mixture weights: see the module docstring.
  c.weights = ml_collections.ConfigDict()
  c.weight_stages = ()
  # Caps how often a task's documents may repeat; 0 keeps each task's own cap.
  c.max_epochs = 0

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
  # Comma-separated benchmark names (e.g. "gsm8k,humaneval"); "" disables.
  c.decontam.benchmarks = ""
  # "drop" removes a contaminated document, "cut" removes only the overlap.
  c.decontam.mode = "drop"
  # What to do when a benchmark's data cannot be loaded: "warn" or "error".
  c.decontam.on_missing = "warn"
  return c
