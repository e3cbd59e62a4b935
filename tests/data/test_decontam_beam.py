"""The Beam pipeline (DirectRunner) gives the same result as the local scan."""
import gzip
import json
import os

import pytest

beam = pytest.importorskip("apache_beam")

from midtrain_jax.data import benchmarks  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import decontam  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.data import demo_data  # pylint: disable=wrong-import-position


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
  common = [f"--input={path}", "--benchmarks=gsm8k,humaneval", f"--mode={mode}"]
  decontam.main(common + [f"--out={tmp_path}/local"])
  decontam.main(common + [f"--out={tmp_path}/beam", "--runner=beam"])

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
