"""The local runner of prepare: one process, two passes over each task's records.

Pass 1 (decide) reads the tasks in key order (records.py) and fingerprints
their documents into numpy columns as they are read, deduplicates them as
connected components (`components.Accumulator`: memory about the
fingerprints' own bytes, ~1 KB per document with the default MinHash
settings, no object per document), chooses the
held-out documents and saves each pending task's decisions in its folder
(decisions.py). With cross-task deduplication every task of the mixture is
read, since a task's duplicates depend on all.

Pass 2 (write) reads a task again, cleans and tokenises its train documents
in key order and writes them as shards of `data.shard_docs` (writing.py),
then its held-out split and stats.json. Resumable: saved decisions are
reused, and the shards already written are skipped (their progress says how
many train records they consumed). The Beam runner (beam.py) applies the same
stages, so both write the same folder.
"""
import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data.prepare import decisions, dedup_step, progress, records, writing
from midtrain_jax.data.prepare.run_plan import Plan
from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.dedup import columns, components
from midtrain_jax.documents import readers as sources

_ENCODE_CHUNK = 256


@dataclasses.dataclass
class _Read:
  """What pass 1 keeps of a task until the verdicts are known.

  Its malformed records, the records and documents read, its held-out
  candidates ((held-out hash key, key): `data.heldout_fraction` of the
  documents) and, with deduplication, each document's key and UTF-8 bytes in
  key order as numpy columns (what the tally of its verdict needs).
  """
  malformed: records.MalformedTally = dataclasses.field(default_factory=records.MalformedTally)
  read: int = 0
  docs: int = 0
  candidates: list = dataclasses.field(default_factory=list)
  keys: columns.Keys = dataclasses.field(default_factory=columns.Keys)
  nbytes: columns.Column = dataclasses.field(default_factory=lambda: columns.Column(np.int64))


def _read_task(plan: Plan, spec, accumulator: components.Accumulator | None,
               log: Callable[[str], None]) -> _Read:
  """Reads one task for pass 1; adds its documents' fingerprints to `accumulator`."""
  found = _Read()
  meter = progress.Meter(f"{spec.name} (deciding)", None, log)
  fraction = plan.data_cfg.heldout_fraction
  stream = records.read_task(spec, plan.data_cfg, plan.rank(spec.name))
  for chunk in dedup_batch.batches(stream, dedup_batch.BATCH_DOCS):
    found.read += len(chunk)
    docs = []
    for key, item in chunk:
      if isinstance(item, sources.Malformed):
        found.malformed.add(item)
      else:
        docs.append((key, item))
    nbytes = [len(item.text.encode("utf-8")) for _, item in docs]
    if accumulator is not None and docs:
      prints = plan.dedup.fingerprint([item.text for _, item in docs], spec.name)
      accumulator.add([key for key, _ in docs], [item.where for _, item in docs], spec.name,
                      prints)
      found.keys.append([key for key, _ in docs])
      found.nbytes.append(np.asarray(nbytes, np.int64))
    found.docs += len(docs)
    found.candidates += [c for c in (decisions.heldout_candidate(item.text, key, fraction)
                                     for key, item in docs) if c is not None]
    meter.update(len(chunk), len(docs), 0, sum(nbytes))
  return found


def _decisions(plan: Plan, name: str, read: _Read, verdicts: Mapping | None
               ) -> decisions.Decisions:
  """A task's decisions from what pass 1 read and the verdicts of the run."""
  tally, removed = dedup_step.Tally(), []
  if verdicts is not None:
    keys = map(tuple, read.keys.finish().tolist())
    for key, nbytes in zip(keys, read.nbytes.finish().tolist()):
      verdict = verdicts[key]  # Made on demand: once per document.
      tally.add(verdict, nbytes)
      if not verdict.kept:
        removed.append(key)
  gone = set(removed)
  candidates = [c for c in read.candidates if c[1] not in gone]
  heldout = decisions.choose_heldout(candidates, plan.data_cfg.heldout_max_docs)
  return decisions.Decisions(
      fingerprint=plan.fingerprints[name], records_read=read.read,
      malformed=read.malformed.as_dict(), dedup=tally.as_dict() if verdicts is not None else {},
      heldout_candidates=len(candidates), heldout=heldout, removed=removed,
      train_docs=read.docs - len(removed) - len(heldout))


