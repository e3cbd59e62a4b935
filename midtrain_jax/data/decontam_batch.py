"""Batch decontamination of a mixture or of JSONL files.

    python -m midtrain_jax.data.decontam --mixture=NAME --out=DIR \
        [--benchmarks=gsm8k,humaneval,...] [--mode=drop|cut] [--split=train]
    python -m midtrain_jax.data.decontam --input=a.jsonl.gz,b.jsonl --out=DIR
    python -m midtrain_jax.data.decontam --input=... --out=DIR --runner=beam

Writes, under DIR:
  <task>/part-NNNNN.jsonl.gz  cleaned documents (each input record, with its
                              text cut or the record dropped);
  report.jsonl                one line per hit: doc_id, task, benchmark,
                              item_id, score, span, rule;
  summary.tsv / summary.json  hits and contaminated documents per
                              task x benchmark (the table is also printed).
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import sys
import time
from typing import Iterator, Sequence

from midtrain_jax.data import benchmarks as benchmarks_lib
from midtrain_jax.data import decontam

_BATCH_DOCS = 256


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """Parses the command line (argparse: safe to call from other programs)."""
  p = argparse.ArgumentParser(prog="python -m midtrain_jax.data.decontam",
                              description=__doc__.split("\n\n")[0])
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--mixture", help="seqio Mixture or Task name from "
                   "midtrain_jax.data.registry")
  src.add_argument("--input", help="comma-separated JSONL(.gz) files")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--benchmarks", default=",".join(benchmarks_lib.DEFAULT_SUITE),
                 help="comma-separated benchmark names")
  p.add_argument("--mode", choices=decontam.MODES, default="drop")
  p.add_argument("--split", default="train", help="split of --mixture tasks")
  p.add_argument("--text_key", default="text")
  p.add_argument("--id_key", default="id")
  p.add_argument("--shard_docs", type=int, default=100_000,
                 help="documents per output shard")
  p.add_argument("--threshold", type=float, default=None)
  p.add_argument("--weighting", choices=("idf", "uniform"), default=None)
  p.add_argument("--cache_dir", default=None)
  p.add_argument("--runner", choices=("local", "beam"), default="local")
  p.add_argument("--beam_runner", default="DirectRunner",
                 help="Beam runner for --runner=beam")
  return p.parse_args(argv)


def _params(args) -> dict:
  return {k: v for k, v in (("threshold", args.threshold),
                            ("weighting", args.weighting)) if v is not None}


def _task_name_of(path: str) -> str:
  name = os.path.basename(path)
  for suffix in (".gz", ".jsonl", ".json"):
    name = name.removesuffix(suffix)
  return name


def read_jsonl(path: str, text_key: str, id_key: str) -> Iterator[tuple[str, dict]]:
  """Yields (doc_id, record) from a JSONL(.gz) file; checks `text_key`."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt", encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      record = json.loads(line)
      if not isinstance(record.get(text_key), str):
        raise ValueError(f"{path}:{lineno}: no string field {text_key!r}")
      yield str(record.get(id_key, f"{_task_name_of(path)}:{lineno}")), record


def mixture_sources(name: str, split: str, text_key: str, id_key: str
                    ) -> list[tuple[str, Iterator[tuple[str, dict]]]]:
  """Returns (task name, documents) for each task of a registered mixture."""
  import seqio  # pylint: disable=g-import-not-at-top
  benchmarks_lib._quiet_tensorflow()  # pylint: disable=protected-access
  # Registering tasks and mixtures is the registry module's side effect.
  from midtrain_jax.data import registry  # pylint: disable=g-import-not-at-top,unused-import
  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError as e:
    known = sorted(seqio.MixtureRegistry.names()) + sorted(
        seqio.TaskRegistry.names())
    raise ValueError(f"Mixture or task {name!r} is not registered in "
                     f"midtrain_jax.data.registry; known: {known}") from e
  tasks = getattr(provider, "tasks", [provider])

  def docs(task):
    ds = task.source.get_dataset(split=split, shuffle=False)
    for i, ex in enumerate(ds.as_numpy_iterator()):
      text = ex[text_key].decode("utf-8", errors="replace")
      doc_id = ex[id_key].decode() if id_key in ex else f"{task.name}:{i}"
      yield doc_id, {"id": doc_id, "text": text}

  return [(t.name, docs(t)) for t in tasks]


class ShardWriter:
  """Writes records to numbered .jsonl.gz shards of bounded size."""

  def __init__(self, directory: str, shard_docs: int):
    self.directory, self.shard_docs = directory, shard_docs
    self.count, self._file = 0, None
    os.makedirs(directory, exist_ok=True)

  def write(self, record: dict):
    if self._file is None or self.count % self.shard_docs == 0:
      self.close()
      path = os.path.join(self.directory,
                          f"part-{self.count // self.shard_docs:05d}.jsonl.gz")
      self._file = gzip.open(path, "wt", encoding="utf-8")
    self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
    self.count += 1

  def close(self):
    if self._file is not None:
      self._file.close()
      self._file = None


