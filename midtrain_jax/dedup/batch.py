"""Batch deduplication of JSONL files: kept documents, a duplicate report and a summary.

Command line: `python -m midtrain_jax.dedup` (dedup/__main__.py); `beam.py`
writes the same folder. Under the output folder:
  <task>/part-NNNNN.jsonl.gz  the kept records of each input file, unchanged, in order
  duplicates.jsonl            one line per removed document: doc_id, duplicate_of,
                              level, similarity, task, duplicate_of_task, reference
  reference_matches.jsonl     (reference mode "count") kept documents that match
                              the reference set, same fields
  malformed.jsonl             one line per unreadable record: where (file:line), reason
  summary.tsv / summary.json  counts per task and level (counts.py)
  run.json                    the settings and inputs of the run

A document's id is its record's `id` field, else "<task>:<line>". Every file
is written under a temporary name and renamed; `summary.json` is written last
and removed first, so a folder with a summary matching `run.json` holds a
finished run (`is_finished`), and an interrupted run is redone whole (the
keep decisions depend on every document) with the same result. Which copy is
kept: components over verified pairs, the best copy (the file that comes first,
then the first position) kept (components.py).
"""
import collections
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

from etils import epath

from midtrain_jax import files
from midtrain_jax.dedup import components, counts, deduplicator
from midtrain_jax.documents import readers as sources
from midtrain_jax.documents.shards import ShardWriter

# Documents fingerprinted together (prepare, the command, Beam, the reference
# set): large enough for the vectorised hashing to pay off, small enough that a
# batch of long documents stays a few MB of text.
BATCH_DOCS = 512
SUMMARY = "summary.json"
RUN = "run.json"


def read_records(path: str, text_key: str = "text", id_key: str = "id"
                 ) -> Iterator[tuple[str, dict] | sources.Malformed]:
  """(doc id, record) of each line of a JSONL(.gz/.zst) file, or Malformed with its file:line.

  Args:
    path: the file.
    text_key: the field holding the text (a record without a string one is malformed).
    id_key: the field holding the id (else "<task>:<line>").
  """
  task = sources.file_task_name(path)
  for item in sources.jsonl_records(path):
    if isinstance(item, sources.Malformed):
      yield item
      continue
    where, record = item
    text = record.get(text_key)
    if not isinstance(text, str):
      yield sources.Malformed(where, f"missing text field {text_key!r}")
    elif not text.strip():
      yield sources.Malformed(where, "empty document")
    else:
      yield str(record.get(id_key, f"{task}:{where.rsplit(':', 1)[1]}")), record


def reference_docs(patterns: Sequence[str], text_key: str = "text"
                   ) -> Iterator[tuple[str, str]]:
  """(where, text) of the documents of reference files.

  Unreadable records (bad JSON, no text, ...) are skipped; a file with any gets
  one warning on stderr with their count and where the first is.
  """
  for path in sources.expand(list(patterns)):
    bad, first = 0, None
    for item in sources.read_files([path], sources.field_text(text_key)):
      if isinstance(item, sources.Document):
        yield item.where, item.text
      else:
        bad += 1
        first = first or item
    if bad:
      print(f"[dedup] WARNING: reference file {path}: {bad} malformed records skipped, "
            f"first at {first.where}: {first.reason}", file=sys.stderr, flush=True)


def batches(items: Iterable, size: int) -> Iterator[list]:
  """Consecutive lists of up to `size` items."""
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def verdict_record(verdict: deduplicator.Verdict) -> dict:
  """One line of `duplicates.jsonl` (or `reference_matches.jsonl`)."""
  m = verdict.match
  return {"doc_id": verdict.doc_id, "duplicate_of": m.duplicate_of, "level": m.level,
          "similarity": round(m.similarity, 4), "task": verdict.task,
          "duplicate_of_task": m.task, "reference": m.reference}


