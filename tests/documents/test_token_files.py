"""Token files as OLMo-core publishes them: raw memmaps, .npy headers, metadata, bad input."""
import gzip

import numpy as np
import pytest

from midtrain_jax.documents import readers, token_files

_EOS, _BOS, _VOCAB = 1, 2, 1000
# Documents as a tokenizer made them (ids only; the reader knows no text).
_DOCS = [[5, 6, 7], [900, 8], [9], [10, 11, 12, 13]]


def _flat(docs, bos=False) -> np.ndarray:
  return np.asarray([t for d in docs for t in ([_BOS] if bos else []) + d + [_EOS]])


def _write_raw(path, ids, dtype):
  # As OLMo-core's data guide writes them: np.memmap, no header.
  out = np.memmap(path, mode="w+", dtype=dtype, shape=(len(ids),))
  out[:] = ids
  out.flush()
  return str(path)


def _read(path, dtype="uint32", bos=None):
  items = list(token_files.read_token_file(str(path), dtype, _EOS, _VOCAB, bos))
  return [i.ids.tolist() if isinstance(i, token_files.TokenDocument) else i for i in items]


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_raw_memmap_and_npy_files_give_the_same_documents(tmp_path, dtype):
  raw = _write_raw(tmp_path / "part-0.npy", _flat(_DOCS), dtype)
  npy = tmp_path / "saved.npy"
  np.save(npy, _flat(_DOCS).astype(dtype))
  assert npy.read_bytes()[:6] == b"\x93NUMPY"  # A real header, unlike the memmap.
  assert _read(raw, dtype) == _read(npy, dtype) == _DOCS
  where = [i.where for i in token_files.read_token_file(raw, dtype, _EOS, _VOCAB)]
  assert where == [f"{raw}:{n}" for n in range(1, 5)]


def test_windows_smaller_than_the_file_split_alike(tmp_path, monkeypatch):
  ids = np.concatenate([_flat(_DOCS)] * 50)
  path = _write_raw(tmp_path / "big.npy", ids, "uint32")
  whole = _read(path)
  monkeypatch.setattr(token_files, "_WINDOW", 7)  # Documents straddle windows.
  assert _read(path) == whole == _DOCS * 50


def test_leading_bos_is_dropped_only_when_asked_and_last_document_may_lack_eos(tmp_path):
  ids = np.concatenate([_flat(_DOCS, bos=True), [_BOS, 14, 15]])
  path = _write_raw(tmp_path / "bos.npy", ids, "uint32")
  assert _read(path, bos=_BOS) == _DOCS + [[14, 15]]
  assert _read(path)[0] == [_BOS, 5, 6, 7]


def test_empty_documents_are_malformed_with_their_place(tmp_path):
  path = _write_raw(tmp_path / "gap.npy", [5, _EOS, _EOS, 6, _EOS], "uint32")
  items = _read(path)
  assert items[0] == [5] and items[2] == [6]
  assert items[1] == readers.Malformed(f"{path}:2", "empty document")


def test_metadata_file_gives_the_boundaries_and_ids(tmp_path):
  # A document holding the EOS id inside stays whole: the metadata decides.
  docs = [[5, _EOS, 6], [7, 8]]
  path = _write_raw(tmp_path / "part-1.npy", _flat(docs), "uint16")
  with gzip.open(tmp_path / "part-1.csv.gz", "wt") as f:
    f.write("0,4,doc-a,src.jsonl,1\n4,7,doc-b,src.jsonl,2\n")
  items = list(token_files.read_token_file(path, "uint16", _EOS, _VOCAB))
  assert [i.ids.tolist() for i in items] == docs
  assert [i.where for i in items] == [f"{path}:1 doc-a", f"{path}:2 doc-b"]


@pytest.mark.parametrize("lines, message", [
    ("0,4\n2,7\n", r"part-2.csv.gz:2: range \[2, 7\) is not after the previous one"),
    ("0,99\n", r"part-2.csv.gz:1: range \[0, 99\) is not .* inside the 7 tokens"),
    ("zero,4\n", r"part-2.csv.gz:1: expected `start,end"),
])
def test_bad_metadata_names_file_and_line(tmp_path, lines, message):
  path = _write_raw(tmp_path / "part-2.npy", _flat([[5, 6, 7], [8, 9]]), "uint32")
  with gzip.open(tmp_path / "part-2.csv.gz", "wt") as f:
    f.write(lines)
  with pytest.raises(token_files.TokenFileError, match=message):
    _read(path)


def test_malformed_files_name_the_file_and_what_is_wrong(tmp_path):
  odd = tmp_path / "odd.npy"
  odd.write_bytes(_flat(_DOCS).astype("<u4").tobytes()[:-1])
  with pytest.raises(token_files.TokenFileError,
                     match=rf"{odd}: 55 bytes is not a whole number of uint32 ids"):
    _read(odd)
  narrow = _write_raw(tmp_path / "narrow.npy", _flat(_DOCS), "uint16")
  with pytest.raises(token_files.TokenFileError,
                     match=rf"{narrow}: token 0 is id \d+, outside the vocabulary of 1000"):
    _read(narrow, "uint32")  # uint16 pairs read as one uint32 id.
  wide = _write_raw(tmp_path / "wide.npy", np.tile(_flat(_DOCS), 8), "uint32")
  with pytest.raises(token_files.TokenFileError, match=f"{wide}: every second uint16 id is 0"):
    _read(wide, "uint16")
  big = _write_raw(tmp_path / "big.npy", [5, 1000, _EOS], "uint32")
  with pytest.raises(token_files.TokenFileError, match=f"{big}: token 1 is id 1000"):
    _read(big)
  saved = tmp_path / "saved.npy"
  np.save(saved, _flat(_DOCS).astype(np.int64))
  with pytest.raises(token_files.TokenFileError, match=f"{saved}: its npy header says int64"):
    _read(saved)
  with pytest.raises(token_files.TokenFileError, match="token dtype 'int8' is not one of"):
    _read(narrow, "int8")
