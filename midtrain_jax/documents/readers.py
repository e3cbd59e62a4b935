"""Readers for raw documents: JSONL (plain, .gz, .zst), Parquet and ArrayRecord.

Paths go through `etils.epath`, so local files and `gs://` objects read the
same way. Readers never raise on a bad record: they yield `Malformed` with the
file and line (or row) so prepare can count and report it, and decide whether
the count is past the configured limit.
"""
import dataclasses
import gzip
import io
import json
from collections.abc import Callable, Iterator

import pyarrow.parquet as pq
import zstandard
from array_record.python import array_record_module
from etils import epath

# Turns one parsed JSON object (or Parquet row) into the document text.
TextFn = Callable[[dict], str]


@dataclasses.dataclass(frozen=True)
class Document:
  """One good document: its text and where it came from ("file:line")."""
  text: str
  where: str


@dataclasses.dataclass(frozen=True)
class Malformed:
  """One rejected record: where it is and why ("bad JSON", "empty", ...)."""
  where: str
  reason: str


class MissingField(KeyError):
  """A record lacks a field its text is made of (its str() is the message, not a repr)."""

  def __str__(self) -> str:
    return str(self.args[0])


def field_text(field: str) -> TextFn:
  """Returns a TextFn reading one string field of a record."""
  def text_of(record: dict) -> str:
    value = record[field]
    if not isinstance(value, str):
      raise TypeError(f"field {field!r} is {type(value).__name__}, not str")
    return value
  text_of.__name__ = f"field_{field}"
  return text_of


def expand(patterns: list[str]) -> list[str]:
  """Expands glob patterns (local or gs://) to a sorted list of files.

  Args:
    patterns: file paths or glob patterns.

  Returns:
    The matching files, sorted within each pattern.

  Raises:
    FileNotFoundError: naming the first pattern that matches nothing.
  """
  files = []
  for pattern in patterns:
    if any(ch in pattern for ch in "*?["):
      # epath globs relative to the deepest folder without wildcards.
      parts = pattern.split("/")
      fixed = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
      root = epath.Path("/".join(parts[:fixed]) or ".")
      matched = sorted(str(p) for p in root.glob("/".join(parts[fixed:])))
    else:
      matched = [pattern] if epath.Path(pattern).exists() else []
    if not matched:
      raise FileNotFoundError(f"No files match {pattern!r}.")
    files.extend(matched)
  return files


def _open_text_lines(path: str) -> Iterator[bytes]:
  """Yields raw lines of a plain, gzip or zstd compressed file."""
  with epath.Path(path).open("rb") as raw:
    if path.endswith(".gz"):
      stream = gzip.GzipFile(fileobj=raw)
    elif path.endswith(".zst"):
      stream = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    else:
      stream = raw
    yield from stream


def _check_text(text: str, where: str) -> Document | Malformed:
  if not text.strip():
    return Malformed(where, "empty document")
  return Document(text, where)


def jsonl_records(path: str) -> Iterator[tuple[str, dict] | Malformed]:
  """Parses a JSON-lines file (plain, .gz or .zst; local or gs://).

  Yields:
    ("path:line", record) per object line (1-based), or Malformed.
  """
  for number, raw in enumerate(_open_text_lines(path), start=1):
    where = f"{path}:{number}"
    if not raw.strip():
      continue  # Blank lines separate nothing in JSONL; not an error.
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      yield Malformed(where, f"invalid UTF-8 ({e.reason} at byte {e.start})")
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      yield Malformed(where, f"bad JSON ({e.msg})")
      continue
    if not isinstance(record, dict):
      yield Malformed(where, "not a JSON object")
      continue
    yield where, record


def read_jsonl(path: str, text_fn: TextFn) -> Iterator[Document | Malformed]:
  """Reads a JSON-lines file, one document per line.

  Args:
    path: local path or gs:// URL (.jsonl, .gz or .zst).
    text_fn: maps the parsed object to the document text.

  Yields:
    Document or Malformed, tagged "path:line" (1-based).
  """
  for item in jsonl_records(path):
    yield item if isinstance(item, Malformed) else _from_record(item[1], item[0], text_fn)