def run_fingerprint(inputs: Sequence[str], settings: dict) -> str:
  """A hash of the inputs (path, size, modification time) and the settings."""
  stamps = []
  for path in inputs:
    info = epath.Path(path).stat()
    stamps.append((path, info.length, int(info.mtime)))
  text = json.dumps([stamps, settings], sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_finished(out: str, fingerprint: str) -> bool:
  """True when `out` holds a finished run with this fingerprint."""
  run, summary = os.path.join(out, RUN), os.path.join(out, SUMMARY)
  if not (os.path.exists(run) and os.path.exists(summary)):
    return False
  with open(run, encoding="utf-8") as f:
    return json.load(f).get("fingerprint") == fingerprint


def start_run(out: str, tasks: Sequence[str], fingerprint: str, settings: dict) -> None:
  """Clears what an earlier (finished or interrupted) run left and records this one."""
  os.makedirs(out, exist_ok=True)
  if os.path.exists(os.path.join(out, SUMMARY)):
    os.remove(os.path.join(out, SUMMARY))  # First: the folder no longer reads as finished.
  for folder in [out] + [os.path.join(out, t) for t in tasks]:
    if os.path.isdir(folder):
      for name in os.listdir(folder):
        if ".tmp" in name or (folder != out and name.startswith("part-")):
          os.remove(os.path.join(folder, name))
  files.write_json(os.path.join(out, RUN), {"fingerprint": fingerprint, "settings": settings})


def reference_prints(dedup: deduplicator.Deduplicator, patterns: Sequence[str],
                     text_key: str = "text") -> list[tuple[str, deduplicator.Fingerprint]]:
  """(where, fingerprint) of the documents of reference files (`reference_docs`)."""
  out = []
  for docs in batches(reference_docs(patterns, text_key), BATCH_DOCS):
    out += zip([where for where, _ in docs], dedup.fingerprint([text for _, text in docs]))
  return out


def fingerprint_files(dedup: deduplicator.Deduplicator, inputs: Sequence[str],
                      accumulator: components.Accumulator, text_key: str = "text",
                      id_key: str = "id", exact_only: Sequence[str] = ()) -> None:
  """Adds every readable record of the files to `accumulator`; key = (file rank, position)."""
  for rank, path in enumerate(inputs):
    task = sources.file_task_name(path)
    for chunk in batches(enumerate(read_records(path, text_key, id_key)), BATCH_DOCS):
      good = [(position, item) for position, item in chunk
              if not isinstance(item, sources.Malformed)]
      prints = dedup.fingerprint([record[text_key] for _, (_, record) in good],
                                 exact_only=task in exact_only)
      accumulator.add([(rank, position) for position, _ in good],
                      [doc_id for _, (doc_id, _) in good], task, prints)


def run_local(dedup: deduplicator.Deduplicator, inputs: Sequence[str], out: str,
              text_key: str = "text", id_key: str = "id", shard_docs: int = 100_000,
              cross_task: bool = True, exact_only: Sequence[str] = (),
              reference: Sequence[tuple[str, deduplicator.Fingerprint]] = ()
              ) -> dict[str, collections.Counter]:
  """Deduplicates the files (highest priority first: the keep rule); writes the output folder.

  Two passes: every file is read and fingerprinted into a
  `components.Accumulator` (numpy columns, no object per document), which
  decides, then every file is read again to write its kept records.

  Args:
    dedup: the deduplicator (its settings and fingerprints).
    inputs: JSONL(.gz/.zst) files, one task each, highest priority first.
    out: output folder.
    text_key: the record field holding the text.
    id_key: the record field holding the document id.
    shard_docs: kept documents per output shard.
    cross_task: compare documents across files (else each file alone).
    exact_only: tasks compared by exact copies only (e.g. templated text).
    reference: (doc id, fingerprint) of the reference set (`reference_prints`).

  Returns:
    {task: counts} (see counts.py).
  """
  os.makedirs(out, exist_ok=True)
  start = time.time()
  accumulator = components.Accumulator(dedup.params, reference, cross_task)
  fingerprint_files(dedup, inputs, accumulator, text_key, id_key, exact_only)
  verdicts = accumulator.resolve()
  print(f"[dedup] {len(verdicts):,} documents fingerprinted and decided in "
        f"{time.time() - start:.1f} s", file=sys.stderr, flush=True)
  by_task = {}
  with files.open_atomic(os.path.join(out, "duplicates.jsonl"), "w", encoding="utf-8") as dups, \
      files.open_atomic(os.path.join(out, "reference_matches.jsonl"), "w",
                        encoding="utf-8") as refs, \
      files.open_atomic(os.path.join(out, "malformed.jsonl"), "w", encoding="utf-8") as bad:
    for rank, path in enumerate(inputs):
      task = sources.file_task_name(path)
      tally = by_task.setdefault(task, collections.Counter())
      writer = ShardWriter(os.path.join(out, task), shard_docs)
      for position, item in enumerate(read_records(path, text_key, id_key)):
        if isinstance(item, sources.Malformed):
          tally["malformed"] += 1
          bad.write(json.dumps({"where": item.where, "reason": item.reason}) + "\n")
          continue
        verdict = verdicts[(rank, position)]
        tally.update(counts.document_counts(verdict, len(item[1][text_key].encode("utf-8"))))
        if verdict.match is not None:
          (refs if verdict.kept else dups).write(json.dumps(verdict_record(verdict)) + "\n")
        if verdict.kept:
          writer.write(item[1])
      writer.close()
      _report(task, tally, out)
  return by_task


def _report(task: str, tally: collections.Counter, out: str) -> None:
  if tally["malformed"]:
    print(f"[dedup] WARNING: {task}: {tally['malformed']} malformed records skipped, "
          f"listed in {os.path.join(out, 'malformed.jsonl')}", file=sys.stderr, flush=True)
  capped = (f"; bucket cap skipped {tally['skipped_comparisons']:,} comparisons"
            if tally["skipped_comparisons"] else "")
  print(f"[dedup] {task}: {tally['docs']:,} docs, {tally['removed_docs']:,} removed, "
        f"{tally['bytes'] / 1e6:,.1f} MB{capped}", file=sys.stderr, flush=True)


def write_summary(by_task: dict[str, collections.Counter], out: str) -> str:
  """Saves the task x level table as `summary.tsv` and, last, `summary.json`; returns it."""
  rows = counts.summary_rows(by_task)
  table = [counts.SUMMARY_COLUMNS] + [[str(r.get(c, "")) for c in counts.SUMMARY_COLUMNS]
                                      for r in rows]
  files.write_text(os.path.join(out, "summary.tsv"), "\n".join("\t".join(r) for r in table) + "\n")
  files.write_json(os.path.join(out, SUMMARY), {"rows": rows, "counts": {
      task: dict(sorted(c.items())) for task, c in sorted(by_task.items())}})
  return counts.format_table(rows)


def read_summary(out: str) -> str:
  """The printed table of a finished run."""
  with open(os.path.join(out, SUMMARY), encoding="utf-8") as f:
    return counts.format_table(json.load(f)["rows"])
