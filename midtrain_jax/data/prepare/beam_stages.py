"""The element functions and DoFns of the Beam preparation (beam.py wires them).

Each applies a stage of records.py, decisions.py, dedup_step.py or
writing.py to keyed elements, so the pipeline decides and writes exactly as
the local runner does. Keys are the canonical `(task rank, file rank,
position)`; a task is named by its rank.
"""
import collections
import heapq
import typing

import apache_beam as beam
from apache_beam.metrics import Metrics

from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import decisions, dedup_step, qau_scores, records, staging, writing
from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.dedup import components
from midtrain_jax.dedup import counts as dedup_counts
from midtrain_jax.documents import readers as sources

_NAMESPACE = "prepare"
# Stages with tagged outputs: Beam's inferred type would wrongly mix the outputs.
_TAGGED = beam.typehints.with_output_types(typing.Any)


def read_unit(element, specs: dict, data_cfg):
  """(key, ("doc", text) or ("bad", where, reason)) of every record of one read unit."""
  unit = element
  counter = Metrics.counter(_NAMESPACE, "records_read")
  for key, item in records.read_unit(specs[unit.task_rank], data_cfg, unit):
    counter.inc()
    if isinstance(item, sources.Malformed):
      yield key, ("bad", item.where, item.reason)
    else:
      yield key, ("doc", item.text, item.where)


def unit_of(keyed) -> tuple:
  return keyed[0][:2]


# Records of a read unit ranked together: the largest group of the shard numbering.
BLOCK = 4096


def block_of(key: tuple) -> tuple:
  """(task rank, file rank, block): the `BLOCK` consecutive records of a file a key is in."""
  return key[0], key[1], key[2] // BLOCK


def offsets(counts: dict) -> dict:
  """{part: counts of the task's parts before it} from per-part counts.

  A part is a key prefix that starts with the task rank (a read unit, a block).
  """
  found, by_task = {}, collections.defaultdict(int)
  for unit in sorted(counts):
    found[unit] = by_task[unit[0]]
    by_task[unit[0]] += counts[unit]
  return found


class _Offsets:
  """`offsets` of a side input, computed once per side input a worker sees."""

  def __init__(self):
    self._source, self.offsets, self.totals = None, {}, {}

  def of(self, counts: dict) -> "_Offsets":
    if counts is not self._source:
      self._source, self.offsets = counts, offsets(counts)
      self.totals = collections.Counter()
      for unit, n in counts.items():
        self.totals[unit[0]] += n
    return self


class WithinCap(beam.DoFn):
  """Keeps the records within `data.max_docs_per_task` of their task, in key order."""

  def __init__(self, cap: int):
    self._cap, self._memo = cap, _Offsets()

  def process(self, keyed, counts):
    key = keyed[0]
    if self._memo.of(counts).offsets[key[:2]] + key[2] < self._cap:
      yield keyed


class MalformedTally(beam.CombineFn):
  """A task's `MalformedTally.as_dict()` from its (key, where, reason) malformed records.

  Holds the counts and the first `MALFORMED_EXAMPLES` records by key, never
  the task's records: a corpus of malformed lines is tallied in bounded memory.
  """

  def create_accumulator(self):
    return 0, collections.Counter(), []

  def add_input(self, acc, bad):
    count, kinds, first = acc
    kinds[records.reason_kind(bad[2])] += 1
    first.append(bad)
    if len(first) > 2 * records.MALFORMED_EXAMPLES:  # Amortised: trimmed now and then.
      first = heapq.nsmallest(records.MALFORMED_EXAMPLES, first)
    return count + 1, kinds, first

  def merge_accumulators(self, accs):
    count, kinds, first = 0, collections.Counter(), []
    for c, k, f in accs:
      count, first = count + c, first + f
      kinds.update(k)
    return count, kinds, heapq.nsmallest(records.MALFORMED_EXAMPLES, first)

  def extract_output(self, acc):
    count, kinds, first = acc
    tally = records.MalformedTally()
    for _, where, reason in heapq.nsmallest(records.MALFORMED_EXAMPLES, first):
      tally.add(sources.Malformed(where, reason))
    tally.malformed, tally.by_reason = count, dict(kinds)
    return tally.as_dict()


class Fingerprint(beam.DoFn):
  """Fingerprints a batch of documents: one `components.Item` each."""

  def __init__(self, step: dedup_step.DedupStep, names: dict):
    self._step, self._names = step, names

  def process(self, batch):
    by_task = collections.defaultdict(list)
    for key, payload in batch:  # A batch mixes tasks, and exact-only tasks apart.
      by_task[key[0]].append((key, payload))
    for rank, docs in by_task.items():
      prints = self._step.fingerprint([p[1] for _, p in docs], self._names[rank])
      for (key, payload), fp in zip(docs, prints):
        yield components.Item(key, payload[2], self._names[rank], fp)


