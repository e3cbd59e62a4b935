"""The `data` settings: what the data pipeline reads, declared once.

Readers: data/layout.py (data_dir, tokenizer); data/load (mixture, seq_len,
batch_size, weights, weight_stages, max_epochs, fim_*, shuffle_seed,
packing_window_rows, num_workers, loader_shards, qau.quantiles / factors /
task_factors); data/prepare (the rest: shards, held-out split, sources,
decontam, dedup, the QAU scorer's keys).

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
* `data.decontam.benchmarks` is a tuple of benchmark names:
  `--config.data.decontam.benchmarks="('gsm8k', 'humaneval')"`.
"""
import math

import ml_collections

from midtrain_jax import settings
from midtrain_jax.benchmark_data import items
from midtrain_jax.dedup import params as dedup_params

S = settings.Setting
_POSITIVE, _NON_NEGATIVE = settings.POSITIVE, settings.NON_NEGATIVE

# The modes of decontam/decontaminator.py (MODES); the settings do not import it.
DECONTAM_MODES = ("drop", "cut", "keep")


def _check_factors(key: str, factors, buckets: int) -> None:
  if (isinstance(factors, str) or len(factors) != buckets or
      not all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in factors)):
    raise ValueError(f"{key}={factors!r} must be {buckets} finite numbers > 0, "
                     "one per quality bucket (len(data.qau.quantiles) + 1).")


def _check_buckets(qau, path: str) -> None:
  """Quantiles that make buckets, a factor per bucket, disjoint scorer tasks."""
  quantiles = qau.quantiles
  if (not all(isinstance(q, (int, float)) and 0 < q < 1 for q in quantiles) or
      any(b <= a for a, b in zip(quantiles, quantiles[1:]))):
    raise ValueError(f"{path}.quantiles={quantiles!r} must be strictly increasing "
                     "numbers in (0, 1), e.g. (0.5, 0.8, 0.95).")
  _check_factors(f"{path}.factors", qau.factors, len(quantiles) + 1)
  for task, factors in qau.task_factors.items():
    _check_factors(f"{path}.task_factors.{task}", factors, len(quantiles) + 1)
  both = sorted(set(qau.positive_tasks) & set(qau.negative_tasks))
  if both:
    raise ValueError(f"{path}: task(s) {both} are in both positive_tasks and "
                     "negative_tasks.")


QAU = settings.Section({
    "enabled": S(False, "Quality-aware upsampling (data/load/upsampling.py): within each "
                 "task, documents fall into buckets by quality-score quantile and a pass over "
                 "the task holds each document factors[bucket] times. The mixture weights "
                 "still fix each task's token share; the repetition cap counts passes over "
                 "the upsampled task."),
    "quantiles": S((0.5, 0.8, 0.95), "Bucket edges as score quantiles within each task, "
                   "strictly increasing in (0, 1); (0.5, 0.8, 0.95) makes four buckets: "
                   "bottom half, 50-80%, 80-95%, top 5%."),
    "factors": S((1.2, 2.0, 4.0, 7.0), "Copies per pass of a document in each bucket "
                 "(len(quantiles) + 1 numbers > 0; fractions are spread over passes). OLMo "
                 "3-like: low quality ~1.2x, top 7x."),
    "task_factors": S({}, "Per-task factors replacing `factors`, e.g. "
                      "{'web_c4': (1.0, 1.0, 2.0, 4.0)}."),
    "positive_tasks": S(("instruction_alpaca", "web_wikipedia"), "The quality scorer's "
                        "'high quality' reference tasks (any task of the catalog or of a "
                        "loaded mixture file).", check=settings.NON_EMPTY),
    "negative_tasks": S(("web_c4", "web_openwebtext"), "The quality scorer's contrast "
                        "tasks (random web).", check=settings.NON_EMPTY),
    "scorer_docs": S(2000, "Documents read per scorer task (the first ones of its files).",
                     check=_POSITIVE),
}, help="quality-aware upsampling: a scorer grades every training document "
        "(data/prepare/qau_scores.py), the loader repeats the better ones.",
   checks=(_check_buckets,))

DECONTAM = settings.Section({
    "benchmarks": S((), "Benchmarks whose items are removed from the training data during "
                    "prepare; () disables.", choices=tuple(items.SPECS)),
    "mode": S("drop", "drop removes a contaminated document, cut only the overlap, keep "
              "keeps it unchanged (its items are still recorded per task, so evaluation can "
              "score them apart).", choices=DECONTAM_MODES),
    "on_missing": S("warn", "What to do when a benchmark's data cannot be loaded.",
                    choices=("warn", "error")),
}, help="decontamination against evaluation benchmarks during prepare.")

_PARAMS = {name: s for name, s in dedup_params.PARAMS.entries.items() if name != "seed"}
DEDUP = settings.Section({
    **_PARAMS,
    # Off here, unlike DedupParams: prepare changes no corpus unless a config
    # asks for it (the demo does), while the dedup command exists to dedup.
    "levels": _PARAMS["levels"].replace(default=()),
    "cross_task": S(True, "Compare documents across the tasks of the mixture, not only "
                    "within each task."),
    "priority": S((), "Which copy is kept: tasks are deduplicated in this order and the first "
                  "copy wins, so list tasks highest quality first; the others follow in "
                  "mixture order."),
    "exact_only": S((), "Tasks compared by exact copies only: templated or generated text "
                    "shares wording, not content, and would lose most documents to the near "
                    "level. Their documents only join the exact index."),
    "reference": S((), "Reference documents (e.g. the base model's pretraining data): file "
                   "patterns of JSONL/Parquet files with a 'text' field; () for none."),
}, help="deduplication during prepare, before decontamination and the held-out split "
        "(midtrain_jax/dedup; defaults explained in dedup/params.py).",
   checks=dedup_params.PARAMS.checks)


