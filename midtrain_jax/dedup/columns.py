"""Growing numpy columns: per-document values stored as arrays, not as Python objects.

The one-process deduplication (components.py) holds a few values of every
document of a corpus until it decides; as Python objects (a tuple of band
keys, a str, a small ndarray each) they cost several times their bytes. These
columns keep them as rows of fixed-size numpy blocks, so memory stays close to
the values' own bytes, and `finish` joins the blocks into one array while
freeing them one by one (the peak is one copy plus one block, not two copies).
"""
import numpy as np

# Blocks grow from 64 KB to 1 MB: a small column wastes little of its last block,
# a large one appends in few blocks.
FIRST_BLOCK_BYTES, BLOCK_BYTES = 1 << 16, 1 << 20


class Column:
  """Rows of one dtype and row shape, appended in batches.

  Args:
    dtype: the rows' dtype; None: taken from the first batch.
    shape: the shape of one row; None: taken from the first batch.
  """

  def __init__(self, dtype, shape: tuple | None = ()):
    self.dtype = np.dtype(dtype) if dtype is not None else None
    self.shape = shape
    self.rows = 0
    self._blocks: list[np.ndarray] = []
    self._room = 0  # Free rows in the last block.

  def append(self, values) -> None:
    """Adds the rows of `values` ([m, *shape]).

    Raises:
      ValueError: when a row's shape differs from the column's.
    """
    values = np.asarray(values, self.dtype)
    if self.dtype is None:
      self.dtype = values.dtype
    if self.shape is None:
      self.shape = values.shape[1:]
    if values.shape[1:] != self.shape:
      raise ValueError(f"Rows of shape {values.shape[1:]} appended to a column of rows of "
                       f"shape {self.shape}: every document needs rows of one shape.")
    done = 0
    while done < len(values):
      if self._room == 0:
        self._new_block()
      block = self._blocks[-1]
      filled = len(block) - self._room
      take = min(self._room, len(values) - done)
      block[filled:filled + take] = values[done:done + take]
      self._room -= take
      self.rows += take
      done += take

  def _new_block(self) -> None:
    """Appends an empty block twice the last one's bytes (FIRST_BLOCK_BYTES .. BLOCK_BYTES)."""
    row_bytes = max(1, self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)))
    size = min(BLOCK_BYTES, FIRST_BLOCK_BYTES << len(self._blocks))
    self._blocks.append(np.empty((max(1, size // row_bytes), *self.shape), self.dtype))
    self._room = len(self._blocks[-1])

  def finish(self) -> np.ndarray:
    """The rows as one array [rows, *shape]; the column is left empty."""
    out = np.empty((self.rows, *(self.shape or ())), self.dtype or np.uint8)
    start = 0
    while self._blocks:
      block = self._blocks.pop(0)  # Freed as soon as it is copied.
      take = min(len(block), self.rows - start)
      out[start:start + take] = block[:take]
      start += take
    self.rows = self._room = 0
    return out


  def blocks(self) -> "Blocks":
    """The rows left in their blocks (no copy of the column); the column is left empty."""
    if self._blocks and self._room:
      self._blocks[-1] = self._blocks[-1][:len(self._blocks[-1]) - self._room]
    out = Blocks(self._blocks, self.dtype or np.dtype(np.uint8), self.shape or ())
    self._blocks, self.rows, self._room = [], 0, 0
    return out


class Blocks:
  """A column's rows in their blocks, read as one array by row numbers.

  Joining the blocks of the largest columns (the fingerprints) into one array
  would hold them twice at once; the readers gather rows (`rows[index]`) or
  walk the blocks (`parts`) instead.
  """

  def __init__(self, blocks: list[np.ndarray], dtype, shape: tuple):
    self._blocks = blocks
    self.dtype = np.dtype(dtype)
    self._starts = np.cumsum([0] + [len(b) for b in blocks])
    self.shape = (int(self._starts[-1]), *shape)
    self.ndim = len(self.shape)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, index) -> np.ndarray:
    """The rows of an int array of row numbers, as one array."""
    index = np.asarray(index, np.int64)
    block = np.searchsorted(self._starts, index, side="right") - 1
    out = np.empty((len(index), *self.shape[1:]), self.dtype)
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(len(self._blocks) + 1))
    for k in np.flatnonzero(np.diff(bounds)):
      picked = order[bounds[k]:bounds[k + 1]]
      out[picked] = self._blocks[k][index[picked] - self._starts[k]]
    return out

  def parts(self):
    """(first row number, rows) of each block."""
    return zip(self._starts[:-1].tolist(), self._blocks)


class Strings:
  """Strings stored as their UTF-8 bytes end to end and an end offset each."""

  def __init__(self):
    self._bytes = Column(np.uint8)
    self._ends = Column(np.int64)
    self._total = 0

  def append(self, strings) -> None:
    encoded = [s.encode("utf-8") for s in strings]
    if not encoded:
      return
    ends = self._total + np.cumsum([len(e) for e in encoded])
    self._bytes.append(np.frombuffer(b"".join(encoded), np.uint8))
    self._ends.append(ends)
    self._total = int(ends[-1])

  def finish(self) -> "StringTable":
    return StringTable(self._bytes.finish(), self._ends.finish())


class StringTable:
  """The finished strings: `table[i]` decodes the i-th."""

  def __init__(self, data: np.ndarray, ends: np.ndarray):
    self._data, self._ends = data, ends

  def __len__(self) -> int:
    return len(self._ends)

  def __getitem__(self, i: int) -> str:
    start = int(self._ends[i - 1]) if i else 0
    return self._data[start:int(self._ends[i])].tobytes().decode("utf-8")

  @property
  def nbytes(self) -> int:
    return self._data.nbytes + self._ends.nbytes


_INT64 = (-(1 << 63), (1 << 63) - 1)


def int_row(key) -> bool:
  """True when `key` is a tuple of ints (not bools) that fit in int64."""
  return isinstance(key, tuple) and all(
      isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
      and _INT64[0] <= v <= _INT64[1] for v in key)


class Keys:
  """Sortable keys: an int64 [n, k] table while every key is a tuple of k ints,
  else (from the first key that is not) a list of the keys as they are."""

  def __init__(self):
    self._ints = Column(np.int64, None)
    self._objects: list | None = None

  def append(self, keys) -> None:
    keys = list(keys)
    if self._objects is None:
      width = self._ints.shape[0] if self._ints.shape is not None else \
          (len(keys[0]) if keys and isinstance(keys[0], tuple) else -1)
      if all(int_row(k) and len(k) == width for k in keys):
        if keys:
          self._ints.append(np.array(keys, np.int64).reshape(len(keys), width))
        return
      self._objects = [tuple(row) for row in self._ints.finish().tolist()]
    self._objects += keys

  def finish(self) -> np.ndarray:
    """int64 [n, k], or an object array [n] of the keys."""
    if self._objects is None:
      if self._ints.shape is None:
        return np.zeros((0, 0), np.int64)
      return self._ints.finish()
    out = np.empty(len(self._objects), object)
    for i, key in enumerate(self._objects):  # One by one: numpy would unpack the tuples.
      out[i] = key
    self._objects = None
    return out
