"""Best-fit-decreasing packing of documents into rows of `seq_len` tokens.

Documents arrive as stored token arrays, `[bos] body [eos]` or `body [eos]`
(data/layout.py); nothing here depends on which. Each becomes (input,
target) pairs `doc[:-1] -> doc[1:]`; a document with more than `seq_len`
pairs is split into pieces of at most `seq_len` pairs (a piece keeps one
overlapping token so no target is lost). Pieces are collected until a window
holds `window_rows * seq_len` pairs, then packed best-fit-decreasing (longest
piece first, into the fullest row it still fits). Only the last rows of a
window are partly empty, so padding is about 0.5 / window_rows.

Each row carries `segment_ids` (1, 2, ... per piece, 0 = padding),
`positions` (restarting at 0 per piece), `task_ids` (-1 = padding) and
`loss_mask` (1 where the target is scored, 0 on padding and on context;
training scores every target of a text document's piece, and of a chat
document's piece the targets whose token its own stored mask marks: a piece
carries the slice of its document's mask that lines up with its tokens, so
packing and splitting never mix one document's mask with another's).
Targets never cross a piece boundary, so with segment-aware attention no token
sees or predicts another document.

Exact resume: the state is the parent's state at the start of the current
window plus the number of rows already emitted from it; restoring re-reads
and re-packs that window (deterministically) and skips the emitted rows.

Evaluation packs differently (`pack_in_order`): documents stay in the order
given and whole, so the first k batches always hold exactly the first
documents of that order. A document longer than seq_len is scored in
overlapping windows (`eval_windows`): each window's first pairs are the
context of the targets it scores, so every target is predicted from up to
seq_len - 1 tokens of its own document before it.
"""
import bisect
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

ROW_KEYS = ("inputs", "targets", "segment_ids", "positions", "task_ids", "loss_mask")


# A piece of a document in a row: (tokens, task id) or (tokens, task id, token mask).
RowPiece = tuple


def split_pieces(tokens: np.ndarray, seq_len: int) -> list[np.ndarray]:
  """Splits a document into pieces of at most seq_len + 1 tokens (1 overlap).

  Args:
    tokens: the document's token ids.
    seq_len: row length in (input, target) pairs.

  Returns:
    Pieces whose pairs cover every pair of the document exactly once.
  """
  return [tokens[start:start + seq_len + 1] for start in range(0, len(tokens) - 1, seq_len)]


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
  """Assigns items to bins: longest first, each into the tightest bin it fits.

  Args:
    lengths: item sizes, each <= capacity.
    capacity: bin size.

  Returns:
    Bins as lists of item indices, in order of creation.
  """
  order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
  bins: list[list[int]] = []
  # Free space of the open bins, kept sorted, with the matching bin ids.
  free: list[int] = []
  free_bin: list[int] = []
  for item in order:
    size = lengths[item]
    slot = bisect.bisect_left(free, size)
    if slot < len(free):
      bin_id = free_bin.pop(slot)
      left = free.pop(slot) - size
    else:
      bin_id, left = len(bins), capacity - size
      bins.append([])
    bins[bin_id].append(item)
    if left > 0:
      slot = bisect.bisect_left(free, left)
      free.insert(slot, left)
      free_bin.insert(slot, bin_id)
  return bins


