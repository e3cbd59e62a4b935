"""A task whose documents are token ids already: OLMo-core's token files, not re-tokenised.

`prepare_task` writes the folder a text task gets (`data/layout.py`): train
shards of `data.shard_docs` documents in file order, the held-out split by
the same bottom-k hash rule (`documents.HeldoutSample`, over the bytes of the
document's ids as little-endian uint32, so a uint16 and a uint32 file of the
same documents split alike), stats.json and its progress, resumable after
the last finished shard. A stored document is laid out by the model
tokenizer's rule (`layout.encode_document`): a leading BOS in the file is
dropped first when the tokenizer adds one, so it is never doubled.

The ids mean tokens of one tokenizer only: the task declares which
(`TaskSpec.tokenizer`) and preparing it for a model of another tokenizer
fails naming both. Deduplication and decontamination need the text, which is
gone, so both are skipped and stats.json says so (`skipped`). The held-out
documents are decoded to count their UTF-8 bytes, which bits-per-byte
evaluation divides by; the train split's bytes are not counted
(`train_bytes` is null): decoding the whole corpus would cost what the
tokenisation it skips costs.
"""
import hashlib
import json
import pathlib
import time
from collections.abc import Callable

import numpy as np
from etils import epath

from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import documents, specs
from midtrain_jax.documents import readers, token_files

SKIPPED = "the documents are token ids, the text they would be compared by is gone"
_MALFORMED_EXAMPLES = 50


def is_pretokenized(spec: specs.TaskSpec) -> bool:
  """True for a task whose documents are token files (`TaskSpec.token_files`)."""
  return bool(spec.token_files)


def check_tokenizer(spec: specs.TaskSpec, tok: tokenizer_lib.Tokenizer) -> None:
  """Fails unless the task's token files are in the model's tokenizer.

  The declared tokenizer matches when it is the model's `data.tokenizer`
  value, its fingerprint, or a tokenizer file of the same fingerprint.

  Raises:
    ValueError: naming the task, both tokenizers and their fingerprints.
  """
  ours = tok.fingerprint()
  declared = spec.tokenizer
  if declared in (tok.name, ours):
    return
  try:
    theirs = tokenizer_lib.load_tokenizer(declared).fingerprint()
  except (ValueError, OSError) as e:
    theirs = f"not loadable here: {e}"
  if theirs == ours:
    return
  raise ValueError(
      f"Task {spec.name}: its token files are ids of tokenizer {declared!r} ({theirs}), "
      f"but the model's tokenizer is data.tokenizer={tok.name!r} (fingerprint {ours}): "
      "the ids would mean other tokens. Train with that tokenizer, or tokenise the "
      "text again.")


def _fingerprint(spec: specs.TaskSpec, files: list[str], tok, data_cfg) -> str:
  # File sizes, not contents: hashing a corpus of billions of tokens would cost
  # a read of it (OLMo-core's fingerprints take the same shortcut).
  settings = dict(
      token_files=[(f, epath.Path(f).stat().length) for f in files],
      token_dtype=spec.token_dtype, tokenizer=tok.fingerprint(), adds_bos=tok.adds_bos,
      version=layout.FORMAT_VERSION, max_docs=data_cfg.max_docs_per_task,
      heldout=(data_cfg.heldout_fraction, data_cfg.heldout_max_docs),
      shard_docs=data_cfg.shard_docs)
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _key_bytes(ids: np.ndarray) -> bytes:
  """The bytes the held-out rule hashes: the ids as little-endian uint32."""
  return np.asarray(ids, "<u4").tobytes()


class _Progress:
  """Cumulative counters, saved with every shard for resumption."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.records = state.get("records", 0)
    self.docs = state.get("docs", 0)
    self.tokens = state.get("tokens", 0)
    self.malformed = state.get("malformed", 0)
    self.malformed_by_reason = dict(state.get("malformed_by_reason", {}))
    self.malformed_examples = list(state.get("malformed_examples", []))

  def add_malformed(self, item: readers.Malformed, limit: int, task: str) -> None:
    self.malformed += 1
    self.malformed_by_reason[item.reason] = self.malformed_by_reason.get(item.reason, 0) + 1
    if len(self.malformed_examples) < _MALFORMED_EXAMPLES:
      self.malformed_examples.append(f"{item.where}: {item.reason}")
    if self.malformed > limit:
      raise ValueError(f"Task {task}: {self.malformed} malformed documents, more than "
                       f"data.max_malformed={limit}. First ones: {self.malformed_examples[:5]}")


class _Writer:
  """One task's shards while its token files are read (tasks._TaskWriter's rules).

  Documents before `resume_at` were written before a restart; they are read
  again only to rebuild the held-out sample, whose pushed-out candidates went
  to the shards then.
  """

  def __init__(self, task_dir: pathlib.Path, tok, data_cfg, task: str):
    self.task_dir, self.tok, self.data_cfg, self.task = task_dir, tok, data_cfg, task
    self.shard_index, state = layout.finished_shards(task_dir)
    self.progress = _Progress(state)
    self.resume_at = self.progress.records
    self.heldout = documents.HeldoutSample(data_cfg.heldout_fraction, data_cfg.heldout_max_docs)
    self.pending: list[np.ndarray] = []

  def take(self, index: int, item) -> None:
    replaying = index < self.resume_at
    if isinstance(item, readers.Malformed):
      if not replaying:
        self.progress.add_malformed(item, self.data_cfg.max_malformed, self.task)
    else:
      train = self.heldout.offer(_key_bytes(item.ids))
      if train is not None and not replaying:
        self.pending.append(np.frombuffer(train, "<u4"))
    if not replaying:
      self.progress.records = index + 1
      if len(self.pending) >= self.data_cfg.shard_docs:
        self.flush(final=False)

  def flush(self, final: bool) -> None:
    docs = [layout.encode_document(ids.tolist(), self.tok) for ids in self.pending]
    self.progress.docs += len(docs)
    self.progress.tokens += sum(len(d) for d in docs)
    if docs or (final and self.shard_index == 0):
      layout.write_shard(self.task_dir, self.shard_index, docs, vars(self.progress))
      self.shard_index += 1
    self.pending = []

  def write_heldout(self) -> tuple[list[np.ndarray], list[int]]:
    """Writes the held-out split; returns its documents and each one's decoded UTF-8 size."""
    bodies = [np.frombuffer(b, "<u4") for b in self.heldout.documents()]
    docs = [layout.encode_document(ids.tolist(), self.tok) for ids in bodies]
    doc_bytes = [len(self.tok.decode(ids.tolist()).encode("utf-8")) for ids in bodies]
    layout.write_heldout(self.task_dir, docs, doc_bytes)
    return docs, doc_bytes


