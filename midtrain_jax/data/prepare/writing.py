"""The second pass of prepare: decontaminate, tokenise, shard; what each shard and task records.

Pure stages shared by the local and the Beam runner:
  `Cleaner` decontaminates a batch of texts (each document on its own, so any
    batching gives the same result);
  `encode` tokenises them as stored (`layout.encode_document`; a chat task's
    as `layout.MaskedDocument`s with their response loss masks, chat_docs.py);
  shard assignment: the train documents that survive decontamination, in key
    order, are numbered 0, 1, ...; shard i holds numbers
    [i * shard_docs, (i + 1) * shard_docs). Each train record r is counted in
    the shard `shard_of(survivors before r)`, so a removed record counts in
    the shard of the next document kept;
  `ShardProgress`: the cumulative counts saved with every shard (what the
    local runner resumes from), the same numbers on both runners;
  `task_stats`: the task's stats.json.
"""
import collections
from collections.abc import Sequence

import numpy as np

from midtrain_jax import cache, files
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import chat_docs
from midtrain_jax.decontam import counts, decontaminator


class Cleaner:
  """The decontaminator of a prepare run: benchmarks and mode; picklable (names only).

  Loads the benchmarks' cached index (built by the launcher), or `index`: a
  copy of it elsewhere, such as the one a Beam run stages for its workers
  (staging.py; a URL is copied to local disk once per process).
  """

  def __init__(self, benchmarks: Sequence[str], mode: str, cache_dir: str | None = None,
               index: str | None = None):
    self.benchmarks, self.mode = list(benchmarks), mode
    self.cache_dir = cache_dir or str(cache.cache_root())
    self.index = index
    self._deco = None

  def __getstate__(self):
    return {**vars(self), "_deco": None}  # Each worker loads the index itself.

  def index_file(self) -> str:
    """The index this cleaner loads."""
    return self.index or decontaminator.cached_index_path(self.benchmarks, self.cache_dir)

  def clean(self, texts: Sequence[str]) -> list[tuple[str | None, list]]:
    """(cleaned text or None when dropped, hits) per text."""
    if self._deco is None:
      if self.index is None:
        self._deco = decontaminator.Decontaminator.from_benchmarks(self.benchmarks,
                                                                   cache_dir=self.cache_dir)
      else:
        self._deco = decontaminator.Decontaminator.from_index_file(files.local_copy(self.index))
    return self._deco.clean_batch(list(texts), self.mode)


def clean(cleaner: Cleaner | None, texts: Sequence[str]) -> list[tuple[str | None, list]]:
  """`cleaner.clean`, or every text unchanged without decontamination."""
  return cleaner.clean(texts) if cleaner is not None else [(t, []) for t in texts]


def encode(tok, texts: Sequence[str], chat_task: str | None = None) -> list[np.ndarray]:
  """The documents as stored, one per text; `chat_task` names a chat task (masked documents)."""
  if not texts:
    return []
  if chat_task is not None:
    return chat_docs.encode(texts, tok, chat_task)
  return [layout.encode_document(ids, tok) for ids in tok.encode_batch(list(texts))]


def encode_keyed(tok, keyed: Sequence[tuple[tuple, str]], chat_tasks: dict[int, str]
                 ) -> list[np.ndarray]:
  """`encode` of (key, text) pairs of any tasks (a Beam batch): in order, each by its task's rule.

  A key's first element is its task's rank; `chat_tasks` maps the ranks of chat tasks
  to their names.
  """
  found: list = [None] * len(keyed)
  groups: dict = {}
  for i, (key, _) in enumerate(keyed):
    groups.setdefault(chat_tasks.get(key[0]), []).append(i)
  for chat_task, members in groups.items():
    for i, doc in zip(members, encode(tok, [keyed[i][1] for i in members], chat_task)):
      found[i] = doc
  return found


def shard_of(survivors_before: int, shard_docs: int) -> int:
  """The shard a train record counts in, from the kept documents before it."""
  return survivors_before // shard_docs


