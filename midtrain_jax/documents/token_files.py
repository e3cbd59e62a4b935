"""Pre-tokenised corpora as OLMo-core and the Dolma toolkit publish them.

A token file is one flat array of token ids in which every document ends with
the EOS id. OLMo-core writes it with `np.memmap`, so a `.npy` file there is a
raw array without an npy header (the reader also takes a real `.npy` file
with a header, as `np.save` writes). The ids are unsigned integers of the
width the publisher chose (`DTYPES`), little-endian.

A metadata file beside it, `<stem>.csv.gz` (Dolma's tokenizer writes one),
gives each document's `[start, end)` token range and its id as lines
`start,end[,id,src,loc]`; when present it decides the document boundaries,
as in OLMo-core, otherwise the documents are split on the EOS id.

Documents are streamed from a memory map, a bounded window at a time, so a
file of any size reads in constant memory. A document whose ids are out of
the vocabulary, a file whose size is not a whole number of ids, or an id
width that does not fit the file raise `TokenFileError` naming the file.
"""
import dataclasses
import gzip
from collections.abc import Iterator

import numpy as np
from etils import epath

from midtrain_jax.documents import readers

DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"), "uint64": np.dtype("<u8")}
_NPY_MAGIC = b"\x93NUMPY"
# Tokens scanned per step when splitting on EOS: 4M ids, at most 32 MB held.
_WINDOW = 1 << 22
# A uint16 file whose every second id in this many is 0 holds wider ids.
_WIDTH_PROBE = 64


class TokenFileError(ValueError):
  """A token file or its metadata does not hold what its task declares."""


@dataclasses.dataclass(frozen=True)
class TokenDocument:
  """One document of a token file: its ids (no EOS, no leading BOS) and where it is."""
  ids: np.ndarray
  where: str


def metadata_path(path: str) -> str:
  """The metadata file OLMo-core looks for beside `path`: `x.npy` -> `x.csv.gz`."""
  return (path[:-len(".npy")] if path.endswith(".npy") else path) + ".csv.gz"


def open_tokens(path: str, dtype: str) -> np.ndarray:
  """The ids of a token file as a read-only memory map (raw array or `.npy`).

  Args:
    path: a local token file.
    dtype: the declared id width, a key of DTYPES.

  Raises:
    TokenFileError: naming the file: an unknown width, a size that is not a
      whole number of ids, or an npy header of another width or shape.
  """
  if dtype not in DTYPES:
    raise TokenFileError(f"{path}: token dtype {dtype!r} is not one of {sorted(DTYPES)}.")
  want = DTYPES[dtype]
  with open(path, "rb") as f:
    has_header = f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
  if has_header:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim != 1 or array.dtype != want:
      raise TokenFileError(f"{path}: its npy header says {array.dtype} of shape "
                           f"{array.shape}; the task declares a flat {dtype} array.")
    return array
  size = epath.Path(path).stat().length
  if size % want.itemsize:
    raise TokenFileError(f"{path}: {size} bytes is not a whole number of {dtype} ids "
                         f"({want.itemsize} bytes each): another token dtype, or a "
                         "truncated file.")
  if size == 0:
    return np.zeros(0, want)
  return np.memmap(path, dtype=want, mode="r")


def _check_ids(ids: np.ndarray, offset: int, vocab_size: int, path: str, dtype: str) -> None:
  """Raises naming the file and position of the first id outside the vocabulary."""
  if ids.size and int(ids.max()) >= vocab_size:
    first = int(np.flatnonzero(ids >= vocab_size)[0])
    raise TokenFileError(
        f"{path}: token {offset + first} is id {int(ids[first])}, outside the vocabulary "
        f"of {vocab_size} ids: another tokenizer, or ids wider than the declared {dtype}.")


def _check_width(tokens: np.ndarray, path: str, dtype: str, eos_id: int) -> None:
  """A uint16 file holding uint32 ids reads as (id, 0) pairs: say so, not garbage.

  Not where EOS is id 0: one-token documents then look the same.
  """
  probe = np.asarray(tokens[:_WIDTH_PROBE])
  if (dtype == "uint16" and eos_id != 0 and probe.size == _WIDTH_PROBE and
      not probe[1::2].any()):
    raise TokenFileError(f"{path}: every second uint16 id is 0, as uint32 ids read as "
                         "uint16 are; declare token_dtype uint32.")


