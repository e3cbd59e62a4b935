"""Held-out documents as packed evaluation batches, in one seeded order.

Every evaluation of every run on the same prepared data scores the same
documents in the same order (`eval_order`), whole, each (input, target) pair
exactly once; a sample of the split ends after a fixed amount of text. A
document longer than seq_len is scored in overlapping windows
(`packing.eval_windows`), so every target is predicted from up to seq_len - 1
tokens of its own document: the figure depends on the model and the text,
not on where seq_len happens to cut the document. The batches have the keys
of the training batches (pipeline.py); `loss_mask` marks the targets scored.
A chat task's documents score only their responses (their stored masks), and
their bytes are the responses' (`layout.read_heldout_scored_bytes`): held-out
response bits per byte.
"""
import zlib
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data.load import packing, prepared

# Any fixed value: the held-out order must be the same in every evaluation and run.
_EVAL_ORDER_SEED = 0x4E1D0
# (data folder, task) pairs already warned about missing per-document byte counts.
_warned_bytes: set[tuple[str, str]] = set()


def eval_order(num_docs: int, task_name: str) -> np.ndarray:
  """The seeded random order of a task's held-out documents (indices into its split).

  Keyed only by the task's name and the split's size, so every evaluation of
  every run on the same prepared data uses the same order.
  """
  rng = np.random.default_rng([_EVAL_ORDER_SEED, zlib.crc32(task_name.encode())])
  return rng.permutation(num_docs)