def eval_windows(pairs: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
  """Where the evaluation windows of a document lie, and which targets each scores.

  A document of at most seq_len (input, target) pairs is one window, all
  scored. A longer one: the first window holds pairs [0, seq_len), all
  scored; every later one ends `stride` pairs further (the last one at the
  document's end), holds the seq_len pairs up to its end and scores only
  those after the previous window's end. So every pair is scored exactly
  once, with at least seq_len - stride pairs of context before it (or all of
  the document before it), at the cost of 1 + ceil((pairs - seq_len) /
  stride) windows of seq_len pairs instead of ceil(pairs / seq_len).

  Args:
    pairs: the document's (input, target) pairs (its tokens - 1).
    seq_len: window (row) length in pairs.
    stride: pairs scored per window after the first, 1 <= stride <= seq_len.

  Returns:
    (first pair, first scored pair) per window; a window holds the pairs
    [first pair, min(first pair + seq_len, pairs)).
  """
  if not 1 <= stride <= seq_len:
    raise ValueError(f"The evaluation stride {stride} must be between 1 and seq_len={seq_len}.")
  windows = [(0, 0)] if pairs > 0 else []
  end = min(pairs, seq_len)
  while end < pairs:
    new_end = min(end + stride, pairs)
    windows.append((new_end - seq_len, end))
    end = new_end
  return windows


# A window of a document: (index of the document, its first pair, its first scored pair).
Piece = tuple[int, int, int]


def pack_in_order(lengths: Sequence[int], seq_len: int, rows: int, max_batches: int = 0, *,
                  stride: int) -> tuple[list[list[list[Piece]]], int]:
  """Packs documents into batches of `rows` rows in the given order, each whole.

  A document is cut into windows by `eval_windows` (one, unless it is longer
  than seq_len). Its windows of seq_len pairs take empty rows of the last
  batch, then rows of fresh batches; a shorter window (a document's only one)
  goes best-fit into the tightest row of the last batch it fits, else into
  the next empty row. Only the last batch and fresh ones take windows, so
  how the first k documents are packed never depends on later ones: packing
  stopped early holds exactly the first documents of the order, each with
  every window, in the same rows as when packing them all.

  Args:
    lengths: (input, target) pairs of each document, in packing order.
    seq_len: row length in pairs.
    rows: rows per batch.
    max_batches: stop after the first document that needs a batch past this
      many (0: pack every document). That document is packed too: stopping
      once a fixed amount of text is reached, not before a document that is
      likely long because it crosses the end, keeps the sample's loss per
      byte nearly unbiased. So there are usually max_batches + 1 batches.
    stride: pairs scored per window after a document's first (`eval_windows`).

  Returns:
    (batches, count): each batch is `rows` rows, each row a list of windows
    (index into `lengths`, first pair, first scored pair); `count` is the
    number of leading documents packed.
  """
  batches: list[list[list[Piece]]] = []
  free = np.zeros(0, np.int64)  # Free pairs per row of the last batch.
  for doc, pairs in enumerate(lengths):
    windows = eval_windows(pairs, seq_len, stride)
    if not windows:
      continue
    size = [min(seq_len, pairs - first) for first, _ in windows]
    short = size[-1] if size[-1] < seq_len else 0
    # Rows of the last batch: the empty ones, and the tightest other one for the short window.
    empty = [int(r) for r in np.flatnonzero(free == seq_len)]
    fits = np.flatnonzero((free >= short) & (free < seq_len)) if short else []
    short_row = int(fits[np.argmin(free[fits])]) if len(fits) else None
    fresh = max(0, len(windows) - (short_row is not None) - len(empty))
    new = -(-fresh // rows)
    last = len(batches) - 1
    slots = [(last, r) for r in empty] + [(last + 1 + i // rows, i % rows) for i in range(fresh)]
    batches += [[[] for _ in range(rows)] for _ in range(new)]
    if new:
      free = np.full(rows, seq_len, np.int64)
    if short_row is not None:  # The short window is the last one.
      slots = slots[:len(windows) - 1] + [(last, short_row)]
    for (batch, row), (first, scored), n in zip(slots, windows, size):
      batches[batch][row].append((doc, first, scored))
      if batch == len(batches) - 1:
        free[row] -= n
    if max_batches and len(batches) > max_batches:
      return batches, doc + 1
  return batches, len(lengths)


def assemble_row(pieces: list[RowPiece], seq_len: int, pad_id: int,
                 context: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """Builds one packed row from (piece tokens, task id[, token mask]) pieces.

  Args:
    pieces: the row's pieces, each with at most seq_len + 1 tokens; a piece
      with a token mask (a chat document's, aligned with its tokens) scores
      only the targets whose token the mask marks.
    seq_len: row length.
    pad_id: token id used for padding inputs and targets.
    context: per piece, its leading (input, target) pairs that are context
      only (`loss_mask` 0); default none (every target is scored).

  Returns:
    The row: int32 arrays of shape [seq_len] for every key in ROW_KEYS.
  """
  row = {"inputs": np.full(seq_len, pad_id, np.int32),
         "targets": np.full(seq_len, pad_id, np.int32),
         "segment_ids": np.zeros(seq_len, np.int32),
         "positions": np.zeros(seq_len, np.int32),
         "task_ids": np.full(seq_len, -1, np.int32),
         "loss_mask": np.zeros(seq_len, np.int32)}
  at = 0
  for segment, (piece, task_id, *mask) in enumerate(pieces, start=1):
    n = len(piece) - 1
    row["inputs"][at:at + n] = piece[:-1]
    row["targets"][at:at + n] = piece[1:]
    row["segment_ids"][at:at + n] = segment
    row["positions"][at:at + n] = np.arange(n)
    row["task_ids"][at:at + n] = task_id
    first = at + (context[segment - 1] if context else 0)
    # Target i is token i + 1 of the piece: its mask is the token mask shifted by one.
    row["loss_mask"][first:at + n] = mask[0][1 + first - at:n + 1] if mask else 1
    at += n
  return row


class BestFitPackIterDataset(grain.IterDataset):
  """Packs {"tokens", "task_id"[, "loss_mask"]} documents into rows (module docstring)."""

  def __init__(self, parent: grain.IterDataset, *, seq_len: int, window_rows: int,
               pad_id: int, seed: int):
    super().__init__(parent)
    self.seq_len, self.window_rows, self.pad_id, self.seed = (
        seq_len, window_rows, pad_id, seed)

  def __iter__(self) -> "PackIterator":
    return PackIterator(self._parent.__iter__(), self)

  def __str__(self) -> str:
    return f"BestFitPackIterDataset(seq_len={self.seq_len}, window_rows={self.window_rows})"


class PackIterator(grain.DatasetIterator):
  """Iterator of BestFitPackIterDataset with replay-based exact resume."""

  def __init__(self, parent: grain.DatasetIterator, ds: BestFitPackIterDataset):
    super().__init__(parent)
    self._ds = ds
    self._window_start_state = parent.get_state()
    self._windows = 0
    self._rows: list[list[RowPiece]] = []
    self._emitted = 0

  def _fill_window(self) -> None:
    self._window_start_state = self._parent.get_state()
    pieces: list[RowPiece] = []
    budget = self._ds.window_rows * self._ds.seq_len
    while budget > 0:
      try:
        doc = next(self._parent)
      except StopIteration:
        if pieces:
          break
        raise
      masks = (split_pieces(doc["loss_mask"], self._ds.seq_len) if "loss_mask" in doc
               else None)
      for i, piece in enumerate(split_pieces(doc["tokens"], self._ds.seq_len)):
        pieces.append((piece, doc["task_id"]) + ((masks[i],) if masks else ()))
        budget -= len(piece) - 1
    bins = best_fit_decreasing([len(p[0]) - 1 for p in pieces], self._ds.seq_len)
    # Rows are shuffled within the window so long documents (packed first)
    # do not cluster in consecutive batches.
    rng = np.random.default_rng([self._ds.seed, self._windows])
    self._rows = [[pieces[i] for i in bins[b]] for b in rng.permutation(len(bins))]
    self._emitted = 0

  def __next__(self) -> dict[str, np.ndarray]:
    if self._emitted >= len(self._rows):
      if self._rows:
        self._windows += 1
      self._fill_window()
    row = self._rows[self._emitted]
    self._emitted += 1
    return assemble_row(row, self._ds.seq_len, self._ds.pad_id)

  def get_state(self) -> dict[str, Any]:
    if self._rows and self._emitted >= len(self._rows):
      # The window is spent: resume from the next one without replaying.
      return {"parent": self._parent.get_state(), "windows": self._windows + 1,
              "emitted": 0}
    return {"parent": self._window_start_state, "windows": self._windows,
            "emitted": self._emitted}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._windows = int(state["windows"])
    self._rows, self._emitted = [], 0
    if state["emitted"]:
      self._fill_window()
      self._emitted = int(state["emitted"])
