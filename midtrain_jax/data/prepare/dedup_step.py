"""The deduplication step of prepare: `data.dedup` applied to each task's documents.

Runs on every document a task reads, before the held-out split (so no
held-out document is a copy of a training one) and before decontamination.
Duplicates are skipped but counted (counter names of dedup/counts.py) and
recorded in the task's stats.json; the manifest repeats the totals.

Duplicates are the connected components of verified pairs and the best copy of
each is kept (dedup/components.py): each document's key is (task rank in
`dedup_order`, file rank, position), smaller is better, so within a task the
first copy is kept. With `data.dedup.cross_task` the components span the
mixture: tasks are ranked in `dedup_order` (the tasks of
`data.dedup.priority` first, then mixture order), so a copy is kept in the
highest-priority task that has it. A task's result then depends on the tasks
before it, so its fingerprint includes theirs: changing the settings, the
order or an earlier task prepares it again. When an earlier task is already
prepared, its documents are read again to fingerprint them (no output). A
resumed task decides all its records again the same way, so an interrupted
prepare gives the same shards as an uninterrupted one.

Tasks of `data.dedup.exact_only` (templated or generated text, whose documents
share a template rather than content) are compared by exact copies only: their
documents get only the exact fingerprint and join only the exact index.
"""
import collections
import itertools
from collections.abc import Iterable, Iterator, Sequence

from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.dedup import components, counts, deduplicator, params
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
  """The deduplication of a prepare run: fingerprints, then components over the mixture.

  Two passes (what a preparation over the whole mixture uses):
    `fingerprint(docs, task)`  batchable: Items of a task's documents, keyed by
                               `item_key` (the keep rule's order);
    `resolve(items)`           the verdicts of every item of the mixture
                               (components.resolve, with the reference set).
  The streaming preparation, one task after another, uses `begin_task`,
  `filter` and `end_task`: each task is resolved with the items of the tasks
  before it (cross_task), so a task's verdicts never depend on later tasks.

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
    self._reference = None
    self.items: list[components.Item] = []  # The tasks fed in so far (cross-task).
    self.done: list[str] = []  # Fingerprints of the tasks fed in so far (cross-task).

  def settings(self) -> dict:
    """What a task's fingerprint records of this step (the tasks before it included)."""
    return {**self.record(), "after": list(self.done) if self.cross_task else []}

  def record(self) -> dict:
    """The settings as stats.json lists them (without the earlier tasks' fingerprints)."""
    return {"params": self.params.as_dict(), "reference": self.reference_files,
            "cross_task": self.cross_task, "exact_only": self.exact_only,
            "decision": "components"}

  @staticmethod
  def item_key(task_rank: int, file_rank: int, position: int) -> tuple[int, int, int]:
    """The canonical key of a document: smaller is the better copy (the one kept).

    Args:
      task_rank: the task's place in `dedup_order`.
      file_rank: the file's place among the task's files.
      position: the document's place in its file.
    """
    return task_rank, file_rank, position

  def fingerprint(self, docs: Sequence[tuple[tuple, str, str]], task: str
                  ) -> list[components.Item]:
    """Items of a batch of one task's documents (the parallel pass).

    Args:
      docs: (key, doc id, text) triples.
      task: their task (exact-only tasks get only the exact key).
    """
    prints = self.dedup.fingerprint([text for _, _, text in docs], task in self.exact_only)
    return [components.Item(key, doc_id, task, fp) for (key, doc_id, _), fp in zip(docs, prints)]

  def reference(self) -> list[tuple[str, deduplicator.Fingerprint]]:
    """(where, fingerprint) of the reference set, read once, lazily (a fully prepared
    mixture never needs it)."""
    if self._reference is None:
      self._reference = dedup_batch.reference_prints(self.dedup, self.reference_files)
    return self._reference

  def resolve(self, items: Iterable[components.Item]) -> dict[tuple, deduplicator.Verdict]:
    """{key: Verdict} of every item of the mixture (the deciding pass)."""
    return components.resolve(items, self.params, self.reference(), self.cross_task)

  def begin_task(self) -> None:
    """Starts a task (streaming use)."""
    self.reference()

  def end_task(self, fingerprint: str) -> None:
    """Records that a task's documents are in the index."""
    self.done.append(fingerprint)

  def filter(self, records: Iterable[tuple[int, object]], task: str
             ) -> Iterator[tuple[int, object, deduplicator.Verdict | None]]:
    """Decides the documents of one task with the tasks before it (streaming use).

    Args:
      records: (record index, Document or Malformed) pairs.
      task: the task's name.

    Yields:
      (record index, item, verdict): verdict None for a Malformed item.
    """
    records = list(records)
    rank = len(self.done)
    mine = []
    for chunk in dedup_batch.batches(records, dedup_batch.BATCH_DOCS):
      mine += self.fingerprint([(self.item_key(rank, 0, index), item.where, item.text)
                                for index, item in chunk
                                if isinstance(item, sources.Document)], task)
    verdicts = self.resolve(self.items + mine if self.cross_task else mine)
    if self.cross_task:
      self.items += mine
    for index, item in records:
      yield index, item, verdicts.get(self.item_key(rank, 0, index))

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
