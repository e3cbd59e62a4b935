"""Deduplicate JSONL files: exact, near (MinHash/SimHash), code (ast) and semantic copies.

  python -m midtrain_jax.dedup --input=docs.jsonl[.gz|.zst] --out=DIR
  python -m midtrain_jax.dedup --input=web.jsonl.zst,math.jsonl.gz --out=DIR \
      --levels=exact,near,code --priority=math,web --reference='base/*.jsonl.gz'
  python -m midtrain_jax.dedup --input=... --out=DIR --runner=beam

Each input file is one task; files are compared with each other unless
--nocross_task. Writes the kept records per task, `DIR/duplicates.jsonl` (one
line per removed document) and the task x level summary, also printed
(midtrain_jax/dedup/batch.py). Duplicates are the connected components of
verified pairs; the copy kept is the one of the file that comes first in
--priority (then in --input), and within a file the first
(midtrain_jax/dedup/components.py); --runner=beam decides the same on Beam
workers (beam_components.py). Files of --exact_only (templated text,
whose documents share a template rather than content) are compared by exact
copies only. A finished run is not redone; an interrupted one is redone from
the start.
"""
import os

from absl import flags

from midtrain_jax import cli
from midtrain_jax.dedup import batch, deduplicator, params
from midtrain_jax.documents import readers as sources

_DEFAULTS = params.DedupParams()
_INPUT = flags.DEFINE_list("input", None, "JSONL files (.jsonl, .gz, .zst; local or gs://); "
                           "each is one task named after its file.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_LEVELS = flags.DEFINE_list("levels", list(_DEFAULTS.levels),
                            f"Levels, from {', '.join(params.LEVELS)}.")
_NGRAM = flags.DEFINE_integer("ngram", _DEFAULTS.ngram, "Words per shingle (near level).")
_JACCARD = flags.DEFINE_float("jaccard", _DEFAULTS.jaccard,
                              "Jaccard similarity of near duplicates (MinHash).")
_NUM_PERM = flags.DEFINE_integer("num_perm", _DEFAULTS.num_perm, "MinHash permutations.")
_NEAR_METHOD = flags.DEFINE_enum("near_method", _DEFAULTS.near_method, params.NEAR_METHODS,
                                 "Near-duplicate fingerprint.")
_SIMHASH_DISTANCE = flags.DEFINE_integer("simhash_distance", _DEFAULTS.simhash_distance,
                                         "Largest Hamming distance of SimHash duplicates.")
_SEMANTIC_THRESHOLD = flags.DEFINE_float("semantic_threshold", _DEFAULTS.semantic_threshold,
                                         "Cosine similarity of semantic duplicates.")
_MAX_BUCKET = flags.DEFINE_integer("max_bucket", _DEFAULTS.max_bucket,
                                   "The most documents one hash bucket holds (0: unbounded); "
                                   "the comparisons the cap skips are counted.")
_COMPONENT_ROUNDS = flags.DEFINE_integer("component_rounds", _DEFAULTS.component_rounds,
                                        "Rounds of the connected components on Beam "
                                        "(--runner=beam); a run needing more fails saying so.")
_EMBEDDER = flags.DEFINE_string("embedder", "", "Embedding function of the semantic level, "
                                "'package.module:function' (texts -> [N, D]).")
_PRIORITY = flags.DEFINE_list("priority", [], "Tasks (file names without extension), "
                              "highest quality first: their copies are kept.")
_EXACT_ONLY = flags.DEFINE_list("exact_only", [], "Tasks compared by exact copies only "
                                "(templated or generated text).")
_CROSS_TASK = flags.DEFINE_bool("cross_task", True, "Compare documents across input files.")
_REFERENCE = flags.DEFINE_list("reference", [], "Reference files or patterns (e.g. the base "
                               "model's pretraining data) whose copies are dropped or counted.")