class ReferencePrints(beam.DoFn):
  """(doc id, fingerprint) of a batch of reference documents."""

  def __init__(self, step: dedup_step.DedupStep):
    self._step = step

  def process(self, batch):
    yield from self._step.reference_fingerprint(batch)


def reference_docs(path: str):
  """(doc id "file:line", text) of one reference file."""
  yield from dedup_batch.reference_docs([path])


@_TAGGED
def judged(joined):
  """(key, text) of a kept document; tagged "counts" and "example" for the task's tally."""
  key, groups = joined
  (_, text, _), verdict = groups["docs"][0], groups["verdict"][0]
  counted = dedup_counts.document_counts(verdict, len(text.encode("utf-8")))
  yield beam.pvalue.TaggedOutput("counts", (key[0], dict(counted)))
  if verdict.match is not None:
    yield beam.pvalue.TaggedOutput("example", (key[0], (key, dedup_batch.verdict_record(verdict))))
  if verdict.kept:
    yield key, text
  else:
    Metrics.counter(_NAMESPACE, "duplicates_removed").inc()


def sum_counts(found) -> dict:
  """The sum of counter dicts (a combiner: partial sums add up)."""
  total = collections.Counter()
  for part in found:
    total.update(part)
  return dict(total)


def tally(found_counts: list, examples: list) -> dict:
  """A task's `dedup_step.Tally.as_dict()` from its summed counts and first examples."""
  return {"counts": dict(sorted((found_counts or [{}])[0].items())),
          "examples": [record for _, record in sorted((examples or [[]])[0])]}


def candidate(keyed, fraction: float):
  """(task rank, (held-out hash key, key)) of a kept held-out candidate."""
  key, text = keyed
  found = decisions.heldout_candidate(text, key, fraction)
  if found is not None:
    yield key[0], found


@_TAGGED
def split_heldout(keyed, chosen: dict):
  """Train documents to the main output; held-out ones tagged "heldout"."""
  key, text = keyed
  if key in chosen.get(key[0], ()):
    yield beam.pvalue.TaggedOutput("heldout", (key[0], (key, text)))
  else:
    yield key, text


class CleanEncode(beam.DoFn):
  """Decontaminates, tokenises and (with QAU) scores a batch of train documents.

  Emits (key, (stored document or None, counts of that record as a
  `ShardProgress` dict, quality score or None)).
  """

  def __init__(self, staged: staging.Staged, scorer=None,
               chat_tasks: dict[int, str] | None = None):
    self._staged, self._cleaner, self._scorer = staged, staged.cleaner, scorer
    self._chat_tasks = dict(chat_tasks or {})  # {task rank: name} of chat tasks.
    self._tok = None

  def setup(self):
    self._tok = staging.load_tokenizer(self._staged)

  def process(self, batch):
    texts = [text for _, text in batch]
    cleaned = writing.clean(self._cleaner, texts)
    stored = writing.encode_keyed(
        self._tok, [(key, c) for (key, _), (c, _) in zip(batch, cleaned) if c is not None],
        self._chat_tasks)
    scores = (qau_scores.score_documents(self._scorer, stored, self._tok.adds_bos).tolist()
              if self._scorer is not None else [None] * len(stored))
    found = iter(zip(stored, scores))
    for (key, text), (kept, hits) in zip(batch, cleaned):
      doc, score = next(found) if kept is not None else (None, None)
      counts = writing.ShardProgress()
      counts.add(text, kept, hits, doc, self._cleaner is not None)
      yield key, (doc, counts.as_dict(), score)


@_TAGGED
def survivor_ranks(grouped):
  """Per block: (key, kept documents before it in the block); tagged "total" per block."""
  block, flags = grouped
  flags = sorted(flags)
  Metrics.distribution(_NAMESPACE, "records_per_block").update(len(flags))
  before = 0
  for position, kept in flags:
    yield block[:2] + (position,), before
    before += int(kept)
  yield beam.pvalue.TaggedOutput("total", (block, before))


@_TAGGED
class AssignShard(beam.DoFn):
  """((task rank, shard), (key, doc, counts, score)); tagged "tail" past the last shard.

  The side input holds the kept documents of every block; a record's number
  is those of the blocks before it plus those before it in its block.
  """

  def __init__(self, shard_docs: int):
    self._shard_docs, self._memo = shard_docs, _Offsets()

  def process(self, joined, totals):
    key, groups = joined
    doc, counts, score = groups["payload"][0]
    memo = self._memo.of(totals)
    shard = writing.shard_of(memo.offsets[block_of(key)] + groups["rank"][0], self._shard_docs)
    if shard >= writing.shard_count(memo.totals[key[0]], self._shard_docs):
      yield beam.pvalue.TaggedOutput("tail", (key[0], counts))
    else:
      yield (key[0], shard), (key, doc, counts, score)