def _stats(spec: specs.TaskSpec, writer: _Writer, fingerprint: str, files: list[str],
           heldout: tuple[list[np.ndarray], list[int]]) -> dict:
  docs, doc_bytes = heldout
  progress = writer.progress
  return dict(
      task=spec.name, capability=spec.capability, fingerprint=fingerprint,
      train_shards=writer.shard_index, train_docs=progress.docs, train_tokens=progress.tokens,
      train_bytes=None, heldout_docs=len(docs), heldout_tokens=int(sum(len(d) for d in docs)),
      heldout_bytes=sum(doc_bytes), heldout_candidates=writer.heldout.candidates,
      records_read=progress.records, malformed=progress.malformed,
      malformed_by_reason=progress.malformed_by_reason,
      malformed_examples=progress.malformed_examples,
      decontam=dict(benchmarks=[], mode="", counts={}, items={}), dedup={},
      skipped=dict(dedup=SKIPPED, decontam=SKIPPED, train_bytes="not decoded"),
      token_files=dict(dtype=spec.token_dtype, tokenizer=spec.tokenizer),
      max_epochs=spec.max_epochs, provenance=spec.provenance, licence=spec.licence,
      source_files=files)


def _read(spec: specs.TaskSpec, files: list[str], tok, data_cfg):
  """(index, document or malformed) of the task's token files, up to the cap."""
  # A leading BOS is dropped only where the model's rule puts it back.
  bos = tok.bos_id if tok.adds_bos and tok.bos_id != tok.eos_id else None
  stream = token_files.read_token_files(files, spec.token_dtype, tok.eos_id, tok.vocab_size,
                                        bos)
  limit = data_cfg.max_docs_per_task or None
  for index, item in enumerate(stream):
    if limit is not None and index >= limit:
      return
    yield index, item


def _already_prepared(task_dir: pathlib.Path, fingerprint: str, log, name: str) -> dict | None:
  if not (task_dir / layout.STATS).exists():
    return None
  stats = layout.read_stats(task_dir.parent, name)
  if stats["fingerprint"] != fingerprint:
    raise ValueError(f"{task_dir} was prepared from other token files or settings (sizes, "
                     "dtype, tokenizer or its BOS rule, split, format version); delete it or "
                     "choose another --out.")
  log(f"[prepare] {name}: already prepared ({stats['train_docs']} docs)")
  return stats


def prepare_task(spec: specs.TaskSpec, task_dir: pathlib.Path, tok, data_cfg,
                 log: Callable[[str], None] = print) -> dict:
  """Writes a token-file task's shards, held-out split and stats (resumable).

  Args:
    spec: the task (`is_pretokenized`).
    task_dir: its folder in the prepared-data folder.
    tok: the model's Tokenizer (`data.tokenizer`).
    data_cfg: the `data` config section.
    log: progress printer.

  Returns:
    The task's stats dict (also written to <task_dir>/stats.json).

  Raises:
    ValueError: the files are in another tokenizer (naming both), or more
      malformed documents than `data.max_malformed`.
    token_files.TokenFileError: a file does not hold what the task declares.
  """
  check_tokenizer(spec, tok)
  task_dir = pathlib.Path(task_dir)
  files = readers.expand(list(spec.token_files))
  fingerprint = _fingerprint(spec, files, tok, data_cfg)
  done = _already_prepared(task_dir, fingerprint, log, spec.name)
  if done is not None:
    return done
  if data_cfg.dedup.levels or data_cfg.decontam.benchmarks:
    log(f"[prepare] {spec.name}: token files: deduplication and decontamination skipped "
        f"({SKIPPED})")
  task_dir.mkdir(parents=True, exist_ok=True)
  writer = _Writer(task_dir, tok, data_cfg, spec.name)
  if writer.shard_index:
    log(f"[prepare] {spec.name}: resuming after {writer.shard_index} finished shards")
  started = time.time()
  for index, item in _read(spec, files, tok, data_cfg):
    writer.take(index, item)
  writer.flush(final=True)
  stats = _stats(spec, writer, fingerprint, files, writer.write_heldout())
  layout.write_stats(task_dir, stats)
  log(f"[prepare] {spec.name}: {stats['train_docs']} docs, {stats['train_tokens']:,} tokens "
      f"from {len(files)} token files, {stats['heldout_docs']} held out, "
      f"{stats['malformed']} malformed ({time.time() - started:.1f}s)")
  return stats

