"""The embedded demo (configs/demo.py) end to end on a tiny budget."""
import json
import re

import pytest

from configs import demo as demo_config
from midtrain_jax.workflows import analysis, demo

pytestmark = pytest.mark.slow


def test_demo_prepares_trains_anneals_and_reports(tmp_path, capsys):
  config = demo_config.get_config("scale=0.04")  # Base 10 steps, anneals 2 steps.
  config.unlock()
  config.data.data_dir = str(tmp_path / "data")
  config.demo.bpb_items = 2
  config.eval.batches = 1
  config.demo.eval_batches = 1
  config.eval.downstream_items = 8  # Same items for every run whatever the count.
  out = demo.run(config, str(tmp_path / "runs"))
  printed = capsys.readouterr().out
  for text in ("1/4 preparing", "2/4 base model", "3/4 anneals", "4/4 evaluation",
               "Held-out bits per byte by capability", "Forgetting", "decontamination against",
               "deduplication (exact, near) across tasks:",
               "Benchmark BPB of gold answers", " ± ",
               "Downstream accuracy (OLMES multiple choice", "AT CHANCE = the 95% interval",
               "paired bootstrap over the items", "in / out of the training data",
               "Signal and noise of the anneals' metrics", "margin < 2 x noise",
               "Total wall time"):
    assert text in printed
  assert re.search(r"\nmmlu +57 +57 ", printed)  # Items and subjects of the benchmark.
  results = out["results"]
  assert set(results) == {"base", "anneal_dolmino", "anneal_web"}
  caps = set(results["base"]["capability_bpb"])
  assert caps == {"web", "math", "code", "qa", "instruction", "thinking"}
  # The anneals moved away from the base they branched off.
  for name in ("anneal_dolmino", "anneal_web"):
    assert results[name]["capability_bpb"] != results["base"]["capability_bpb"]
  # Every run is scored on the same stratified sample: MMLU gets one item per subject.
  for name in ("gsm8k", "mmlu", "math"):
    runs = [results[run]["benchmark_bpb"][name] for run in results]
    assert len({tuple(r["per_item"]) for r in runs}) == 1
    r = runs[0]
    assert r["n_items"] == len(r["per_item"]) and r["ci95"] > 0
    assert (r["n_items"], r["subsets"]) == {"gsm8k": (2, 1), "mmlu": (57, 57),
                                           "math": (7, 7)}[name]
    # The prepared data records the items it found, so the split is known.
    assert r["contamination"]["status"] == "recorded"
    assert r["clean"]["n_items"] + r["contaminated"]["n_items"] == r["n_items"]
  # Accuracy beside BPB: the same arc_easy:rc items for every run, scored in the
  # anneals' loops at their end too (the progress line with its cost).
  accuracy = [results[run]["downstream"]["arc_easy:rc"] for run in results]
  assert len({tuple(r["per_item"]) for r in accuracy}) == 1 and accuracy[0]["n_items"] == 8
  assert re.search(r"eval step 2 \| .*arc_easy:rc acc_per_char [0-9.]+ \(chance 0\.25"
                   r".*\| downstream [0-9.]+s", printed)
  assert {r["task"] for r in out["decontamination"]} >= {"math_synthetic", "web_c4"}
  assert all("gsm8k" in r["benchmarks"] for r in out["decontamination"])
  removed = {r["task"]: r["removed"] for r in out["deduplication"]}
  assert len(removed) == 8 and removed["math_synthetic"] > 0
  # Quality-aware upsampling: the report sets configured against sampled bucket shares.
  assert "Quality-aware upsampling on dolmino_demo" in printed
  qau = out["qau"]
  assert qau["tokens"] == config.train.steps * config.data.batch_size * config.data.seq_len
  assert [b["factor"] for b in qau["buckets"][0]["buckets"]] == list(config.data.qau.factors)
  frame = analysis.benchmark_frame(str(tmp_path / "runs"))
  assert frame.loc[("anneal_web", "mmlu"), "n_items"] == 57
  assert (frame["contamination"] == "recorded").all()
  # The anneals evaluated at both of their 2 steps: too few checkpoints for a noise.
  snr = {row["metric"]: row for row in out["snr"]}
  assert snr["in_training/bpb/math"]["checkpoints"] == {"anneal_dolmino": 2, "anneal_web": 2}
  assert snr["in_training/bpb/math"]["noise"] is None and snr["eval/bpb/math"]["snr"] is None
  saved = json.loads((tmp_path / "runs" / "report.json").read_text())
  assert saved["results"]["base"]["step"] == 8  # The base's last stable-phase step.
  # A second run reuses everything it finished.
  demo.run(config, str(tmp_path / "runs"))
  assert printed.count(": training ") == 3 and "reusing it" in capsys.readouterr().out
