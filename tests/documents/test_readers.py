"""Readers: JSONL (plain/gz/zst), Parquet, ArrayRecord; malformed records."""
import gzip
import json

import pytest

from midtrain_jax.documents import readers as sources

_TEXT = sources.field_text("text")


def _lines():
  return [json.dumps({"text": "first doc"}).encode(), b"{not json",
          json.dumps({"body": "no text field"}).encode(), b"",
          json.dumps({"text": "  "}).encode(), b'{"text": "bad \xff byte"}',
          json.dumps({"text": 7}).encode(), json.dumps({"text": "last doc"}).encode()]


def _check(items, path):
  docs = [i for i in items if isinstance(i, sources.Document)]
  bad = [i for i in items if isinstance(i, sources.Malformed)]
  assert [d.text for d in docs] == ["first doc", "last doc"]
  assert [d.where for d in docs] == [f"{path}:1", f"{path}:8"]
  assert [(b.where.rsplit(":", 1)[1], b.reason.split(" (")[0]) for b in bad] == [
      ("2", "bad JSON"), ("3", "missing text field"), ("5", "empty document"),
      ("6", "invalid UTF-8"), ("7", "missing text field")]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_reader_reports_each_malformed_line(tmp_path, suffix):
  import zstandard
  raw = b"\n".join(_lines()) + b"\n"
  if suffix.endswith(".gz"):
    raw = gzip.compress(raw)
  elif suffix.endswith(".zst"):
    raw = zstandard.ZstdCompressor().compress(raw)
  path = tmp_path / f"docs{suffix}"
  path.write_bytes(raw)
  _check(list(sources.read_files([str(path)], _TEXT)), str(path))


def test_parquet_reader(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq
  path = tmp_path / "docs.parquet"
  pq.write_table(pa.table({"text": ["a doc", "", "another"]}), path)
  items = list(sources.read_files([str(path)], _TEXT))
  assert [type(i).__name__ for i in items] == ["Document", "Malformed", "Document"]
  assert items[2].text == "another" and items[1].where == f"{path}:2"


def test_array_record_reader_takes_json_or_raw_text(tmp_path):
  from array_record.python import array_record_module
  path = tmp_path / "docs.array_record"
  writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
  for record in (b'{"text": "json doc"}', b"raw text doc", b"\xff\xfe", b'{"x": 1}'):
    writer.write(record)
  writer.close()
  items = list(sources.read_files([str(path)], _TEXT))
  assert [i.text for i in items if isinstance(i, sources.Document)] == [
      "json doc", "raw text doc"]
  assert [i.where for i in items if isinstance(i, sources.Malformed)] == [
      f"{path}:3", f"{path}:4"]


def test_expand_globs_and_names_missing_pattern(tmp_path):
  for name in ("b.jsonl", "a.jsonl", "c.txt"):
    (tmp_path / name).write_text("{}\n")
  assert sources.expand([f"{tmp_path}/*.jsonl"]) == [
      f"{tmp_path}/a.jsonl", f"{tmp_path}/b.jsonl"]
  with pytest.raises(FileNotFoundError, match="nothing_here"):
    sources.expand([f"{tmp_path}/nothing_here*.jsonl"])


def test_unknown_extension_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="No reader"):
    list(sources.read_files([str(tmp_path / "x.csv")], _TEXT))
