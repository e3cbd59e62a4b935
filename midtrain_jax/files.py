"""Atomic file writes: a reader never sees half a file, a crash never truncates one.

Every file the package writes whole (configs, manifests, stats, reports,
caches) goes through here: write to a temporary name in the same folder, then
rename. Paths may be local or URLs such as `gs://` (etils.epath).
"""
import contextlib
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

from etils import epath


def is_url(path: str | os.PathLike) -> bool:
  """Whether `path` names a remote object store location (`gs://...`), not a local file."""
  return "://" in os.fspath(path)


def path(location: str | os.PathLike) -> pathlib.Path | epath.Path:
  """A local path as `pathlib.Path`, a URL as `epath.Path` (the same operations on both)."""
  return epath.Path(location) if is_url(location) else pathlib.Path(location)


def _temporary(path: epath.Path) -> epath.Path:
  # The pid keeps concurrent writers (processes of one run) off each other's files.
  return path.with_name(f"{path.name}.tmp{os.getpid()}")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  path = epath.Path(path)
  tmp = _temporary(path)
  tmp.write_bytes(data)
  tmp.replace(path)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically."""
  write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value: Any, indent: int = 1) -> None:
  """Writes `value` as sorted, indented JSON to `path` atomically."""
  write_text(path, json.dumps(value, indent=indent, sort_keys=True))


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w", **kwargs):
  """`open()` for streamed writes: the file appears under `path` only once closed
  without an error (`mode` "w"/"wb"; `kwargs` go to open, e.g. encoding)."""
  path = epath.Path(path)
  tmp = _temporary(path)
  try:
    with tmp.open(mode, **kwargs) as f:
      yield f
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  tmp.replace(path)


def write_with(path: str | os.PathLike, write_fn) -> None:
  """Atomically creates `path` with `write_fn(temporary_path)` (for writers
  that need a file name, such as ArrayRecord, gzip or numpy).

  Such writers take local names only: a URL's file is written locally first,
  then copied to a temporary name beside `path` and renamed.
  """
  path = epath.Path(path)
  tmp = _temporary(path)
  if is_url(path):
    with tempfile.TemporaryDirectory() as folder:
      local = os.path.join(folder, path.name)
      write_fn(local)
      epath.Path(local).copy(tmp, overwrite=True)
  else:
    write_fn(str(tmp))
  tmp.replace(path)


def remove_tree(location: str | os.PathLike) -> None:
  """Removes a folder and everything in it, local or at a URL; nothing when it is absent."""
  epath.Path(location).rmtree(missing_ok=True)


# Local copies of remote files made by this process: {URL: local path}.
_LOCAL_COPIES: dict[str, str] = {}


def local_copy(location: str | os.PathLike) -> str:
  """A local file holding `location`: itself when local, else a copy made once per process.

  Copies of files of one remote folder land in one local folder, so a file
  read beside another (a tokenizer's config) is found there too.
  """
  location = os.fspath(location)
  if not is_url(location):
    return location
  if location not in _LOCAL_COPIES:
    remote = epath.Path(location)
    folder = os.path.join(tempfile.gettempdir(), "midtrain_jax-copies",
                          hashlib.sha256(str(remote.parent).encode()).hexdigest()[:16])
    os.makedirs(folder, exist_ok=True)
    local = os.path.join(folder, remote.name)
    tmp = _temporary(epath.Path(local))
    remote.copy(tmp, overwrite=True)
    os.replace(tmp, local)
    _LOCAL_COPIES[location] = local
  return _LOCAL_COPIES[location]

