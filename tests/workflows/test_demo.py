"""The embedded demo (configs/demo.py) end to end on a tiny budget."""
import json

import pytest

from configs import demo as demo_config
from midtrain_jax.workflows import demo

pytestmark = pytest.mark.slow


def test_demo_prepares_trains_anneals_and_reports(tmp_path, capsys):
  config = demo_config.get_config("scale=0.04")  # Base 10 steps, anneals 2 steps.
  config.unlock()
  config.data.data_dir = str(tmp_path / "data")
  config.demo.bpb_items = 2
  config.eval.batches = 1
  config.demo.eval_batches = 1
  out = demo.run(config, str(tmp_path / "runs"))
  printed = capsys.readouterr().out
  for text in ("1/4 preparing", "2/4 base model", "3/4 anneals", "4/4 evaluation",
               "Held-out bits per byte by capability", "Forgetting", "decontamination against",
               "Total wall time"):
    assert text in printed
  results = out["results"]
  assert set(results) == {"base", "anneal_dolmino", "anneal_web"}
  caps = set(results["base"]["capability_bpb"])
  assert caps == {"web", "math", "code", "qa", "instruction", "thinking"}
  # The anneals moved away from the base they branched off.
  for name in ("anneal_dolmino", "anneal_web"):
    assert results[name]["capability_bpb"] != results["base"]["capability_bpb"]
  assert {r["task"] for r in out["decontamination"]} >= {"math_synthetic", "web_c4"}
  assert all("gsm8k" in r["benchmarks"] for r in out["decontamination"])
  saved = json.loads((tmp_path / "runs" / "report.json").read_text())
  assert saved["results"]["base"]["step"] == 8  # The base's last stable-phase step.
  # A second run reuses everything it finished.
  demo.run(config, str(tmp_path / "runs"))
  assert printed.count("training") == 3 and "reusing it" in capsys.readouterr().out
