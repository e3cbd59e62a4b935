"""The runs of `prepare_throughput.py`, one per process (it measures them from outside).

  python -m benchmarks.prepare_throughput_runs RUN CORPUS OUT TOKENIZER WORKERS

Prints one JSON line last: what the run kept (`kept_docs`, `tokens`).
"""
import json
import pathlib
import sys

# The tiny config's evaluation suite: what a study decontaminates against.
DECONTAM_BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "mmlu", "arc_easy", "arc_challenge")
# Ours: MinHash over word 3-grams, 128 permutations, which lsh_params splits in
# 32 bands of 4 for Jaccard 0.4 (dedup/params.py); datatrove gets the same.
NGRAM, BANDS, ROWS = 3, 32, 4


def _mixture(corpus: pathlib.Path, out: pathlib.Path) -> str:
  path = out / "bench.yaml"
  task = {"files": [str(corpus / "part-*.jsonl")], "capability": "web", "weight": 1.0}
  path.write_text(json.dumps({"name": "bench", "tasks": {"bench_web": task}}))
  return str(path)


def _data_cfg(corpus, out, tokenizer, dedup: bool, decontam: bool):
  from midtrain_jax import config as config_lib
  cfg = config_lib.data_config()
  cfg.update(mixture=_mixture(corpus, out), tokenizer=tokenizer,
             data_dir=str(out / "prepared"), prepare_if_missing=True)
  if dedup:
    cfg.dedup.levels = ("exact", "near")
  if decontam:
    cfg.decontam.benchmarks = DECONTAM_BENCHMARKS
  return cfg


def _kept(manifest: dict) -> dict:
  task = manifest["tasks"]["bench_web"]
  return {"kept_docs": task["train_docs"] + task["heldout_docs"],
          "tokens": task["train_tokens"],
          "duplicates": task.get("dedup", {}).get("removed_docs", 0)}


def ours(corpus, out, tokenizer, dedup: bool, decontam: bool) -> dict:
  """Our local preparation of the corpus as one task of a mixture file."""
  from midtrain_jax.data.prepare import tasks
  manifest = tasks.prepare(_data_cfg(corpus, out, tokenizer, dedup, decontam),
                           log=lambda line: print(line, file=sys.stderr))
  return _kept(manifest)


def beam(corpus, out, tokenizer, workers: int) -> dict:
  """Our preparation on Beam: FnApiRunner, `workers` processes, dedup + decontamination."""
  import inspect

  from midtrain_jax.data.prepare import tasks
  if "runner" not in inspect.signature(tasks.prepare).parameters:
    raise SystemExit("the Beam preparation is not in this tree")
  options = (f"--runner=FnApiRunner --direct_num_workers={workers} "
             "--direct_running_mode=multi_processing")
  largest = {}

  def log(line: str) -> None:
    print(line, file=sys.stderr)
    if "beam: largest " in line:  # The largest groups the pipeline gave a worker.
      name, value = line.split("beam: largest ")[1].rsplit(" ", 1)
      largest[name] = int(value.replace(",", ""))

  manifest = tasks.prepare(_data_cfg(corpus, out, tokenizer, True, True), runner="beam",
                           beam_options=options, log=log)
  return {**_kept(manifest), "largest": largest}


def _eos_token(tokenizer: str) -> str:
  """The EOS our preparation appends, as text: datatrove appends it by name."""
  import tokenizers

  from midtrain_jax.data import tokenizer as tokenizer_lib
  eos = tokenizer_lib.load_tokenizer(tokenizer).eos_id
  return tokenizers.Tokenizer.from_file(tokenizer).id_to_token(eos)


def _dt_tokenize_step(out, tokenizer):
  from datatrove.pipeline.tokens import DocumentTokenizer
  # Not shuffled: our preparation keeps file order, shuffling is the loader's.
  return DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=tokenizer,
                           eos_token=_eos_token(tokenizer), shuffle_documents=False)


def _dt_reader(corpus):
  from datatrove.pipeline.readers import JsonlReader
  return JsonlReader(str(corpus), glob_pattern="part-*.jsonl")


def _dt_tokens(out: pathlib.Path) -> dict:
  """Documents and tokens datatrove wrote: from its token files' document-end indexes."""
  import numpy as np
  docs = tokens = 0
  for index in (out / "tokens").glob("*.index"):
    ends = np.fromfile(index, np.uint64)
    docs += ends.size
    tokens += int(ends[-1]) if ends.size else 0
  return {"kept_docs": docs, "tokens": tokens}


def datatrove_tokenize(corpus, out, tokenizer, workers: int) -> dict:
  from datatrove.executor import LocalPipelineExecutor
  files = len(list(corpus.glob("part-*.jsonl")))
  LocalPipelineExecutor([_dt_reader(corpus), _dt_tokenize_step(out, tokenizer)], tasks=files,
                        workers=workers, logging_dir=str(out / "logs")).run()
  return _dt_tokens(out)


def datatrove_full(corpus, out, tokenizer, workers: int) -> dict:
  """Datatrove's MinHash deduplication (4 stages), tokenising the kept documents."""
  from datatrove.executor import LocalPipelineExecutor
  from datatrove.pipeline.dedup import minhash
  config = minhash.MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS)
  files = len(list(corpus.glob("part-*.jsonl")))
  stages = [
      ([_dt_reader(corpus), minhash.MinhashDedupSignature(str(out / "sigs"), config=config)],
       files),
      ([minhash.MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=config)],
       BANDS),
      ([minhash.MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=config)],
       1),
      ([_dt_reader(corpus), minhash.MinhashDedupFilter(str(out / "remove")),
        _dt_tokenize_step(out, tokenizer)], files),
  ]
  for number, (pipeline, tasks) in enumerate(stages):
    LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers,
                          logging_dir=str(out / f"logs{number}")).run()
  return _dt_tokens(out)


def main() -> None:
  name, corpus, out, tokenizer, workers = sys.argv[1:6]
  corpus, out, workers = pathlib.Path(corpus), pathlib.Path(out), int(workers)
  if name == "ours_tok":
    result = ours(corpus, out, tokenizer, dedup=False, decontam=False)
  elif name == "ours_full":
    result = ours(corpus, out, tokenizer, dedup=True, decontam=True)
  elif name == "ours_dedup":
    result = ours(corpus, out, tokenizer, dedup=True, decontam=False)
  elif name.startswith("beam"):
    result = beam(corpus, out, tokenizer, workers)
  elif name == "dt_tok":
    result = datatrove_tokenize(corpus, out, tokenizer, workers)
  elif name == "dt_full":
    result = datatrove_full(corpus, out, tokenizer, workers)
  else:
    raise SystemExit(f"unknown run {name!r}")
  print(json.dumps(result))


if __name__ == "__main__":
  main()