def shard_count(train_docs: int, shard_docs: int) -> int:
  """Train shards of a task: one, empty, when nothing survives."""
  return max(1, -(-train_docs // shard_docs))


class ShardProgress:
  """Cumulative counts of a task's train records up to a shard's end (saved with it)."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.records = state.get("records", 0)  # Train records consumed (removed ones too).
    self.docs = state.get("docs", 0)
    self.tokens = state.get("tokens", 0)
    self.bytes = state.get("bytes", 0)
    self.decontam = collections.Counter(state.get("decontam", {}))  # decontam/counts.py.
    # Benchmark items found in the training documents: {benchmark: item ids}.
    self.decontam_items = {b: set(ids) for b, ids in state.get("decontam_items", {}).items()}

  def add(self, text: str, cleaned: str | None, hits: list, doc: np.ndarray | None,
          decontaminated: bool) -> None:
    """Counts one train record: its decontamination, and its document when kept."""
    self.records += 1
    if decontaminated:
      self.decontam.update(counts.document_counts(text, cleaned, hits))
    for hit in hits:
      self.decontam_items.setdefault(hit.benchmark, set()).add(hit.item_id)
    if doc is not None:
      self.docs += 1
      self.tokens += len(doc)
      self.bytes += len(cleaned.encode("utf-8"))

  def merge(self, other: "ShardProgress") -> None:
    """Adds the counts of another run of records (Beam: the next shard's)."""
    for name in ("records", "docs", "tokens", "bytes"):
      setattr(self, name, getattr(self, name) + getattr(other, name))
    self.decontam.update(other.decontam)
    for bench, ids in other.decontam_items.items():
      self.decontam_items.setdefault(bench, set()).update(ids)

  def as_dict(self) -> dict:
    return {"records": self.records, "docs": self.docs, "tokens": self.tokens,
            "bytes": self.bytes, "decontam": dict(sorted(self.decontam.items())),
            "decontam_items": sorted_items(self.decontam_items)}


def sorted_items(found: dict[str, set[str]]) -> dict[str, list[str]]:
  return {b: sorted(ids) for b, ids in sorted(found.items())}


def heldout_record(docs: list[np.ndarray], doc_bytes: list[int]) -> dict:
  """The held-out split's numbers in stats.json."""
  return {"heldout_docs": len(docs), "heldout_tokens": int(sum(len(d) for d in docs)),
          "heldout_bytes": int(sum(doc_bytes))}


def task_stats(spec, fingerprint: str, files: list[str], found, shards: int,
               progress: ShardProgress, heldout: dict, cleaner: Cleaner | None,
               dedup_record: dict | None) -> dict:
  """A task's stats.json from its decisions, its last shard's progress and held-out split.

  Args:
    spec: the task.
    fingerprint: its fingerprint.
    files: its source files.
    found: its `decisions.Decisions`.
    shards: train shards written.
    progress: the cumulative progress of all its train records.
    heldout: `heldout_record` of its held-out split.
    cleaner: the decontamination (None: none).
    dedup_record: `DedupStep.record()` (None: no deduplication).
  """
  return dict(
      task=spec.name, capability=spec.capability, fingerprint=fingerprint,
      train_shards=shards, train_docs=progress.docs, train_tokens=progress.tokens,
      train_bytes=progress.bytes, **heldout, heldout_candidates=found.heldout_candidates,
      records_read=found.records_read, **found.malformed,
      decontam=dict(benchmarks=cleaner.benchmarks if cleaner else [],
                    mode=cleaner.mode if cleaner else "",
                    counts=dict(sorted(progress.decontam.items())),
                    items=sorted_items(progress.decontam_items)),
      dedup={**dedup_record, **found.dedup} if dedup_record is not None else {},
      max_epochs=spec.max_epochs, provenance=spec.provenance, licence=spec.licence,
      source_files=files)