def _batches(docs, size):
  batch = []
  for doc in docs:
    batch.append(doc)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def run_local(deco: decontam.Decontaminator, sources, out: str, mode: str,
              text_key: str, shard_docs: int) -> dict:
  """Scans every source; writes shards and the report; returns the summary."""
  os.makedirs(out, exist_ok=True)
  summary = collections.defaultdict(lambda: collections.Counter())
  start, total_bytes = time.time(), 0
  with open(os.path.join(out, "report.jsonl"), "w", encoding="utf-8") as report:
    for task, docs in sources:
      writer = ShardWriter(os.path.join(out, task), shard_docs)
      stats = summary[(task, "*")]
      for batch in _batches(docs, _BATCH_DOCS):
        texts = [record[text_key] for _, record in batch]
        for (doc_id, record), (cleaned, hits) in zip(
            batch, deco.clean_batch(texts, mode)):
          stats["docs"] += 1
          total_bytes += len(record[text_key])
          for bench in {h.benchmark for h in hits}:
            summary[(task, bench)]["docs"] += 1
          for h in hits:
            summary[(task, h.benchmark)]["hits"] += 1
            report.write(json.dumps({
                "doc_id": doc_id, "task": task, "benchmark": h.benchmark,
                "item_id": h.item_id, "score": h.score, "span": list(h.span),
                "rule": h.rule}) + "\n")
          if hits:
            stats["contaminated_docs"] += 1
          if cleaned is None:
            stats["dropped_docs"] += 1
            continue
          if len(cleaned) != len(record[text_key]):
            stats["cut_chars"] += len(record[text_key]) - len(cleaned)
          writer.write({**record, text_key: cleaned})
        if stats["docs"] % (_BATCH_DOCS * 40) == 0:
          _progress(task, stats["docs"], total_bytes, start)
      writer.close()
      _progress(task, stats["docs"], total_bytes, start)
  return {k: dict(v) for k, v in summary.items()}


def _progress(task, docs, total_bytes, start):
  elapsed = max(time.time() - start, 1e-9)
  print(f"[decontam] {task}: {docs:,} docs; {total_bytes / 1e6:,.1f} MB total "
        f"at {total_bytes / 1e6 / elapsed:.1f} MB/s", file=sys.stderr, flush=True)


def write_summary(summary: dict, out: str) -> str:
  """Saves the task x benchmark table as TSV and JSON; returns the table."""
  rows = [("task", "benchmark", "docs", "contaminated_docs", "hits",
           "dropped_docs", "cut_chars")]
  for (task, bench), s in sorted(summary.items()):
    rows.append((task, bench, s.get("docs", ""),
                 s.get("contaminated_docs", "") if bench == "*" else "",
                 s.get("hits", ""), s.get("dropped_docs", ""),
                 s.get("cut_chars", "")))
  with open(os.path.join(out, "summary.tsv"), "w", encoding="utf-8") as f:
    f.write("\n".join("\t".join(map(str, r)) for r in rows) + "\n")
  with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump([{"task": t, "benchmark": b, **s}
               for (t, b), s in sorted(summary.items())], f, indent=1)
  widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths))
                   for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the batch command; returns the exit status."""
  args = parse_args(argv)
  names = [n for n in args.benchmarks.split(",") if n]
  deco = decontam.Decontaminator.from_benchmarks(names, args.cache_dir,
                                                 **_params(args))
  inputs = [p for p in (args.input or "").split(",") if p]
  for path in inputs:
    if not os.path.exists(path):
      raise FileNotFoundError(f"--input file not found: {path}")
  if args.runner == "beam":
    if not inputs:
      raise ValueError("--runner=beam reads --input files")
    from midtrain_jax.data import decontam_beam  # pylint: disable=g-import-not-at-top
    summary = decontam_beam.run(
        inputs, args.out, names, mode=args.mode, text_key=args.text_key,
        id_key=args.id_key, cache_dir=args.cache_dir, runner=args.beam_runner,
        params=_params(args))
  else:
    if inputs:
      sources = [(_task_name_of(p), read_jsonl(p, args.text_key, args.id_key))
                 for p in inputs]
    else:
      sources = mixture_sources(args.mixture, args.split, args.text_key,
                                args.id_key)
    summary = run_local(deco, sources, args.out, args.mode, args.text_key,
                        args.shard_docs)
  print(write_summary(summary, args.out))
  return 0
