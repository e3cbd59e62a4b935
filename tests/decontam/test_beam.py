"""The Beam pipeline (DirectRunner) gives the same result as the local scan."""
import gzip
import json
import os

import pytest

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.decontam import batch, decontaminator
from midtrain_jax.documents import readers as sources
from tests.data import demo_data


def _write_input(path):
  paragraphs = demo_data.package_paragraphs()
  items = benchmarks.load_items("gsm8k")[20:23] + benchmarks.load_items(
      "humaneval")[30:32]
  with gzip.open(path, "wt", encoding="utf-8") as f:
    for i, text in enumerate(paragraphs[:60]):
      if i % 12 == 5:
        item = items[i // 12]
        text = f"{text}\n{item.question}\n{item.answer}\n"
      f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["drop", "cut"])
def test_beam_matches_local_run(tmp_path, mode):
  path = str(tmp_path / "web.jsonl.gz")
  _write_input(path)
  beam = pytest.importorskip("midtrain_jax.decontam.beam")  # Needs the beam extra.
  names = ("gsm8k", "humaneval")
  deco = decontaminator.Decontaminator.from_benchmarks(names)
  local = batch.run_local(deco, [("web", sources.keyed_records(path))], f"{tmp_path}/local",
                          mode, "text", 100_000)
  batch.write_summary(local, f"{tmp_path}/local")
  batch.write_summary(beam.run([path], f"{tmp_path}/beam", names, mode=mode),
                      f"{tmp_path}/beam")

  def read(out):
    report = sorted(open(f"{out}/report.jsonl", encoding="utf-8").readlines())
    docs = []
    for name in sorted(os.listdir(f"{out}/web")):
      with gzip.open(f"{out}/web/{name}", "rt", encoding="utf-8") as f:
        docs += [json.loads(line) for line in f]
    summary = json.load(open(f"{out}/summary.json", encoding="utf-8"))
    return report, sorted(docs, key=lambda d: d["id"]), summary

  local, on_beam = read(f"{tmp_path}/local"), read(f"{tmp_path}/beam")
  assert len(local[0]) == 5
  assert on_beam == local
