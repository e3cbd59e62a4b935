"""The dedup command: output files and their format, bad input, idempotence and resume."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from midtrain_jax.dedup import batch, deduplicator, params
from tests.dedup import planted


def _write(path, records, bad_lines=None):
  """Writes a .jsonl.gz file; `bad_lines` {line number: raw bytes} replace records there."""
  lines = [json.dumps(r).encode() for r in records]
  for number, raw in sorted((bad_lines or {}).items()):
    lines.insert(number - 1, raw)
  with gzip.open(path, "wb") as f:
    f.write(b"\n".join(lines) + b"\n")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """web: 40 documents, 4 of them copies; math: 5 documents, one a copy of a web one."""
  root = tmp_path_factory.mktemp("in")
  texts = list(planted.prose_documents()[:40])
  web = [{"id": f"w{i}", "text": t, "source": "web"} for i, t in enumerate(texts[:36])]
  web += [{"id": f"w{36 + i}", "text": texts[i].upper()} for i in range(3)]  # Exact copies.
  web.append({"text": texts[5] + " Read more."})  # A near copy without an id.
  math = [{"id": f"m{i}", "text": texts[36 + i]} for i in range(4)] + [{"id": "m4",
                                                                        "text": texts[7]}]
  _write(root / "web.jsonl.gz", web, {3: b"{broken json", 10: b'{"title": "no text"}',
                                      20: b'{"text": "\xff\xfe bad bytes"}'})
  _write(root / "math.jsonl.gz", math)
  return root


def _command(inputs, out, *flags):
  return subprocess.run(
      [sys.executable, "-m", "midtrain_jax.dedup",
       f"--input={inputs / 'web.jsonl.gz'},{inputs / 'math.jsonl.gz'}", f"--out={out}", *flags],
      capture_output=True, text=True, check=True, timeout=120)


def _read_out(out):
  kept = {}
  for task in ("web", "math"):
    kept[task] = []
    for name in sorted(os.listdir(out / task)):
      with gzip.open(out / task / name, "rt", encoding="utf-8") as f:
        kept[task] += [json.loads(line) for line in f]
  lines = lambda name: [json.loads(l) for l in open(out / name, encoding="utf-8")]  # noqa: E731
  return kept, lines("duplicates.jsonl"), lines("malformed.jsonl"), json.load(
      open(out / "summary.json", encoding="utf-8"))


def test_command_writes_kept_documents_duplicates_and_summary(inputs, tmp_path):
  result = _command(inputs, tmp_path / "out", "--priority=math")
  kept, duplicates, malformed, summary = _read_out(tmp_path / "out")
  by_id = {d["doc_id"]: d for d in duplicates}
  assert {d["doc_id"] for d in duplicates} == {"w36", "w37", "w38", "web:43", "w7"}
  assert by_id["w36"] == {"doc_id": "w36", "duplicate_of": "w0", "level": "exact",
                          "similarity": 1.0, "task": "web", "duplicate_of_task": "web",
                          "reference": False}
  assert by_id["web:43"]["level"] == "near" and by_id["web:43"]["duplicate_of"] == "w5"
  # math has priority: its copy of w7 is kept and the web one removed.
  assert by_id["w7"]["duplicate_of"] == "m4" and by_id["w7"]["duplicate_of_task"] == "math"
  assert len(kept["math"]) == 5 and len(kept["web"]) == 40 - 5
  assert kept["web"][0] == {"id": "w0", "text": planted.prose_documents()[0], "source": "web"}
  where = [m["where"].rsplit("/", 1)[1] for m in malformed]
  assert where == ["web.jsonl.gz:3", "web.jsonl.gz:10", "web.jsonl.gz:20"]
  assert [m["reason"].split(" (")[0] for m in malformed] == [
      "bad JSON", "missing text field 'text'", "invalid UTF-8"]
  web = summary["counts"]["web"]
  assert web["docs"] == 40 and web["malformed"] == 3 and web["duplicates/exact"] == 4
  assert web["duplicates/near"] == 1 and web["cross_task"] == 1
  assert "web   *      40" in result.stdout and "malformed" in result.stdout


def test_finished_run_is_detected_and_an_interrupted_one_redone(inputs, tmp_path, monkeypatch):
  files = [str(inputs / "web.jsonl.gz"), str(inputs / "math.jsonl.gz")]

  def run(out):
    dedup = deduplicator.Deduplicator(params.DedupParams())
    fingerprint = batch.run_fingerprint(files, {})
    if batch.is_finished(str(out), fingerprint):
      return False
    batch.start_run(str(out), ["web", "math"], fingerprint, {})
    batch.write_summary(batch.run_local(dedup, files, str(out), shard_docs=8), str(out))
    return True

  assert run(tmp_path / "full")
  assert not run(tmp_path / "full")  # Finished: nothing is redone.
  # Interrupted while writing web's third shard: no summary, no half shard left behind.
  calls = {"n": 0}
  original = batch.ShardWriter.write

  def failing_write(self, record):
    calls["n"] += 1
    if calls["n"] == 20:
      raise KeyboardInterrupt
    original(self, record)

  monkeypatch.setattr(batch.ShardWriter, "write", failing_write)
  with pytest.raises(KeyboardInterrupt):
    run(tmp_path / "again")
  monkeypatch.setattr(batch.ShardWriter, "write", original)
  assert not (tmp_path / "again" / "summary.json").exists()
  assert not any(".tmp" in name for name in os.listdir(tmp_path / "again" / "web"))
  assert run(tmp_path / "again")
  assert _read_out(tmp_path / "again") == _read_out(tmp_path / "full")


def test_malformed_reference_records_are_reported(tmp_path, capsys):
  path = tmp_path / "base.jsonl"
  path.write_text('{"text": "one"}\n{broken json\n{"title": "no text"}\n{"text": "two"}\n')
  assert [text for _, text in batch.reference_docs([str(path)])] == ["one", "two"]
  err = capsys.readouterr().err
  assert f"reference file {path}: 2 malformed records skipped, first at {path}:2" in err
  assert err.count("WARNING") == 1