def file_task_name(path: str) -> str:
  """A task name from a file name: `data/web.jsonl.gz` -> `web`."""
  name = path.rsplit("/", 1)[-1]
  for suffix in (".gz", ".zst", ".jsonl", ".ndjson", ".json"):
    name = name.removesuffix(suffix)
  return name


def keyed_records(path: str, text_key: str = "text",
                  id_key: str = "id") -> Iterator[tuple[str, dict]]:
  """(document id, whole record) of every line of a JSONL file, for rewriting it.

  The id is the record's `id_key` field, else "<task>:<line>". Unlike the
  readers above, which count bad records, this fails on the first one.

  Raises:
    ValueError: naming "path:line" and the reason for a malformed record or
      one without a string `text_key` field.
  """
  task = file_task_name(path)
  for item in jsonl_records(path):
    if isinstance(item, Malformed):
      raise ValueError(f"{item.where}: {item.reason}")
    where, record = item
    if not isinstance(record.get(text_key), str):
      raise ValueError(f"{where}: no string field {text_key!r}")
    yield str(record.get(id_key, f"{task}:{where.rsplit(':', 1)[1]}")), record


def _from_record(record, where: str, text_fn: TextFn) -> Document | Malformed:
  """The document of one parsed record, or why it has none."""
  try:
    text = text_fn(record)
  except (KeyError, TypeError) as e:
    return Malformed(where, f"missing text field ({e})")
  return _check_text(text, where)


def read_parquet(path: str, text_fn: TextFn) -> Iterator[Document | Malformed]:
  """Reads a Parquet file row by row (rows tagged "path:row", 1-based)."""
  with epath.Path(path).open("rb") as f:
    table = pq.ParquetFile(f)
    number = 0
    for batch in table.iter_batches(batch_size=1024):
      for record in batch.to_pylist():
        number += 1
        yield _from_record(record, f"{path}:{number}", text_fn)


def read_array_record(path: str, text_fn: TextFn) -> Iterator[Document | Malformed]:
  """Reads an ArrayRecord file whose records are UTF-8 JSON objects or text.

  A record starting with "{" is parsed as JSON and passed to `text_fn`; any
  other record is the document text itself.
  """
  reader = array_record_module.ArrayRecordReader(path)
  try:
    for number in range(1, reader.num_records() + 1):
      where = f"{path}:{number}"
      raw = reader.read([number - 1])[0]
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        yield Malformed(where, f"invalid UTF-8 ({e.reason} at byte {e.start})")
        continue
      if not text.lstrip().startswith("{"):
        yield _check_text(text, where)
        continue
      try:
        record = json.loads(text)
      except json.JSONDecodeError as e:
        yield Malformed(where, f"bad JSON ({e.msg})")
        continue
      yield _from_record(record, where, text_fn)
  finally:
    reader.close()


def read_files(files: list[str], text_fn: TextFn) -> Iterator[Document | Malformed]:
  """Reads every file with the reader its extension calls for.

  Args:
    files: paths ending in .jsonl/.json(.gz/.zst), .parquet or .array_record.
    text_fn: maps a parsed record to its text.

  Yields:
    Document or Malformed in file order.
  """
  for path in files:
    name = path.rsplit("/", 1)[-1]
    stem = name.removesuffix(".gz").removesuffix(".zst")
    if stem.endswith((".jsonl", ".json", ".ndjson")):
      yield from read_jsonl(path, text_fn)
    elif name.endswith(".parquet"):
      yield from read_parquet(path, text_fn)
    elif ".array_record" in name:
      yield from read_array_record(path, text_fn)
    else:
      raise ValueError(f"No reader for {path!r}: expected .jsonl[.gz|.zst], "
                       ".parquet or .array_record.")