def decide(plan: Plan, log: Callable[[str], None]) -> dict[str, decisions.Decisions]:
  """Pass 1: the decisions of every pending task (saved ones reused when all are saved)."""
  saved = {name: decisions.load(plan.task_dir(name), plan.fingerprints[name])
           for name in plan.pending}
  if all(saved.values()):
    return saved
  # With cross-task deduplication every task is read: its documents decide the others'.
  cross = plan.dedup is not None and plan.dedup.cross_task
  accumulator = plan.dedup.accumulator() if plan.dedup is not None else None
  reads = {}
  for spec in plan.specs:
    if spec.name in plan.pending or cross:
      reads[spec.name] = _read_task(plan, spec, accumulator, log)
      if spec.name in plan.pending:
        reads[spec.name].malformed.check(plan.data_cfg.max_malformed, spec.name)
  verdicts = accumulator.resolve() if accumulator is not None else None
  found = {}
  for name in plan.pending:
    found[name] = _decisions(plan, name, reads[name], verdicts)
    decisions.save(plan.task_dir(name), found[name])
    log(f"[prepare] {name}: decided {found[name].records_read:,} records: "
        f"{found[name].train_docs:,} train, {len(found[name].heldout)} held out")
  return found


class _ShardWriter:
  """Pass 2's output of one task: survivors into shards of `shard_docs`, progress with each."""

  def __init__(self, task_dir, shard_docs: int):
    self.task_dir, self.shard_docs = task_dir, shard_docs
    self.index, state = layout.finished_shards(task_dir)
    self.progress = writing.ShardProgress(state)
    self.pending = []

  def take(self, text, cleaned, hits, doc, decontaminated: bool) -> None:
    self.progress.add(text, cleaned, hits, doc, decontaminated)
    if doc is not None:
      self.pending.append(doc)
      if len(self.pending) == self.shard_docs:
        self.flush()

  def flush(self) -> None:
    layout.write_shard(self.task_dir, self.index, self.pending, self.progress.as_dict())
    self.index += 1
    self.pending = []

  def finish(self) -> None:
    """Writes the last, partial shard (or an empty first one when nothing survived)."""
    if self.pending or self.index == 0:
      self.flush()


def _write_chunk(plan: Plan, texts: list[str], writer: _ShardWriter,
                 meter: progress.Meter, chat_task: str | None) -> None:
  if not texts:
    return
  cleaned = writing.clean(plan.cleaner, texts)
  docs = iter(writing.encode(plan.tok, [c for c, _ in cleaned if c is not None], chat_task))
  before = (writer.progress.docs, writer.progress.tokens)
  for text, (kept, hits) in zip(texts, cleaned):
    writer.take(text, kept, hits, next(docs) if kept is not None else None,
                plan.cleaner is not None)
  meter.update(len(texts), writer.progress.docs - before[0],
               writer.progress.tokens - before[1], sum(len(t.encode("utf-8")) for t in texts))


def _write_heldout(plan: Plan, task_dir, texts: list[str], chat_task: str | None) -> dict:
  """Writes the held-out split (decontaminated; its hits are not counted: not trained on)."""
  kept = [c for c, _ in writing.clean(plan.cleaner, texts) if c is not None]
  docs = writing.encode(plan.tok, kept, chat_task)
  doc_bytes = [len(t.encode("utf-8")) for t in kept]
  layout.write_heldout(task_dir, docs, doc_bytes)
  return writing.heldout_record(docs, doc_bytes)


def write(plan: Plan, name: str, found: decisions.Decisions, log: Callable[[str], None]) -> dict:
  """Pass 2 over one task: shards from the first unwritten one, held-out split, stats."""
  spec, task_dir = plan.spec(name), plan.task_dir(name)
  writer = _ShardWriter(task_dir, plan.data_cfg.shard_docs)
  if writer.index:
    log(f"[prepare] {name}: resuming after {writer.index} finished shards")
  skip, removed, held = writer.progress.records, set(found.removed), set(found.heldout)
  meter = progress.Meter(name, found.train_docs - skip, log)
  chat_task = name if spec.chat else None
  heldout, chunk, seen = {}, [], 0
  for key, item in records.read_task(spec, plan.data_cfg, plan.rank(name)):
    if isinstance(item, sources.Malformed) or key in removed:
      continue
    if key in held:
      heldout[key] = item.text
      continue
    seen += 1  # A train document: every other one read.
    if seen > skip:
      chunk.append(item.text)
    if len(chunk) == _ENCODE_CHUNK:
      _write_chunk(plan, chunk, writer, meter, chat_task)
      chunk = []
  _write_chunk(plan, chunk, writer, meter, chat_task)
  writer.finish()
  held_record = _write_heldout(plan, task_dir, [heldout[k] for k in found.heldout], chat_task)
  stats = writing.task_stats(spec, plan.fingerprints[name], plan.files[name], found,
                             writer.index, writer.progress, held_record, plan.cleaner,
                             plan.dedup.record() if plan.dedup is not None else None)
  layout.write_stats(task_dir, stats)
  decisions.remove(task_dir)
  log(meter.line())
  return stats


def run(plan: Plan, log: Callable[[str], None]) -> dict[str, dict]:
  """Prepares the plan's pending tasks; returns their stats."""
  for name in plan.done:  # A run stopped between a task's stats.json and this removal.
    decisions.remove(plan.task_dir(name))
  found = decide(plan, log)
  return {name: write(plan, name, found[name], log) for name in plan.pending}
