"""The local runner of prepare: one process, two passes over each task's records.

Pass 1 (decide) reads the tasks in key order (records.py), fingerprints and
deduplicates them, chooses the held-out documents and saves each pending
task's decisions in its folder (decisions.py). With cross-task deduplication
every task of the mixture is read, since a task's duplicates depend on all.

Pass 2 (write) reads a task again, cleans and tokenises its train documents
in key order and writes them as shards of `data.shard_docs` (writing.py),
then its held-out split and stats.json. Resumable: saved decisions are
reused, and the shards already written are skipped (their progress says how
many train records they consumed). The Beam runner (beam.py) applies the same
stages, so both write the same folder.
"""
from collections.abc import Callable

from midtrain_jax.data import layout
from midtrain_jax.data.prepare import decisions, dedup_step, progress, records, writing
from midtrain_jax.data.prepare.run_plan import Plan
from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.documents import readers as sources

_ENCODE_CHUNK = 256


def _decide_task(plan: Plan, spec, decider, fingerprint: str) -> decisions.Decisions:
  """Pass 1 over one task: every record decided in key order."""
  data_cfg, step = plan.data_cfg, plan.dedup
  malformed, tally = records.MalformedTally(), dedup_step.Tally()
  kept, candidates, read = [], [], 0
  stream = records.read_task(spec, data_cfg, plan.rank(spec.name))
  for chunk in dedup_batch.batches(stream, dedup_batch.BATCH_DOCS):
    read += len(chunk)
    docs = [(key, item) for key, item in chunk if isinstance(item, sources.Document)]
    for _, item in chunk:
      if isinstance(item, sources.Malformed):
        malformed.add(item)
    verdicts = [None] * len(docs)
    if step is not None:
      prints = step.fingerprint([item.text for _, item in docs], spec.name)
      items = [(key, spec.name, item.where, fp) for (key, item), fp in zip(docs, prints)]
      verdicts = [v for _, v in dedup_step.decide_in_order(step, decider, items)]
    for (key, item), verdict in zip(docs, verdicts):
      if verdict is not None:
        tally.add(verdict, len(item.text.encode("utf-8")))
        if not verdict.kept:
          continue
      kept.append(key)
      candidate = decisions.heldout_candidate(item.text, key, data_cfg.heldout_fraction)
      if candidate is not None:
        candidates.append(candidate)
  malformed.check(data_cfg.max_malformed, spec.name)
  heldout = decisions.choose_heldout(candidates, data_cfg.heldout_max_docs)
  return decisions.Decisions(
      fingerprint=fingerprint, records_read=read, malformed=malformed.as_dict(),
      dedup=tally.as_dict() if step is not None else {},
      heldout_candidates=len(candidates), heldout=heldout,
      train=decisions.split(kept, heldout))


def decide(plan: Plan, log: Callable[[str], None]) -> dict[str, decisions.Decisions]:
  """Pass 1: the decisions of every pending task (saved ones reused when all are saved)."""
  saved = {name: decisions.load(plan.task_dir(name), plan.fingerprints[name])
           for name in plan.pending}
  if all(saved.values()):
    return saved
  cross = plan.dedup is not None and plan.dedup.cross_task
  # The decider is fed every document before the next; the first is that of task rank 0.
  decider = plan.dedup.decider() if plan.dedup is not None else None
  found = {}
  for spec in plan.specs:
    if spec.name not in plan.pending and not cross:
      continue
    result = _decide_task(plan, spec, decider, plan.fingerprints[spec.name])
    if spec.name in plan.pending:
      decisions.save(plan.task_dir(spec.name), result)
      found[spec.name] = result
      log(f"[prepare] {spec.name}: decided {result.records_read:,} records: "
          f"{len(result.train):,} train, {len(result.heldout)} held out")
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
                 meter: progress.Meter) -> None:
  if not texts:
    return
  cleaned = writing.clean(plan.cleaner, texts)
  docs = iter(writing.encode(plan.tok, [c for c, _ in cleaned if c is not None]))
  before = (writer.progress.docs, writer.progress.tokens)
  for text, (kept, hits) in zip(texts, cleaned):
    writer.take(text, kept, hits, next(docs) if kept is not None else None,
                plan.cleaner is not None)
  meter.update(len(texts), writer.progress.docs - before[0],
               writer.progress.tokens - before[1], sum(len(t.encode("utf-8")) for t in texts))


def _write_heldout(plan: Plan, task_dir, texts: list[str]) -> dict:
  """Writes the held-out split (decontaminated; its hits are not counted: not trained on)."""
  kept = [c for c, _ in writing.clean(plan.cleaner, texts) if c is not None]
  docs = writing.encode(plan.tok, kept)
  doc_bytes = [len(t.encode("utf-8")) for t in kept]
  layout.write_heldout(task_dir, docs, doc_bytes)
  return writing.heldout_record(docs, doc_bytes)


def write(plan: Plan, name: str, found: decisions.Decisions, log: Callable[[str], None]) -> dict:
  """Pass 2 over one task: shards from the first unwritten one, held-out split, stats."""
  spec, task_dir = plan.spec(name), plan.task_dir(name)
  writer = _ShardWriter(task_dir, plan.data_cfg.shard_docs)
  if writer.index:
    log(f"[prepare] {name}: resuming after {writer.index} finished shards")
  skip, train, held = writer.progress.records, set(found.train), set(found.heldout)
  meter = progress.Meter(name, len(found.train) - skip, log)
  heldout, chunk, seen = {}, [], 0
  for key, item in records.read_task(spec, plan.data_cfg, plan.rank(name)):
    if key in held:
      heldout[key] = item.text
    elif key in train:
      seen += 1
      if seen > skip:
        chunk.append(item.text)
      if len(chunk) == _ENCODE_CHUNK:
        _write_chunk(plan, chunk, writer, meter)
        chunk = []
  _write_chunk(plan, chunk, writer, meter)
  writer.finish()
  held_record = _write_heldout(plan, task_dir, [heldout[k] for k in found.heldout])
  stats = writing.task_stats(spec, plan.fingerprints[name], plan.files[name], found,
                             writer.index, writer.progress, held_record, plan.cleaner,
                             plan.dedup.record() if plan.dedup is not None else None)
  layout.write_stats(task_dir, stats)
  decisions.remove(task_dir)
  log(meter.line())
  return stats


def run(plan: Plan, log: Callable[[str], None]) -> dict[str, dict]:
  """Prepares the plan's pending tasks; returns their stats."""
  found = decide(plan, log)
  return {name: write(plan, name, found[name], log) for name in plan.pending}
