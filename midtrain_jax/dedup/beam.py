"""Apache Beam version of the batch deduplication, with the same result as `batch.run_local`.

Three stages:
  1. read and fingerprint (parallel): every file is read with the same reader
     as the local run (JSONL, .gz, .zst; bad records with file:line), records
     are keyed by (file rank, position), reshuffled and fingerprinted in
     batches on the workers (the expensive, vectorised part);
  2. decide (one worker): the fingerprints, sorted by key, go through
     `Deduplicator.decide` in the order of the keep rule, exactly as the local
     run does; only small fingerprints travel here, never the texts;
  3. write (parallel): kept records joined back by key and written per task;
     the decisions give `duplicates.jsonl`, `reference_matches.jsonl`,
     `malformed.jsonl` and the counts.

Needs the `beam` extra: `pip install midtrain_jax[beam]`. A semantic embedder
must be importable on the workers.
"""
import collections
import io
import json
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from midtrain_jax.dedup import batch, counts, deduplicator
from midtrain_jax.dedup.params import DedupParams
from midtrain_jax.documents import readers as sources


def _read(element, text_key, id_key):
  """(key, payload) of each record of one file; key = (file rank, position)."""
  rank, path = element
  task = sources.file_task_name(path)
  for position, item in enumerate(batch.read_records(path, text_key, id_key)):
    if isinstance(item, sources.Malformed):
      yield (rank, position), ("bad", task, item.where, item.reason)
    else:
      doc_id, record = item
      yield (rank, position), ("doc", task, doc_id, json.dumps(record, ensure_ascii=False))


class _Fingerprint(beam.DoFn):
  """Fingerprints a batch of keyed records; passes bad records through."""

  def __init__(self, settings: dict, text_key: str, exact_only: Sequence[str] = ()):
    self._settings, self._text_key = settings, text_key
    self._exact_only = frozenset(exact_only)
    self._dedup = None

  def setup(self):
    self._dedup = deduplicator.Deduplicator(DedupParams(**self._settings))

  def process(self, elements):
    for exact_only in (False, True):  # A batch mixes tasks: exact-only ones apart.
      docs = [(key, payload) for key, payload in elements
              if payload[0] == "doc" and (payload[1] in self._exact_only) == exact_only]
      texts = [json.loads(payload[3])[self._text_key] for _, payload in docs]
      for (key, payload), fp, text in zip(docs, self._dedup.fingerprint(texts, exact_only),
                                          texts):
        yield key, ("doc", payload[1], payload[2], len(text.encode("utf-8")), fp)
    for key, payload in elements:
      if payload[0] == "bad":
        yield key, payload


def _decide(keyed, settings, references, text_key, cross_task):
  """Decides every document in key order (the local run's order); returns the outcomes."""
  dedup = deduplicator.Deduplicator(DedupParams(**settings))
  for docs in batch.batches(batch.reference_docs(references, text_key), batch.BATCH_DOCS):
    dedup.add_reference(docs)
  by_task = collections.defaultdict(collections.Counter)
  kept, dups, refs, bad = [], [], [], []
  rank = None
  for key, payload in sorted(keyed, key=lambda kv: kv[0]):
    if key[0] != rank:
      rank = key[0]
      if not cross_task:
        dedup.new_scope()  # As the local run does at the start of each file.
    if payload[0] == "bad":
      by_task[payload[1]]["malformed"] += 1
      bad.append(json.dumps({"where": payload[2], "reason": payload[3]}))
      continue
    _, task, doc_id, nbytes, fp = payload
    verdict = dedup.decide(fp, doc_id, task)
    by_task[task].update(counts.document_counts(verdict, nbytes))
    if verdict.match is not None:
      (refs if verdict.kept else dups).append(json.dumps(batch.verdict_record(verdict)))
    if verdict.kept:
      kept.append(key)
  return {"kept": kept, "duplicates": dups, "reference": refs, "malformed": bad,
          "counts": {task: dict(c) for task, c in by_task.items()}}


def _write_kept(joined):
  """(task rank, record line) of each kept record."""
  key, groups = joined
  if groups["kept"] and groups["records"]:
    yield key[0], groups["records"][0]


def run(inputs: Sequence[str], out: str, settings: DedupParams,
        references: Sequence[str] = (), text_key: str = "text", id_key: str = "id",
        cross_task: bool = True, exact_only: Sequence[str] = (), runner: str = "DirectRunner",
        pipeline_args: Sequence[str] = ()) -> dict:
  """Runs the deduplication as a Beam pipeline over JSONL(.gz/.zst) files.

  Args:
    inputs: files, one task each, highest priority first (the keep rule).
    out: output folder (same layout as the local command, shards named by Beam).
    settings: the deduplication settings.
    references: reference files, read by the deciding worker.
    text_key: field with the text.
    id_key: field with the document id.
    cross_task: compare documents across files.
    exact_only: tasks compared by exact copies only.
    runner: Beam runner name.
    pipeline_args: extra Beam pipeline options.

  Returns:
    {task: counts} as `batch.run_local`.
  """
  params = settings.as_dict()
  params["levels"] = tuple(params["levels"])
  tasks = [sources.file_task_name(p) for p in inputs]
  os.makedirs(out, exist_ok=True)
  options = PipelineOptions(list(pipeline_args), runner=runner)
  with beam.Pipeline(options=options) as pipeline:
    records = (pipeline | "Files" >> beam.Create(list(enumerate(inputs)))
               | "Read" >> beam.FlatMap(_read, text_key, id_key)
               | "Spread" >> beam.Reshuffle())
    outcome = (records | "Batch" >> beam.BatchElements(min_batch_size=64,
                                                       max_batch_size=batch.BATCH_DOCS)
               | "Fingerprint" >> beam.ParDo(_Fingerprint(params, text_key, exact_only))
               | "Gather" >> beam.combiners.ToList()
               | "Decide" >> beam.Map(_decide, params, list(references), text_key, cross_task))
    for name, file_name in (("duplicates", "duplicates"), ("reference", "reference_matches"),
                            ("malformed", "malformed")):
      _ = (outcome | f"{name} lines" >> beam.FlatMap(lambda o, n=name: o[n])
           | f"Write {name}" >> beam.io.WriteToText(os.path.join(out, file_name),
                                                     file_name_suffix=".jsonl",
                                                     shard_name_template=""))
    _ = (outcome | "Counts" >> beam.Map(lambda o: json.dumps(o["counts"]))
         | "Write counts" >> beam.io.WriteToText(os.path.join(out, "counts"),
                                                 file_name_suffix=".json",
                                                 shard_name_template=""))
    kept = outcome | "Kept keys" >> beam.FlatMap(lambda o: [(tuple(k), True) for k in o["kept"]])
    lines = records | "Record lines" >> beam.FlatMap(
        lambda kv: [(kv[0], kv[1][3])] if kv[1][0] == "doc" else [])
    by_rank = ({"kept": kept, "records": lines} | "Join" >> beam.CoGroupByKey()
               | "Kept records" >> beam.FlatMap(_write_kept))
    parts = by_rank | "By task" >> beam.Partition(lambda kv, n: kv[0], len(tasks))
    for rank, task in enumerate(tasks):
      _ = (parts[rank] | f"Lines {task}" >> beam.Map(lambda kv: kv[1])
           | f"Write {task}" >> beam.io.WriteToText(os.path.join(out, task, "part"),
                                                     file_name_suffix=".jsonl.gz"))
  with FileSystems.open(os.path.join(out, "counts.json")) as f:
    found = json.load(io.TextIOWrapper(f, encoding="utf-8"))
  return {task: collections.Counter(c) for task, c in found.items()}