def _document(ids: np.ndarray, where: str, eos_id: int, bos_id: int | None):
  """A document's body (trailing EOS and leading BOS removed), or Malformed when empty."""
  if ids.size and ids[-1] == eos_id:
    ids = ids[:-1]
  if bos_id is not None and ids.size and ids[0] == bos_id:
    ids = ids[1:]
  if not ids.size:
    return readers.Malformed(where, "empty document")
  return TokenDocument(np.array(ids, np.uint32), where)


def _split_on_eos(tokens: np.ndarray, path: str, dtype: str, eos_id: int, vocab_size: int,
                  bos_id: int | None) -> Iterator[TokenDocument | readers.Malformed]:
  start, number = 0, 0
  for lo in range(0, tokens.size, _WINDOW):
    window = np.asarray(tokens[lo:lo + _WINDOW])
    _check_ids(window, lo, vocab_size, path, dtype)
    for end in np.flatnonzero(window == eos_id) + lo + 1:
      number += 1
      yield _document(tokens[start:end], f"{path}:{number}", eos_id, bos_id)
      start = end
  if start < tokens.size:  # A last document without its EOS is still a document.
    yield _document(tokens[start:], f"{path}:{number + 1}", eos_id, bos_id)


def _metadata_ranges(meta: str, total: int) -> Iterator[tuple[int, int, str]]:
  """(start, end, "file:line id") of each document the metadata file lists, checked."""
  previous = 0
  with epath.Path(meta).open("rb") as raw, gzip.open(raw, "rt") as f:
    for number, line in enumerate(f, start=1):
      fields = line.rstrip("\n").split(",")
      try:
        start, end = int(fields[0]), int(fields[1])
      except (IndexError, ValueError):
        raise TokenFileError(f"{meta}:{number}: expected `start,end[,id,...]`, got "
                             f"{line.strip()!r}.") from None
      if not previous <= start < end <= total:
        raise TokenFileError(f"{meta}:{number}: range [{start}, {end}) is not after the "
                             f"previous one ({previous}) inside the {total} tokens of its file.")
      previous = end
      yield start, end, f"{number}" + (f" {fields[2]}" if len(fields) > 2 else "")


def read_token_file(path: str, dtype: str, eos_id: int, vocab_size: int,
                    bos_id: int | None = None) -> Iterator[TokenDocument | readers.Malformed]:
  """Streams the documents of one token file, in file order.

  Args:
    path: the token file (raw memmap or `.npy`), local.
    dtype: its id width, a key of DTYPES.
    eos_id: the EOS id that ends every document.
    vocab_size: ids must be below it.
    bos_id: removed where it starts a document (documents get their start
      back by the model's rule when stored); None keeps every id.

  Yields:
    TokenDocument per document ("path:number", or "path:line id" with
    metadata), or readers.Malformed for an empty one.

  Raises:
    TokenFileError: naming the file (see `open_tokens`, ids out of the
      vocabulary, bad metadata lines).
  """
  tokens = open_tokens(path, dtype)
  _check_width(tokens, path, dtype, eos_id)
  meta = metadata_path(path)
  if not epath.Path(meta).exists():
    yield from _split_on_eos(tokens, path, dtype, eos_id, vocab_size, bos_id)
    return
  for start, end, tag in _metadata_ranges(meta, tokens.size):
    ids = np.asarray(tokens[start:end])
    _check_ids(ids, start, vocab_size, path, dtype)
    yield _document(ids, f"{path}:{tag}", eos_id, bos_id)


def read_token_files(files: list[str], dtype: str, eos_id: int, vocab_size: int,
                     bos_id: int | None = None) -> Iterator[TokenDocument | readers.Malformed]:
  """`read_token_file` over every file, in order."""
  for path in files:
    yield from read_token_file(path, dtype, eos_id, vocab_size, bos_id)
