"""Batch decontamination: scan documents, write cleaned shards, a hit report and a summary.

Command line: `python -m midtrain_jax.decontam` (midtrain_jax/decontam/__main__.py).
Writes, under the output folder:
  <task>/part-NNNNN.jsonl.gz  cleaned documents (each input record, with its
                              text cut or the record dropped);
  report.jsonl                one line per hit: doc_id, task, benchmark,
                              item_id, score, span, rule;
  summary.tsv / summary.json  counts per task x benchmark (names in counts.py).
"""
import collections
import json
import os
import sys
import time

from midtrain_jax import files
from midtrain_jax.decontam import counts, decontaminator
from midtrain_jax.documents.shards import ShardWriter

_BATCH_DOCS = 256


def _batches(docs, size):
  batch = []
  for doc in docs:
    batch.append(doc)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def hit_record(doc_id: str, task: str, hit) -> dict:
  """One line of `report.jsonl`."""
  return {"doc_id": doc_id, "task": task, "benchmark": hit.benchmark, "item_id": hit.item_id,
          "score": hit.score, "span": list(hit.span), "rule": hit.rule}


def run_local(deco: decontaminator.Decontaminator, sources, out: str, mode: str,
              text_key: str, shard_docs: int) -> dict[str, collections.Counter]:
  """Scans every source; writes shards and the report; returns the counts.

  Args:
    deco: the decontaminator.
    sources: (task name, iterator of (doc_id, record)) pairs.
    out: output folder.
    mode: "drop" or "cut".
    text_key: the record field holding the text.
    shard_docs: documents per output shard.

  Returns:
    {task: counts} (see `counts.py`).
  """
  os.makedirs(out, exist_ok=True)
  by_task = {}
  start, total_bytes = time.time(), 0
  with files.open_atomic(os.path.join(out, "report.jsonl"), "w", encoding="utf-8") as report:
    for task, docs in sources:
      writer = ShardWriter(os.path.join(out, task), shard_docs)
      tally = by_task.setdefault(task, collections.Counter())
      for batch in _batches(docs, _BATCH_DOCS):
        texts = [record[text_key] for _, record in batch]
        for (doc_id, record), (cleaned, hits) in zip(batch, deco.clean_batch(texts, mode)):
          total_bytes += len(record[text_key])
          tally.update(counts.document_counts(record[text_key], cleaned, hits))
          for hit in hits:
            report.write(json.dumps(hit_record(doc_id, task, hit)) + "\n")
          if cleaned is not None:
            writer.write({**record, text_key: cleaned})
        if tally["docs"] % (_BATCH_DOCS * 40) == 0:
          _progress(task, tally["docs"], total_bytes, start)
      writer.close()
      _progress(task, tally["docs"], total_bytes, start)
  return by_task


def _progress(task, docs, total_bytes, start):
  elapsed = max(time.time() - start, 1e-9)
  print(f"[decontam] {task}: {docs:,} docs; {total_bytes / 1e6:,.1f} MB total "
        f"at {total_bytes / 1e6 / elapsed:.1f} MB/s", file=sys.stderr, flush=True)


def write_summary(by_task: dict[str, collections.Counter], out: str) -> str:
  """Saves the task x benchmark table as `summary.tsv` and `summary.json`; returns it."""
  records = counts.summary_rows(by_task)
  rows = [counts.SUMMARY_COLUMNS] + [tuple(r.get(c, "") for c in counts.SUMMARY_COLUMNS)
                                     for r in records]
  files.write_text(os.path.join(out, "summary.tsv"),
                   "\n".join("\t".join(map(str, r)) for r in rows) + "\n")
  files.write_json(os.path.join(out, "summary.json"), records)
  widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths)) for r in rows)
