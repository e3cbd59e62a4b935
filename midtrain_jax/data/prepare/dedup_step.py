"""The deduplication step of prepare: `data.dedup` applied to each task's documents.

Runs on every document a task reads, before the held-out split (so no
held-out document is a copy of a training one) and before decontamination.
Duplicates are skipped but counted (counter names of dedup/counts.py) and
recorded in the task's stats.json; the manifest repeats the totals.

Documents carry their canonical key (records.py: task rank in `dedup_order`,
file rank, position) and are decided as connected components over verified
pairs, the best copy kept (dedup/components.py; `accumulator` here, Resolve
of dedup/beam_components.py on Beam): the smallest key of a component is kept,
so within a task the first copy, and with `data.dedup.cross_task` (one scope
for the mixture; tasks in `dedup_order`: the tasks of `data.dedup.priority`
first, then mixture order) the copy of the highest-priority task. A task's
result then depends on every task of the mixture, so its fingerprint includes
theirs: changing the settings, the order or another task prepares it again.
Every task is read to decide whenever one is prepared.

Tasks of `data.dedup.exact_only` (templated or generated text, whose documents
share a template rather than content) are compared by exact copies only: their
documents get only the exact fingerprint and join only the exact index.
"""
import collections
from collections.abc import Sequence

from midtrain_jax.dedup import batch as dedup_batch
from midtrain_jax.dedup import components, counts, deduplicator, params
from midtrain_jax.documents import readers as sources

EXAMPLES = 20  # Matched documents listed per task: the first by key.


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
  """The deduplication settings of a prepare run and the stages that apply them.

  Picklable (settings only), so Beam workers fingerprint with the same step.

  Args:
    data_cfg: the `data` config section (its `dedup` subsection).
  """

  def __init__(self, data_cfg):
    section = data_cfg.dedup
    self.params = params.from_config(section, prefix="config.data.dedup.")
    self.cross_task = bool(section.cross_task)
    self.exact_only = sorted(section.exact_only)
    self.reference_files = sources.expand(list(section.reference)) if section.reference else []
    self._dedup = None

  def __getstate__(self):
    return {**vars(self), "_dedup": None}  # The index is rebuilt where it is used.

  def settings(self, mixture: Sequence[str]) -> dict:
    """What a task's fingerprint records of this step.

    Args:
      mixture: with cross_task, the fingerprints (without deduplication) of
        every task of the mixture in deduplication order: a task's duplicates
        depend on all of them.
    """
    return {**self.record(), "after": list(mixture) if self.cross_task else []}

  def record(self) -> dict:
    """The settings as stats.json lists them (without the other tasks' fingerprints)."""
    return {"params": self.params.as_dict(), "reference": self.reference_files,
            "cross_task": self.cross_task, "exact_only": self.exact_only,
            "decision": "components"}

  def fingerprint(self, texts: Sequence[str], task: str) -> list[deduplicator.Fingerprint]:
    """The fingerprints of a batch of one task's documents (exact only for its tasks)."""
    if self._dedup is None:
      self._dedup = deduplicator.Deduplicator(self.params)
    return self._dedup.fingerprint(list(texts), exact_only=task in self.exact_only)

  def reference_fingerprint(self, docs: Sequence[tuple[str, str]]
                            ) -> list[tuple[str, deduplicator.Fingerprint]]:
    """(doc id, fingerprint) of a batch of reference documents ((doc id, text) pairs)."""
    if self._dedup is None:
      self._dedup = deduplicator.Deduplicator(self.params)
    return list(zip([d for d, _ in docs], self._dedup.fingerprint([t for _, t in docs])))

  def reference(self) -> list[tuple[str, deduplicator.Fingerprint]]:
    """The reference set's (doc id, fingerprint): ids are "file:line"."""
    if self._dedup is None:
      self._dedup = deduplicator.Deduplicator(self.params)
    return dedup_batch.reference_prints(self._dedup, self.reference_files)

  def accumulator(self) -> components.Accumulator:
    """Takes a run's documents as they are fingerprinted, then decides them (local runner)."""
    return components.Accumulator(self.params, self.reference(), self.cross_task)


class Tally:
  """A task's deduplication counts and first examples (saved with each shard's progress)."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.counts = collections.Counter(state.get("counts", {}))
    self.examples = list(state.get("examples", []))

  def add(self, verdict: deduplicator.Verdict, nbytes: int) -> None:
    """Counts one decided document of `nbytes` UTF-8 bytes (added in key order)."""
    self.counts.update(counts.document_counts(verdict, nbytes))
    if verdict.match is not None and len(self.examples) < EXAMPLES:
      self.examples.append(dedup_batch.verdict_record(verdict))

  def as_dict(self) -> dict:
    return {"counts": dict(sorted(self.counts.items())), "examples": self.examples}


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
