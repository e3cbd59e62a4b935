"""The first pass of prepare: which record of a task is trained on, held out or removed.

Pure stages over keyed records (records.py), shared by the local and the
Beam runner, so both decide alike:
  deduplication verdicts: connected components over verified pairs, the
    smallest key of a component kept (dedup_step; dedup/components.py),
  held-out choice: of the kept documents that are held-out candidates
    (`documents.is_heldout`), the `data.heldout_max_docs` smallest by
    (held-out hash key, record key): `documents.HeldoutSample`'s bottom-k rule
    with ties broken by the record key, so the choice never depends on order;
  the train documents: every other kept document, in key order.

The local runner saves a task's decisions in its folder (`save`), so an
interrupted preparation resumes its second pass without deciding again; the
file goes once the task's stats.json is written. It lists the removed and the
held-out documents, not the train ones: the second pass trains on every other
document it reads, so neither the file nor the memory holding it grows with
the documents kept.
"""
import dataclasses
import json
import pathlib
from collections.abc import Iterable

from midtrain_jax import files
from midtrain_jax.data.mixtures import documents

DECISIONS = "decisions.json"


@dataclasses.dataclass
class Decisions:
  """One task's first-pass result.

  Attributes:
    fingerprint: the task's fingerprint when decided.
    records_read: records within the task cap (malformed ones included).
    malformed: `records.MalformedTally.as_dict()`.
    dedup: `dedup_step.Tally.as_dict()`, {} without deduplication.
    heldout_candidates: kept documents that were held-out candidates.
    heldout: keys of the held-out documents, by (held-out hash key, key).
    removed: keys of the documents deduplication removed, in key order.
    train_docs: the train documents: every other document read.
  """
  fingerprint: str
  records_read: int
  malformed: dict
  dedup: dict
  heldout_candidates: int
  heldout: list[tuple]
  removed: list[tuple]
  train_docs: int


_FIELDS = {f.name for f in dataclasses.fields(Decisions)}


def heldout_candidate(text: str, key: tuple, fraction: float) -> tuple | None:
  """(held-out hash key, record key) of a kept document that is a candidate, else None."""
  return (documents.heldout_key(text), key) if documents.is_heldout(text, fraction) else None


def choose_heldout(candidates: Iterable[tuple], max_docs: int) -> list[tuple]:
  """The record keys of the held-out documents: the `max_docs` smallest candidates."""
  return [key for _, key in sorted(candidates)[:max_docs]]


def _path(task_dir: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(task_dir) / DECISIONS


def save(task_dir: pathlib.Path, found: Decisions) -> None:
  """Writes a task's decisions (local runner, before its second pass)."""
  pathlib.Path(task_dir).mkdir(parents=True, exist_ok=True)
  files.write_json(_path(task_dir), dataclasses.asdict(found), indent=None)


def load(task_dir: pathlib.Path, fingerprint: str) -> Decisions | None:
  """A task's saved decisions when made with `fingerprint` (by this version), else None."""
  path = _path(task_dir)
  if not path.exists():
    return None
  state = json.loads(path.read_text())
  if state.get("fingerprint") != fingerprint or set(state) != _FIELDS:
    return None  # Decided for other settings, or by a version that saved other fields.
  state["heldout"] = [tuple(k) for k in state["heldout"]]
  state["removed"] = [tuple(k) for k in state["removed"]]
  return Decisions(**state)


def remove(task_dir: pathlib.Path) -> None:
  """Drops the saved decisions (the task is finished, or prepared again whole)."""
  _path(task_dir).unlink(missing_ok=True)