class WriteShard(beam.DoFn):
  """Writes one train shard's records (and, scored, their part of the quality scores).

  Emits (task rank, (shard, its counts)).
  """

  def __init__(self, out: str, names: dict, scored: bool):
    self._out, self._names, self._scored = out, names, scored

  def process(self, grouped):
    (rank, shard), members = grouped
    members = sorted((m for m in members if m is not None), key=lambda m: m[0])
    Metrics.distribution(_NAMESPACE, "records_per_shard").update(len(members))
    task_dir = files.path(self._out) / self._names[rank]
    written = [m for m in members if m[1] is not None]
    docs = [m[1] for m in written]
    layout.write_documents(layout.train_shard(task_dir, shard), docs)
    if self._scored:
      layout.write_quality_scores_part(task_dir, shard, [m[3] for m in written],
                                       [len(d) for d in docs])
    total = writing.ShardProgress()
    for member in members:
      total.merge(writing.ShardProgress(member[2]))
    Metrics.counter(_NAMESPACE, "train_docs").inc(len(docs))
    Metrics.counter(_NAMESPACE, "train_tokens").inc(sum(len(d) for d in docs))
    yield rank, (shard, total.as_dict())


class WriteHeldout(beam.DoFn):
  """Writes one task's held-out split in the chosen order; emits (rank, heldout record)."""

  def __init__(self, out: str, names: dict, staged: staging.Staged,
               chat_tasks: dict[int, str] | None = None):
    self._out, self._names, self._staged, self._cleaner = out, names, staged, staged.cleaner
    self._chat_tasks = dict(chat_tasks or {})  # {task rank: name} of chat tasks.
    self._tok = None

  def setup(self):
    self._tok = staging.load_tokenizer(self._staged)

  def process(self, grouped, chosen):
    rank, members = grouped
    texts = dict(m for m in members if m is not None)
    ordered = [texts[key] for key in chosen.get(rank, [])]
    kept = [c for c, _ in writing.clean(self._cleaner, ordered) if c is not None]
    docs = writing.encode(self._tok, kept, self._chat_tasks.get(rank))
    doc_bytes = [len(t.encode("utf-8")) for t in kept]
    layout.write_heldout(files.path(self._out) / self._names[rank], docs, doc_bytes)
    Metrics.counter(_NAMESPACE, "heldout_docs").inc(len(docs))
    yield rank, writing.heldout_record(docs, doc_bytes)


def cumulative_progress(shards: list, tail: list) -> tuple[list, writing.ShardProgress]:
  """(each shard's cumulative progress, the task's total) from per-shard counts."""
  total, found = writing.ShardProgress(), []
  for _, state in sorted(shards, key=lambda shard: shard[0]):
    total.merge(writing.ShardProgress(state))
    found.append(total.as_dict())
  for state in tail:
    total.merge(writing.ShardProgress(state))
  return found, total


class WriteStats(beam.DoFn):
  """Writes a task's shard progress files, then its stats.json (the task is done).

  Args:
    tasks: {task rank: (spec, task folder, fingerprint, source files)}.
    cleaner: the decontamination (None: off).
    dedup_record: `DedupStep.record()` (None: no deduplication).
    max_malformed: `data.max_malformed`.
    scorer: the quality scorer's fingerprint when the documents were scored (QAU).
  """

  def __init__(self, tasks: dict, cleaner, dedup_record: dict | None, max_malformed: int,
               scorer: str | None = None):
    self._tasks, self._cleaner = tasks, cleaner
    self._dedup_record, self._max_malformed = dedup_record, max_malformed
    self._scorer = scorer

  def process(self, grouped, read: dict, candidates: dict):
    rank, groups = grouped
    spec, task_dir, fingerprint, source_files = self._tasks[rank]
    malformed = (groups["malformed"] or [records.MalformedTally().as_dict()])[0]
    records.MalformedTally(malformed).check(self._max_malformed, spec.name)
    found = decisions.Decisions(
        fingerprint, read.get(rank, 0), malformed,
        tally(groups["dedup_counts"], groups["dedup_examples"])
        if self._dedup_record is not None else {},
        candidates.get(rank, 0), heldout=[], removed=[], train_docs=0)
    progress, total = cumulative_progress(groups["shards"], groups["tail"])
    task_dir = files.path(task_dir)
    # A retried bundle (remote runners retry) finds the task done and only tidies up.
    if not (task_dir / layout.STATS).exists():
      for index, state in enumerate(progress):
        layout.write_shard_progress(task_dir, index, state)
      stats = writing.task_stats(spec, fingerprint, source_files, found, len(progress), total,
                                 groups["heldout"][0], self._cleaner, self._dedup_record)
      if self._scorer is not None:  # Each train document's score and length (qau_scores.py).
        layout.join_quality_scores(task_dir.parent, spec.name, len(progress),
                                   scorer=self._scorer, task_fingerprint=fingerprint)
      layout.write_stats(task_dir, stats)
    if self._scorer is not None:
      layout.remove_quality_scores_parts(task_dir, len(progress))
    yield spec.name