_REFERENCE_MODE = flags.DEFINE_enum("reference_mode", _DEFAULTS.reference_mode,
                                    params.REFERENCE_MODES,
                                    "drop: remove documents found in the reference set; "
                                    "count: keep and count them.")
_TEXT_KEY = flags.DEFINE_string("text_key", "text", "Record field holding the text.")
_ID_KEY = flags.DEFINE_string("id_key", "id", "Record field holding the document id.")
_SHARD_DOCS = flags.DEFINE_integer("shard_docs", 100_000, "Documents per output shard.")
_RUNNER = flags.DEFINE_enum("runner", "local", ["local", "beam"], "Where the run happens.")
_BEAM_RUNNER = flags.DEFINE_string("beam_runner", "DirectRunner", "Beam runner for --runner=beam.")


def main(argv):
  del argv
  inputs = cli.names(_INPUT.value)
  for path in inputs:
    if "://" not in path and not os.path.exists(path):
      raise FileNotFoundError(f"--input file not found: {path}")
  tasks = [sources.file_task_name(p) for p in inputs]
  if len(set(tasks)) != len(tasks):
    raise ValueError(f"--input files must have distinct names (tasks): {tasks}")
  priority = cli.names(_PRIORITY.value)
  exact_only = cli.names(_EXACT_ONLY.value)
  for flag, names in (("priority", priority), ("exact_only", exact_only)):
    unknown = sorted(set(names) - set(tasks))
    if unknown:
      raise ValueError(f"--{flag} names {unknown}, not tasks of --input {tasks}.")
  # Highest priority first, then the order given: the keep rule.
  rank = {t: i for i, t in enumerate(priority)}
  inputs = sorted(inputs, key=lambda p: (rank.get(sources.file_task_name(p), len(rank)),
                                         inputs.index(p)))
  settings = params.DedupParams(
      levels=tuple(cli.names(_LEVELS.value)), ngram=_NGRAM.value, jaccard=_JACCARD.value,
      num_perm=_NUM_PERM.value, near_method=_NEAR_METHOD.value,
      simhash_distance=_SIMHASH_DISTANCE.value, semantic_threshold=_SEMANTIC_THRESHOLD.value,
      max_bucket=_MAX_BUCKET.value, embedder=_EMBEDDER.value, reference_mode=_REFERENCE_MODE.value,
      component_rounds=_COMPONENT_ROUNDS.value)
  references = sources.expand(cli.names(_REFERENCE.value)) if _REFERENCE.value else []
  run = {"params": settings.as_dict(), "inputs": inputs, "reference": references,
         "cross_task": _CROSS_TASK.value, "exact_only": sorted(exact_only),
         "text_key": _TEXT_KEY.value, "id_key": _ID_KEY.value,
         "shard_docs": _SHARD_DOCS.value}
  fingerprint = batch.run_fingerprint(inputs + references, run)
  if batch.is_finished(_OUT.value, fingerprint):
    print(f"[dedup] {_OUT.value}: already done with these inputs and settings")
    print(batch.read_summary(_OUT.value))
    return
  batch.start_run(_OUT.value, tasks, fingerprint, run)
  if _RUNNER.value == "beam":
    from midtrain_jax.dedup import beam  # noqa: PLC0415 (Beam is imported only when used)
    by_task = beam.run(inputs, _OUT.value, settings, references=references,
                       text_key=_TEXT_KEY.value, id_key=_ID_KEY.value,
                       cross_task=_CROSS_TASK.value, exact_only=exact_only,
                       runner=_BEAM_RUNNER.value)
  else:
    dedup = deduplicator.Deduplicator(settings)
    reference = batch.reference_prints(dedup, references, _TEXT_KEY.value)
    by_task = batch.run_local(dedup, inputs, _OUT.value, _TEXT_KEY.value, _ID_KEY.value,
                              _SHARD_DOCS.value, _CROSS_TASK.value, exact_only, reference)
  print(batch.write_summary(by_task, _OUT.value))


if __name__ == "__main__":
  cli.run(main, required=("input", "out"))