SECTION = settings.Section({
    "mixture": S("dolmino_demo", "The registered mixture (or a mixture file's path) to train "
                 "on; `python -m midtrain_jax.data.mixtures --list` shows them all."),
    "seq_len": S(256, "Tokens per row.", check=_POSITIVE),
    "batch_size": S(16, "Global batch size in rows; each process loads "
                    "batch_size // process_count.", check=_POSITIVE),
    "data_dir": S("", "Where prepared shards live; '' means "
                  "<cache>/prepared/v<format>/<mixture>, <cache> = $MIDTRAIN_JAX_CACHE or "
                  "~/.cache/midtrain_jax."),
    "tokenizer": S("demo_spm", "demo_spm (SentencePiece trained on the demo corpus, vocab "
                   "8192) or the path of a Hugging Face `tokenizers` JSON file."),
    "prepare_if_missing": S(True, "Training and evaluation commands prepare a mixture whose "
                            "shards are missing before they build its loader (the loader "
                            "itself never prepares)."),
    "registry_modules": S((), "Python modules imported before preparing, e.g. "
                          "('my_pkg.my_tasks',): they register the seqio Tasks/Mixtures a "
                          "mixture file's `seqio_task` names."),
    "weights": S({}, "{task: weight} replacing the mixture's registered rates for the whole "
                 "run."),
    "weight_stages": S((), "((start_step, {task: weight}), ...) sorted by start step, the "
                       "first at 0: the weights change during training; tasks missing from a "
                       "stage get weight 0. `weights` must then stay empty."),
    "max_epochs": S(0, "Caps how often a task's documents may repeat; 0 keeps each task's "
                    "own cap.", check=_NON_NEGATIVE),
    "qau": QAU,
    "fim_rate": S(0.5, "Fill-in-the-middle on code tasks: fraction of documents "
                  "transformed.", check=settings.FRACTION),
    "fim_spm_rate": S(0.5, "Fraction of the FIM documents in the SPM layout (the rest PSM).",
                      check=settings.FRACTION),
    "shuffle_seed": S(0, "Data order, combined with the run seed: soups of anneals can vary "
                      "the data order while keeping the initialisation."),
    "packing_window_rows": S(64, "Best-fit packing works on windows of this many rows; "
                             "bigger windows pack tighter (padding ~ 0.5 / window_rows) but "
                             "delay weight-stage switches.", check=_POSITIVE),
    "num_workers": S(0, "Batches a background thread keeps ready (0 = load in the training "
                     "thread).", check=_NON_NEGATIVE),
    "loader_shards": S(0, "Logical loader streams, each packing batch_size / loader_shards "
                       "rows from its 1/loader_shards of every task: any process count that "
                       "divides it sees the same batches. 0 = one stream per process.",
                       check=_NON_NEGATIVE),
    "heldout_fraction": S(0.05, "Prepare: per-task held-out split for bits-per-byte "
                          "evaluation: a document is a candidate when the hash of its "
                          "text (of its ids, for a token-file task) falls under this "
                          "fraction of the hash range.",
                          check=settings.FRACTION),
    "heldout_max_docs": S(500, "Prepare: at most this many held-out documents per task: "
                          "of more candidates, those with the smallest hashes (a uniform "
                          "sample of the whole source, whatever its read order); the "
                          "others are trained on.", check=_NON_NEGATIVE),
    "shard_docs": S(5000, "Documents per ArrayRecord shard (shards are the unit of "
                    "resumption).", check=_POSITIVE),
    "max_docs_per_task": S(0, "Stop reading a task after this many documents (0 = read "
                           "everything).", check=_NON_NEGATIVE),
    "max_malformed": S(100, "Malformed records per task beyond this count abort prepare "
                       "with an error listing them.", check=_NON_NEGATIVE),
    "source_root": S("", "Where the real corpora of dolmino_olmo3 live (local dir or "
                     "gs://...), one sub-folder per task."),
    "source_paths": S({}, "{task: file pattern} overriding single tasks' sources, e.g. "
                      "{'olmo3_tinymath': 'gs://bucket/tinymath/*.jsonl.zst'}."),
    "decontam": DECONTAM,
    "dedup": DEDUP,
}, help="the data pipeline: mixture, prepared shards, loading.")


def data_config() -> ml_collections.ConfigDict:
  """The `data` section: every key of the data pipeline with its default."""
  return settings.defaults(SECTION)


def check_qau(qau) -> None:
  """Fails naming the `data.qau` key whose value cannot make quality buckets."""
  settings.validate(QAU, qau, "config.data.qau")


def check_dedup(dedup) -> None:
  """Fails naming the `data.dedup` key whose value is impossible."""
  settings.validate(DEDUP, dedup, "config.data.dedup")
