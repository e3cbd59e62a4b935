"""Apache Beam version of the batch deduplication, with the same result as `batch.run_local`.

Three stages, none on a single worker:
  1. read and fingerprint (parallel): every file is read with the same reader
     as the local run (JSONL, .gz, .zst; bad records with file:line), records
     are keyed by (file rank, position), reshuffled and fingerprinted in
     batches on the workers (the expensive, vectorised part); the reference
     files likewise;
  2. decide (parallel): `beam_components.Resolve`, the connected components
     of verified pairs, the result of the local `components.resolve`; only
     fingerprints travel there, never the texts;
  3. write (parallel): kept records joined back by key and written per task;
     the verdicts give `duplicates.jsonl`, `reference_matches.jsonl`,
     `malformed.jsonl` (their lines in no particular order) and the counts.

A semantic embedder must be importable on the workers.
"""
import collections
import io
import json
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from midtrain_jax.dedup import batch, beam_components, components, counts, deduplicator
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
      yield (rank, position), ("doc", task, doc_id, json.dumps(record, ensure_ascii=False),
                               len(record[text_key].encode("utf-8")))


class _Fingerprint(beam.DoFn):
  """Items of a batch of keyed document records (exact-only tasks by exact copies only)."""

  def __init__(self, settings: dict, text_key: str, exact_only: Sequence[str] = ()):
    self._settings, self._text_key = settings, text_key
    self._exact_only = frozenset(exact_only)
    self._dedup = None

  def setup(self):
    self._dedup = deduplicator.Deduplicator(DedupParams(**self._settings))

  def process(self, elements):
    for exact_only in (False, True):  # A batch mixes tasks: exact-only ones apart.
      docs = [(key, payload) for key, payload in elements
              if (payload[1] in self._exact_only) == exact_only]
      texts = [json.loads(payload[3])[self._text_key] for _, payload in docs]
      for (key, payload), fp in zip(docs, self._dedup.fingerprint(texts, exact_only)):
        yield components.Item(key, payload[2], payload[1], fp)


class _FingerprintReference(beam.DoFn):
  """(where, fingerprint) of a batch of reference documents."""

  def __init__(self, settings: dict):
    self._settings = settings
    self._dedup = None

  def setup(self):
    self._dedup = deduplicator.Deduplicator(DedupParams(**self._settings))

  def process(self, docs):
    yield from zip([where for where, _ in docs],
                   self._dedup.fingerprint([text for _, text in docs]))


def _outcome(joined):
  """The kept record line (by file rank), and the verdict's counts and report line."""
  key, groups = joined
  (verdict,), ((_, task, _, line, nbytes),) = groups["verdict"], groups["record"]
  yield beam.pvalue.TaggedOutput("counts", (task, counts.document_counts(verdict, nbytes)))
  if verdict.match is not None:
    yield beam.pvalue.TaggedOutput("reference" if verdict.kept else "duplicates",
                                   json.dumps(batch.verdict_record(verdict)))
  if verdict.kept:
    yield key[0], line


def _malformed(payload):
  """The report line and counts of an unreadable record."""
  _, task, where, reason = payload
  yield beam.pvalue.TaggedOutput("counts", (task, collections.Counter(malformed=1)))
  yield json.dumps({"where": where, "reason": reason})


def _add_counts(values):
  total = collections.Counter()
  for found in values:
    total.update(found)
  return total


def _write_lines(pcoll, name: str, path: str) -> None:
  _ = pcoll | f"Write {name}" >> beam.io.WriteToText(path, file_name_suffix=".jsonl",
                                                      shard_name_template="")


def _reference_prints(pipeline, references: Sequence[str], params: dict, text_key: str):
  return (pipeline | "Reference files" >> beam.Create(list(references))
          | "Read reference" >> beam.FlatMap(lambda p: batch.reference_docs([p], text_key))
          | "Spread reference" >> beam.Reshuffle()
          | "Batch reference" >> beam.BatchElements(min_batch_size=64,
                                                    max_batch_size=batch.BATCH_DOCS)
          | "Fingerprint reference" >> beam.ParDo(_FingerprintReference(params)))


def run(inputs: Sequence[str], out: str, settings: DedupParams,
        references: Sequence[str] = (), text_key: str = "text", id_key: str = "id",
        cross_task: bool = True, exact_only: Sequence[str] = (), runner: str = "DirectRunner",
        pipeline_args: Sequence[str] = ()) -> dict:
  """Runs the deduplication as a Beam pipeline over JSONL(.gz/.zst) files.

  Args:
    inputs: files, one task each, highest priority first (the keep rule).
    out: output folder (same layout as the local command, shards named by Beam).
    settings: the deduplication settings.
    references: reference files (read and fingerprinted on the workers).
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
    docs = records | "Documents" >> beam.Filter(lambda kv: kv[1][0] == "doc")
    items = (docs | "Batch" >> beam.BatchElements(min_batch_size=64,
                                                  max_batch_size=batch.BATCH_DOCS)
             | "Fingerprint" >> beam.ParDo(_Fingerprint(params, text_key, exact_only)))
    reference = _reference_prints(pipeline, references, params, text_key) if references \
        else None
    verdicts = items | "Resolve" >> beam_components.Resolve(settings, cross_task, reference)
    outcome = ({"verdict": verdicts, "record": docs} | "Join" >> beam.CoGroupByKey()
               | "Outcome" >> beam.FlatMap(_outcome).with_outputs(
                   "counts", "duplicates", "reference", main="kept"))
    bad = (records | "Malformed" >> beam.Filter(lambda kv: kv[1][0] == "bad")
           | "Malformed lines" >> beam.FlatMap(lambda kv: _malformed(kv[1])).with_outputs(
               "counts", main="lines"))
    _write_lines(outcome.duplicates, "duplicates", os.path.join(out, "duplicates"))
    _write_lines(outcome.reference, "reference", os.path.join(out, "reference_matches"))
    _write_lines(bad.lines, "malformed", os.path.join(out, "malformed"))
    _ = ((outcome.counts, bad.counts) | "All counts" >> beam.Flatten()
         | "Counts by task" >> beam.CombinePerKey(_add_counts)
         | "Counts" >> beam.combiners.ToDict()
         | "Counts line" >> beam.Map(lambda c: json.dumps({t: dict(v) for t, v in c.items()}))
         | "Write counts" >> beam.io.WriteToText(os.path.join(out, "counts"),
                                                 file_name_suffix=".json",
                                                 shard_name_template=""))
    parts = outcome.kept | "By task" >> beam.Partition(lambda kv, n: kv[0], len(tasks))
    for rank, task in enumerate(tasks):
      _ = (parts[rank] | f"Lines {task}" >> beam.Map(lambda kv: kv[1])
           | f"Write {task}" >> beam.io.WriteToText(os.path.join(out, task, "part"),
                                                     file_name_suffix=".jsonl.gz"))
  with FileSystems.open(os.path.join(out, "counts.json")) as f:
    found = json.load(io.TextIOWrapper(f, encoding="utf-8"))
  return {task: collections.Counter(c) for task, c in found.items()}
