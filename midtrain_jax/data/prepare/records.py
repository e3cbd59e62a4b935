"""A task's records keyed in the canonical order every runner of prepare uses.

A record's key is `(task rank, file rank, position in file)`: the task's rank
in deduplication order (`dedup_step.dedup_order`), its file's rank in the
sorted file list and its 0-based position there. A seqio task is read as one
unit (file rank 0). Smaller keys are read first, decided first by the
deduplication (the better copy) and written first, so the local and the Beam
preparation write the same shards whatever order the Beam workers read in.

`data.max_docs_per_task` caps a task to its first records in key order
(malformed ones included, as before).
"""
import dataclasses
from collections.abc import Iterator

from midtrain_jax.data.mixtures import documents
from midtrain_jax.documents import readers as sources

MALFORMED_EXAMPLES = 50  # Listed in stats.json (and in the error past the limit).


@dataclasses.dataclass(frozen=True)
class Unit:
  """One unit of a task that is read whole by one worker: a file, or the seqio task."""
  task_rank: int
  file_rank: int
  path: str  # "" for a seqio task.


def units(spec, data_cfg, task_rank: int) -> tuple[list[str], list[Unit]]:
  """(source files, read units) of a task; files are [] for a seqio task."""
  if spec.seqio_task:
    return [], [Unit(task_rank, 0, "")]
  files = sources.expand(spec.files(data_cfg))
  return files, [Unit(task_rank, rank, path) for rank, path in enumerate(files)]


def read_unit(spec, data_cfg, unit: Unit) -> Iterator[tuple[tuple, object]]:
  """(key, Document or Malformed) of every record of one unit, in position order."""
  if unit.path:
    stream = sources.read_files([unit.path], spec.text_fn)
  else:
    stream = documents.read_documents(spec, data_cfg)[1]
  for position, item in enumerate(stream):
    yield (unit.task_rank, unit.file_rank, position), item


def read_task(spec, data_cfg, task_rank: int) -> Iterator[tuple[tuple, object]]:
  """(key, item) of a task's records in key order, up to `data.max_docs_per_task`."""
  limit = data_cfg.max_docs_per_task or None
  read = 0
  for unit in units(spec, data_cfg, task_rank)[1]:
    for keyed in read_unit(spec, data_cfg, unit):
      if limit is not None and read >= limit:
        return
      read += 1
      yield keyed


def reason_kind(reason: str) -> str:
  """A malformed record's reason without its particulars: what stats.json counts by."""
  return reason.split(" (")[0]


class MalformedTally:
  """A task's malformed records: count, count by reason, first examples in key order."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.malformed = state.get("malformed", 0)
    self.by_reason = dict(state.get("malformed_by_reason", {}))
    self.examples = list(state.get("malformed_examples", []))

  def add(self, item: sources.Malformed) -> None:
    self.malformed += 1
    kind = reason_kind(item.reason)
    self.by_reason[kind] = self.by_reason.get(kind, 0) + 1
    if len(self.examples) < MALFORMED_EXAMPLES:
      self.examples.append(f"{item.where}: {item.reason}")

  def check(self, limit: int, task: str) -> None:
    """Fails naming the task and the first malformed records when over `limit`."""
    if self.malformed > limit:
      listing = "\n  ".join(self.examples)
      raise ValueError(
          f"Task {task}: {self.malformed} malformed records, more than "
          f"data.max_malformed={limit}. First ones:\n  {listing}")

  def as_dict(self) -> dict:
    return {"malformed": self.malformed,
            "malformed_by_reason": dict(sorted(self.by_reason.items())),
            "malformed_examples": self.examples}
