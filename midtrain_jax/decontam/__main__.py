"""Decontaminate a registered mixture or JSONL files against the eval benchmarks.

  python -m midtrain_jax.decontam --mixture=dolmino_demo --out=DIR \
      [--benchmarks=gsm8k,humaneval,...] [--mode=drop|cut] [--split=train]
  python -m midtrain_jax.decontam --input=a.jsonl.gz,b.jsonl.zst --out=DIR
  python -m midtrain_jax.decontam --input=... --out=DIR --runner=beam

Writes cleaned shards per task, `report.jsonl` (one line per hit) and the
task x benchmark summary, which is also printed (midtrain_jax/decontam/batch.py).
"""
import os

from absl import flags

from midtrain_jax import cli
from midtrain_jax.benchmark_data import items
from midtrain_jax.data.mixtures import seqio_tasks
from midtrain_jax.decontam import batch, decontaminator, params
from midtrain_jax.documents import readers as sources

_MIXTURE = flags.DEFINE_string("mixture", None, "seqio Mixture or Task name "
                               "(`python -m midtrain_jax.data.mixtures --list`).")
_INPUT = flags.DEFINE_list("input", None, "JSONL files (.jsonl, .gz, .zst; local or gs://); "
                           "each is one task named after its file.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_BENCHMARKS = flags.DEFINE_list("benchmarks", list(items.DEFAULT_SUITE), "Benchmark names.")
_MODE = flags.DEFINE_enum("mode", "drop", decontaminator.MODES,
                          "drop: remove contaminated documents; cut: remove the matched spans.")
_SPLIT = flags.DEFINE_string("split", "train", "Split of the --mixture tasks.")
_TEXT_KEY = flags.DEFINE_string("text_key", "text", "Record field holding the text.")
_ID_KEY = flags.DEFINE_string("id_key", "id", "Record field holding the document id.")
_SHARD_DOCS = flags.DEFINE_integer("shard_docs", 100_000, "Documents per output shard.")
_THRESHOLD = flags.DEFINE_float("threshold", None, "IDF-weighted overlap threshold "
                                f"(default {params.DecontamParams.threshold}).")
_WEIGHTING = flags.DEFINE_enum("weighting", None, params.WEIGHTINGS, "Token weighting "
                               f"(default {params.DecontamParams.weighting}).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Index cache root (readable by Beam "
                                 "workers for --runner=beam).")
_RUNNER = flags.DEFINE_enum("runner", "local", ["local", "beam"], "Where the scan runs.")
_BEAM_RUNNER = flags.DEFINE_string("beam_runner", "DirectRunner", "Beam runner for --runner=beam.")
flags.mark_flags_as_required(["out"])
flags.mark_flags_as_mutual_exclusive(["mixture", "input"], required=True)


def main(argv):
  del argv
  names = cli.names(_BENCHMARKS.value)
  overrides = {k: v for k, v in (("threshold", _THRESHOLD.value),
                                 ("weighting", _WEIGHTING.value)) if v is not None}
  inputs = cli.names(_INPUT.value)
  for path in inputs:
    if "://" not in path and not os.path.exists(path):
      raise FileNotFoundError(f"--input file not found: {path}")
  if _RUNNER.value == "beam":
    if not inputs:
      raise ValueError("--runner=beam reads --input files.")
    from midtrain_jax.decontam import beam  # noqa: PLC0415 (needs the optional beam extra)
    counts = beam.run(inputs, _OUT.value, names, mode=_MODE.value, text_key=_TEXT_KEY.value,
                      id_key=_ID_KEY.value, cache_dir=_CACHE_DIR.value,
                      runner=_BEAM_RUNNER.value, params=overrides)
  else:
    deco = decontaminator.Decontaminator.from_benchmarks(names, _CACHE_DIR.value, **overrides)
    if inputs:
      docs = [(sources.file_task_name(p), sources.keyed_records(p, _TEXT_KEY.value, _ID_KEY.value))
              for p in inputs]
    else:
      docs = seqio_tasks.mixture_records(_MIXTURE.value, _SPLIT.value, _TEXT_KEY.value,
                                         _ID_KEY.value)
    counts = batch.run_local(deco, docs, _OUT.value, _MODE.value, _TEXT_KEY.value,
                             _SHARD_DOCS.value)
  print(batch.write_summary(counts, _OUT.value))


if __name__ == "__main__":
  cli.run(main)