def default_stride(seq_len: int) -> int:
  """Pairs scored per window after a long document's first: seq_len // 2, so every
  target has at least half a row of context (or its whole document before it)."""
  return max(1, seq_len // 2)


class EvalBatches:
  """Whole held-out documents of one task in a given order, as packed batches.

  The plan (`packing.pack_in_order`) is made for the global batch on every
  process alike; process p yields rows [p * R, (p + 1) * R) of each global
  batch (R = batch_size // process_count), so processes score disjoint
  windows, all yield `num_batches` batches (padding rows where they have no
  window), and each knows the totals of the whole evaluation without
  communicating. A document with at most seq_len (input, target) pairs is one
  window in one row, every target scored. A longer one is cut into windows
  of seq_len pairs (`packing.eval_windows`): the first scores all its
  targets, each later one ends `stride` pairs further and scores only its
  new targets, the pairs before them being context (`loss_mask` 0). Every
  pair of an evaluated document is scored exactly once, with at least
  seq_len - stride pairs of context (or all of the document before it); a
  document of n > seq_len pairs costs 1 + ceil((n - seq_len) / stride) rows
  instead of ceil(n / seq_len): about twice as many at the default stride.
  A document stored as the model's tokenizer starts a text (data/layout.py)
  is scored as the model reads it: after BOS when it has one; without BOS its
  first token is context only (no pair predicts it), while `num_bytes` still
  counts the whole text.

  Attributes:
    num_batches: batches every process yields.
    num_docs: documents evaluated: the first ones of `order`, up to the one
      that crosses the end of batch `max_batches` (all of them when 0).
    num_tokens: their (input, target) pairs, over all processes: the targets
      scored (`loss_mask` 1), each once.
    num_bytes: their UTF-8 size, over all processes; bits per byte is
      `sum(token losses in nats) / ln(2) / num_bytes`.
    doc_indices: the evaluated documents, as indices into `docs`.
    split_docs: documents in the split.
  """

  def __init__(self, docs: list[np.ndarray], doc_bytes: Sequence[float], order: np.ndarray, *,
               seq_len: int, batch_size: int, pad_id: int, task_id: int, max_batches: int = 0,
               stride: int = 0, process_index: int = 0, process_count: int = 1,
               masks: list[np.ndarray] | None = None):
    """Plans the batches.

    Args:
      docs: every document of the split (token ids).
      doc_bytes: UTF-8 size of each document.
      order: the evaluation order (a permutation of range(len(docs))).
      seq_len: row length.
      batch_size: global rows per batch; divisible by process_count.
      pad_id: padding token id.
      task_id: the task's index in `task_ids`.
      max_batches: batches to fill (0: the whole split); see
        `packing.pack_in_order` for where the sample ends.
      stride: targets scored per window after a long document's first, at
        most seq_len (0: `default_stride(seq_len)`).
      process_index: this process.
      process_count: number of processes.
      masks: per document, its token loss mask (a chat task's: only response
        targets are scored, and `doc_bytes` are the responses' bytes).
    """
    if batch_size % process_count:
      raise ValueError(f"Eval batch size {batch_size} is not divisible by the "
                       f"{process_count} processes.")
    if len(doc_bytes) != len(docs):
      raise ValueError(f"{len(docs)} held-out documents but {len(doc_bytes)} byte counts.")
    if not 0 <= stride <= seq_len:
      raise ValueError(f"The held-out stride (eval.heldout_stride) is {stride}: it must be "
                       f"at most seq_len={seq_len} (0: seq_len // 2).")
    self.stride = stride or default_stride(seq_len)
    self._plan, count = packing.pack_in_order([len(docs[i]) - 1 for i in order], seq_len,
                                              batch_size, max_batches, stride=self.stride)
    self.doc_indices = np.asarray(order[:count], np.int64)
    self.split_docs = len(docs)
    self.num_batches = len(self._plan)
    self.num_docs = count
    self.num_tokens = int(sum(len(docs[i]) - 1 if masks is None else int(masks[i][1:].sum())
                              for i in self.doc_indices))
    self._masks = masks
    self.num_bytes = sum(doc_bytes[i] for i in self.doc_indices)
    self._docs, self._order, self._seq_len = docs, order, seq_len
    self._pad_id, self._task_id = pad_id, task_id
    rows = batch_size // process_count
    self._rows = slice(process_index * rows, (process_index + 1) * rows)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    span = self._seq_len + 1
    for batch in self._plan:
      rows = [packing.assemble_row(
          [self._piece(self._order[pos], first, span) for pos, first, _ in row],
          self._seq_len, self._pad_id,
          context=[scored - first for _, first, scored in row]) for row in batch[self._rows]]
      yield {k: np.stack([r[k] for r in rows]) for k in packing.ROW_KEYS}


  def _piece(self, doc: int, first: int, span: int) -> packing.RowPiece:
    piece = (self._docs[doc][first:first + span], self._task_id)
    return piece if self._masks is None else piece + (self._masks[doc][first:first + span],)


def _heldout_masks(data_dir, task_name: str, count: int) -> tuple[list | None, list | None]:
  """(loss mask, response bytes) of each held-out document of a chat task, else (None, None)."""
  scored_bytes = layout.read_heldout_scored_bytes(data_dir, task_name)
  if scored_bytes is None:
    return None, None
  files = layout.mask_files(layout.shard_files(data_dir, task_name, "heldout"))
  source = grain.sources.ArrayRecordDataSource(files)
  masks = [layout.decode_mask(source[i]) for i in range(len(source))]
  if len(masks) != count or len(scored_bytes) != count:
    raise ValueError(f"{data_dir}/{task_name}: {count} held-out documents but {len(masks)} "
                     f"loss masks and {len(scored_bytes)} response sizes; re-prepare it.")
  return masks, scored_bytes


def _heldout_doc_bytes(data_dir, task_name: str, docs: list[np.ndarray]) -> tuple[list, bool]:
  """(UTF-8 size of each held-out document, whether exact).

  Folders prepared before format 2 stored only the split's total: it is then
  shared out by (input, target) pairs, exact for the whole split but only
  approximate for a sample of it.
  """
  doc_bytes = layout.read_heldout_bytes(data_dir, task_name)
  if doc_bytes is not None:
    return doc_bytes, True
  total = layout.read_stats(data_dir, task_name)["heldout_bytes"]
  pairs = np.asarray([len(d) - 1 for d in docs], np.float64)
  return list(total * pairs / max(1.0, pairs.sum())), False


def make_eval_iterator(data_cfg, task_name: str, *, batch_size: int | None = None,
                       max_batches: int = 0, stride: int = 0, process_index: int = 0,
                       process_count: int = 1) -> EvalBatches:
  """Returns a task's held-out documents as packed batches (no FIM), whole.

  The documents come in `eval_order` (seeded, the same in every evaluation
  and run); with `max_batches` = N only the first ones are evaluated, up to
  the one that crosses the end of batch N: a uniform random sample of the
  split, in N batches or (usually) N + 1.

  Args:
    data_cfg: the `data` config section (its mixture must contain the task).
    task_name: the task whose held-out documents to load.
    batch_size: global rows per batch (default data.batch_size).
    max_batches: batches to fill (0: the whole split).
    stride: targets scored per window after a long document's first
      (`EvalBatches`; 0: data_cfg.seq_len // 2).
    process_index: this host's index; hosts take disjoint rows of every batch.
    process_count: number of hosts.

  Returns:
    EvalBatches with the evaluated documents' `num_bytes` and `num_tokens`.
  """
  mixture = prepared.open_prepared(data_cfg)
  names, manifest, data_dir = mixture.task_names, mixture.manifest, mixture.directory
  if task_name not in names:
    raise ValueError(f"Task {task_name!r} is not in mixture {data_cfg.mixture!r}: {names}")
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task_name, "heldout"))
  # Every process reads the whole split (it is small): all plan the same batches.
  docs = [layout.decode_record(source[i]) for i in range(len(source))]
  doc_bytes, exact = _heldout_doc_bytes(data_dir, task_name, docs)
  masks, scored_bytes = _heldout_masks(data_dir, task_name, len(docs))
  doc_bytes = doc_bytes if scored_bytes is None else scored_bytes
  batches = EvalBatches(docs, doc_bytes, eval_order(len(docs), task_name),
                        seq_len=data_cfg.seq_len, batch_size=batch_size or data_cfg.batch_size,
                        pad_id=manifest["pad_id"], task_id=names.index(task_name),
                        max_batches=max_batches, stride=stride, process_index=process_index,
                        process_count=process_count, masks=masks)
  key = (str(data_dir), task_name)
  if not exact and batches.num_docs < len(docs) and key not in _warned_bytes:
    _warned_bytes.add(key)
    print(f"WARNING: {data_dir}/{task_name} has no per-document held-out byte counts "
          "(prepared before format 2): the bytes of a sample of its held-out split are "
          "estimated from its token share. For exact bits per byte, delete the folder "
          f"and re-run `{layout.prepare_command(data_cfg.mixture, data_dir)}`.", flush=True)
  return batches
