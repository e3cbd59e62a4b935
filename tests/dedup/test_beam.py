"""The Beam pipeline gives the same result as the local run, on one worker and on two processes."""
import gzip
import json
import os

import pytest

from midtrain_jax.dedup import batch, beam, deduplicator, params
from tests.dedup import planted
from tests.dedup.test_batch import _write
from tests.dedup.test_beam_components import _PACKAGE_ROOT


def _read(out, tasks):
  docs = {}
  for task in tasks:
    docs[task] = []
    for name in sorted(os.listdir(f"{out}/{task}")):
      with gzip.open(f"{out}/{task}/{name}", "rt", encoding="utf-8") as f:
        docs[task] += [json.loads(line) for line in f]
    docs[task].sort(key=json.dumps)
  # Beam writes the report lines in no particular order.
  lines = {name: sorted(open(f"{out}/{name}.jsonl", encoding="utf-8").read().splitlines())
           for name in ("duplicates", "reference_matches", "malformed")}
  return docs, lines, json.load(open(f"{out}/summary.json", encoding="utf-8"))


@pytest.mark.parametrize(("cross_task", "workers"), [(True, 2), (False, 1)])
def test_beam_matches_local_run(tmp_path, cross_task, workers, monkeypatch):
  texts = list(planted.prose_documents()[:80])
  web = [{"id": f"w{i}", "text": t} for i, t in enumerate(texts[:60])]
  web += [{"id": f"w{60 + i}", "text": texts[i] + " Share this."} for i in range(6)]
  math = [{"id": f"m{i}", "text": t} for i, t in enumerate(texts[60:])] + [
      {"text": texts[3].lower()}, {"text": texts[61]}]
  _write(tmp_path / "math.jsonl.gz", math, {4: b"{not json"})
  _write(tmp_path / "web.jsonl.gz", web)
  _write(tmp_path / "base.jsonl.gz", [{"text": texts[10]}, {"text": texts[70]}])
  inputs = [str(tmp_path / "math.jsonl.gz"), str(tmp_path / "web.jsonl.gz")]
  settings = params.DedupParams(reference_mode="count")
  dedup = deduplicator.Deduplicator(settings)
  reference = batch.reference_prints(dedup, [str(tmp_path / "base.jsonl.gz")])
  local = batch.run_local(dedup, inputs, f"{tmp_path}/local", cross_task=cross_task,
                          reference=reference)
  batch.write_summary(local, f"{tmp_path}/local")
  args = ["--direct_num_workers=1"]
  if workers > 1:
    monkeypatch.setenv("PYTHONPATH", _PACKAGE_ROOT)  # Workers import this package.
    args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
  on_beam = beam.run(inputs, f"{tmp_path}/beam", settings,
                     references=[str(tmp_path / "base.jsonl.gz")], cross_task=cross_task,
                     runner="FnApiRunner", pipeline_args=args)
  batch.write_summary(on_beam, f"{tmp_path}/beam")
  expected = _read(f"{tmp_path}/local", ["math", "web"])
  assert len(expected[1]["duplicates"]) == (8 if cross_task else 7)
  assert len(expected[1]["reference_matches"]) == 2 and len(expected[1]["malformed"]) == 1
  assert _read(f"{tmp_path}/beam", ["math", "web"]) == expected
