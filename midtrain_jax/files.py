"""Atomic file writes: a reader never sees half a file, a crash never truncates one.

Every file the package writes whole (configs, manifests, stats, reports,
caches) goes through here: write to a temporary name in the same folder, then
rename. Paths may be local or `gs://` (etils.epath).
"""
import contextlib
import json
import os
from typing import Any

from etils import epath


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
  that need a file name, such as ArrayRecord, gzip or numpy)."""
  path = epath.Path(path)
  tmp = _temporary(path)
  write_fn(str(tmp))
  tmp.replace(path)
