"""The deduplication step of prepare: `data.dedup` applied to each task's documents.

Runs on every document a task reads, before the held-out split (so no
held-out document is a copy of a training one) and before decontamination.
Duplicates are skipped but counted (counter names of dedup/counts.py) and
recorded in the task's stats.json; the manifest repeats the totals.

Within a task the first copy is kept. With `data.dedup.cross_task` one index
spans the mixture: tasks are deduplicated in `dedup_order` (the tasks of
`data.dedup.priority` first, then mixture order), so a copy is kept in the
highest-priority task that has it. A task's result then depends on the tasks
before it, so its fingerprint includes theirs: changing the settings, the
order or an earlier task prepares it again. When an earlier task is already
prepared, its documents are read again to rebuild the index (no output). A
resumed task replays its records before the resume point the same way, so an
interrupted prepare gives the same shards as an uninterrupted one.

Tasks of `data.dedup.exact_only` (templated or generated text, whose documents
share a template rather than content) are compared by exact copies only: their
documents get only the exact fingerprint and join only the exact index.
"""
import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence

from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.dedup import counts, deduplicator, params
from midtrain_jax.documents import readers as sources

_EXAMPLES = 20


def enabled(data_cfg) -> bool:
  """True when `data.dedup` turns any level on."""
  return bool(data_cfg.dedup.levels)


def dedup_order(task_names: Sequence[str], data_cfg) -> list[str]:
  """The tasks in the order they are deduplicated: `data.dedup.priority` first.

  Raises:
    ValueError: naming `data.dedup.priority` (or `exact_only`) when it names a
      task not in `task_names`.
  """
  for key in ("priority", "exact_only"):
    unknown = [t for t in data_cfg.dedup[key] if t not in task_names]
    if unknown:
      raise ValueError(f"config.data.dedup.{key} names {unknown}, not tasks of the mixture "
                       f"{list(task_names)}.")
  priority = list(data_cfg.dedup.priority)
  return priority + [t for t in task_names if t not in priority]


class DedupStep:
  """One Deduplicator for a prepare run and what it has seen so far.

  Args:
    data_cfg: the `data` config section (its `dedup` subsection).
  """

  def __init__(self, data_cfg):
    section = data_cfg.dedup
    self.params = params.from_config(section, prefix="config.data.dedup.")
    self.cross_task = bool(section.cross_task)
    self.exact_only = sorted(section.exact_only)
    self.reference_files = sources.expand(list(section.reference)) if section.reference else []
    self.dedup = deduplicator.Deduplicator(self.params)
    self._reference_loaded = False
    self.done: list[str] = []  # Fingerprints of the tasks fed in so far (cross-task).

  def settings(self) -> dict:
    """What a task's fingerprint records of this step (the tasks before it included)."""
    return {**self.record(), "after": list(self.done) if self.cross_task else []}

  def record(self) -> dict:
    """The settings as stats.json lists them (without the earlier tasks' fingerprints)."""
    return {"params": self.params.as_dict(), "reference": self.reference_files,
            "cross_task": self.cross_task, "exact_only": self.exact_only}

  def _ensure_reference(self) -> None:
    if self._reference_loaded:
      return
    self._reference_loaded = True  # Read lazily: a fully prepared mixture never needs it.
    for docs in dedup_batch.batches(dedup_batch.reference_docs(self.reference_files),
                                    dedup_batch.BATCH_DOCS):
      self.dedup.add_reference(docs)

  def begin_task(self) -> None:
    """Starts a task: a fresh index of kept documents unless deduplicating across tasks."""
    self._ensure_reference()
    if not self.cross_task:
      self.dedup.new_scope()

  def end_task(self, fingerprint: str) -> None:
    """Records that a task's documents are in the index."""
    self.done.append(fingerprint)

  def filter(self, records: Iterable[tuple[int, object]], task: str
             ) -> Iterator[tuple[int, object, deduplicator.Verdict | None]]:
    """Decides the documents of a stream in order.

    Args:
      records: (record index, Document or Malformed) pairs.
      task: the task's name.

    Yields:
      (record index, item, verdict): verdict None for a Malformed item.
    """
    exact_only = task in self.exact_only
    for chunk in dedup_batch.batches(records, dedup_batch.BATCH_DOCS):
      docs = [(item.where, item.text) for _, item in chunk if isinstance(item, sources.Document)]
      verdicts = iter(self.dedup.process(docs, task, exact_only=exact_only))
      for index, item in chunk:
        yield index, item, next(verdicts) if isinstance(item, sources.Document) else None

  def replay(self, task: str, stream: Iterable, max_docs: int, fingerprint: str) -> None:
    """Feeds an already prepared task's documents into the index (cross-task only)."""
    self.begin_task()
    records = itertools.islice(enumerate(stream), max_docs or None)
    for _ in self.filter(records, task):
      pass
    self.end_task(fingerprint)


class Tally:
  """A task's deduplication counts and first examples (saved with each shard's progress)."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.counts = collections.Counter(state.get("counts", {}))
    self.examples = list(state.get("examples", []))

  def add(self, verdict: deduplicator.Verdict, text: str) -> None:
    self.counts.update(counts.document_counts(verdict, len(text.encode("utf-8"))))
    if verdict.match is not None and len(self.examples) < _EXAMPLES:
      self.examples.append(dedup_batch.verdict_record(verdict))

  def as_dict(self) -> dict:
    return {"counts": dict(self.counts), "examples": self.examples}


def manifest_entry(record: dict) -> dict:
  """A task's deduplication as the manifest lists it: levels, removed, by level."""
  if not record:
    return {}
  found = record.get("counts", {})
  entry = {"levels": record["params"]["levels"], "docs": found.get("docs", 0),
           "removed_docs": found.get("removed_docs", 0),
           "duplicates": counts.by_level(found), "cross_task": found.get("cross_task", 0),
           "reference": counts.by_level(found, "reference"),
           "reference_mode": record["params"]["reference_mode"]}
  for name in ("skipped_comparisons", "capped_inserts"):  # Only where the bucket cap acted.
    if found.get(name):
      entry[name] = found[name]
  return entry
