"""Apache Beam version of the batch decontamination scan.

The same work as `batch.run_local`, written as a Beam pipeline so it
scales out on Dataflow, Flink or Spark (tested here with the DirectRunner),
like seqio's own cache pipeline. The index is built (or found) once by the
launcher and read by every worker in `DoFn.setup`; for a remote runner put the
cache directory on storage the workers can read (e.g. `--cache_dir=gs://...`).

Needs the `beam` extra: `pip install midtrain_jax[beam]`.
"""
import collections
import hashlib
import io
import json
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from midtrain_jax.decontam import batch, counts, decontaminator
from midtrain_jax.decontam import index as index_lib
from midtrain_jax.decontam import params as params_lib


class _CleanDoFn(beam.DoFn):
  """Cleans a batch of JSONL lines; emits records, hits and counters."""

  def __init__(self, index_file, params, mode, text_key, id_key, task):
    self._index_file, self._params = index_file, params
    self._mode, self._text_key, self._id_key = mode, text_key, id_key
    self._task = task
    self._deco = None

  def setup(self):
    with FileSystems.open(self._index_file) as f:
      data = io.BytesIO(f.read())
    index = index_lib.BenchmarkIndex.load(data, params_lib.from_overrides(**self._params))
    self._deco = decontaminator.Decontaminator(index)

  def process(self, lines):
    records = [json.loads(line) for line in lines]
    texts = [r[self._text_key] for r in records]
    task = self._task
    for record, (cleaned, hits) in zip(
        records, self._deco.clean_batch(texts, self._mode)):
      text = record[self._text_key]
      doc_id = str(record.get(self._id_key) or hashlib.sha1(
          text.encode("utf-8")).hexdigest()[:16])
      for name, value in counts.document_counts(text, cleaned, hits).items():
        yield beam.pvalue.TaggedOutput("counts", ((task, name), value))
      for hit in hits:
        yield beam.pvalue.TaggedOutput("hits", json.dumps(batch.hit_record(doc_id, task, hit)))
      if cleaned is None:
        continue
      yield json.dumps({**record, self._text_key: cleaned}, ensure_ascii=False)


def run(inputs: Sequence[str], out: str, benchmarks: Sequence[str],
        mode: str = "drop", text_key: str = "text", id_key: str = "id",
        cache_dir: str | None = None, runner: str = "DirectRunner",
        params: dict | None = None, pipeline_args: Sequence[str] = ()) -> dict:
  """Runs the scan as a Beam pipeline over JSONL(.gz) files.

  Args:
    inputs: JSONL(.gz) paths or globs; each is one task in the summary.
    out: output directory (same layout as the local command).
    benchmarks: benchmark names.
    mode: "drop" or "cut".
    text_key: field with the text.
    id_key: field with the document id (a text hash when missing).
    cache_dir: index cache root (must be readable by the workers).
    runner: Beam runner name.
    params: `DecontamParams` overrides.
    pipeline_args: extra Beam pipeline options.

  Returns:
    {task: counts} as `batch.run_local`.
  """
  params = dict(params or {})
  # Builds and caches the index here, once, rather than on every worker.
  decontaminator.Decontaminator.from_benchmarks(benchmarks, cache_dir, **params)
  index_file = decontaminator.index_path(tuple(dict.fromkeys(benchmarks)),
                                         params_lib.from_overrides(**params), cache_dir)
  os.makedirs(out, exist_ok=True)
  options = PipelineOptions(list(pipeline_args), runner=runner)
  with beam.Pipeline(options=options) as pipeline:
    hits, counts = [], []
    for path in inputs:
      task = os.path.basename(path).split(".")[0]
      results = (
          pipeline
          | f"Read {task}" >> beam.io.ReadFromText(path)
          | f"Batch {task}" >> beam.BatchElements(min_batch_size=16,
                                                  max_batch_size=256)
          | f"Clean {task}" >> beam.ParDo(_CleanDoFn(
              index_file, params, mode, text_key, id_key, task)).with_outputs(
                  "hits", "counts", main="docs"))
      _ = results.docs | f"Write {task}" >> beam.io.WriteToText(
          os.path.join(out, task, "part"), file_name_suffix=".jsonl.gz")
      hits.append(results.hits)
      counts.append(results.counts)
    _ = (hits | "All hits" >> beam.Flatten()
         | "Write report" >> beam.io.WriteToText(
             os.path.join(out, "report"), file_name_suffix=".jsonl",
             shard_name_template=""))
    _ = (counts | "All counts" >> beam.Flatten()
         | "Sum" >> beam.CombinePerKey(sum)
         | "Format counts" >> beam.Map(json.dumps)
         | "Write counts" >> beam.io.WriteToText(
             os.path.join(out, "counts"), file_name_suffix=".jsonl",
             shard_name_template=""))
  by_task = collections.defaultdict(collections.Counter)
  with FileSystems.open(os.path.join(out, "counts.jsonl")) as f:
    for line in io.TextIOWrapper(f, encoding="utf-8"):
      (task, name), value = json.loads(line)
      by_task[task][name] = value
  return dict(by_task)
