"""A run's metrics per evaluated checkpoint (evals/history.py) and the SNR comparison
of `evaluate --suite=none --compare`."""
import json
import subprocess
import sys

import pytest
from clu import metric_writers

from midtrain_jax import files
from midtrain_jax.evals import history, suite
from tests.helpers import REPO_ROOT


def _results(step: int, web: float, mmlu: float, items=("m1", "m2")) -> dict:
  """A saved evaluation with one held-out task and one benchmark."""
  return {"step": step, "checkpoint": f"/runs/x/checkpoints/{step}", "eval_mixture": "mix",
          "heldout": {"web_c4": {"bpb": web, "bytes": 100.0, "capability": "web"}},
          "capability_bpb": {"web": web},
          "forgetting": {"delta_web_bpb": 0.1},
          "benchmark_bpb": {"mmlu": {"bpb": mmlu, "ci95": 0.2, "n_items": len(items),
                                     "per_item": {i: [1.0, 1.0] for i in items}}}}


def _run(path, in_training: dict[int, float], saved: dict[int, dict]) -> str:
  """A run folder: in-training held-out BPB in its events, evaluations under eval/."""
  path.mkdir()
  writer = metric_writers.SummaryWriter(str(path))
  for step, value in in_training.items():
    writer.write_scalars(step, {"loss": 3.0, "eval/bpb/web": value,
                                "eval/heldout_bpb/web_c4": value})
  writer.close()
  (path / "eval").mkdir()
  for step, results in saved.items():
    files.write_json(suite.results_path(str(path), step), results)
  return str(path)


def test_history_reads_in_training_events_and_comparable_saved_evaluations(tmp_path):
  run = _run(tmp_path / "a", {10: 2.0, 20: 1.9, 30: 1.8},
             {20: _results(20, 2.1, 3.0, items=("m9",)), 30: _results(30, 2.05, 2.9)})
  h = history.run_history(run)
  assert h["in_training/bpb/web"] == pytest.approx({10: 2.0, 20: 1.9, 30: 1.8})
  assert h["eval/bpb/web"] == {20: 2.1, 30: 2.05}  # The same documents at both steps.
  # Step 20 scored other MMLU items than the latest: not part of its series.
  assert h["eval/benchmark_bpb/mmlu"] == {30: 2.9}
  # Per-task held-out BPB, intervals, forgetting and training scalars are not compared.
  assert set(h) == {"in_training/bpb/web", "eval/bpb/web", "eval/benchmark_bpb/mmlu"}
  # OLMES results saved beside them join the history under olmes/.
  files.write_json(tmp_path / "a" / "eval" / "olmes_step_30.json",
                   {"step": 30, "tasks": {"arc_easy:rc": {"metrics": {"acc_raw": 0.4},
                                                          "bpb": 1.5, "per_item": {"d": 1}}}})
  h = history.run_history(run)
  assert h["olmes/arc_easy:rc/acc_raw"] == {30: 0.4} and h["olmes/arc_easy:rc/bpb"] == {30: 1.5}
  assert history.run_names([run, str(tmp_path / "b")]) == {"a": run, "b": str(tmp_path / "b")}
  with pytest.raises(FileNotFoundError, match="not a run directory"):
    history.run_history(str(tmp_path / "missing"))


@pytest.mark.slow
def test_evaluate_compare_prints_the_snr_table(tmp_path):
  steps = (20, 30, 40, 50, 60)
  a = _run(tmp_path / "anneal_a", dict(zip(steps, (2.30, 2.21, 2.20, 2.19, 2.20))),
           {60: _results(60, 2.2, 3.00)})
  b = _run(tmp_path / "anneal_b", dict(zip(steps, (2.60, 2.52, 2.50, 2.51, 2.50))),
           {60: _results(60, 2.5, 3.01)})
  out = subprocess.run([sys.executable, "-m", "midtrain_jax.evaluate", f"--from={a}",
                        "--suite=none", f"--compare={b}"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.splitlines()
  table = lines[lines.index(next(x for x in lines if x.startswith("signal and noise"))) + 1:]
  assert table[0].split()[:3] == ["metric", "anneal_a", "anneal_b"]
  # Only the in-training series has 3+ checkpoints: the one metric with an SNR comes first.
  assert table[1].startswith("in_training/bpb/web") and "anneal_a by 0.3" in table[1]
  assert "WITHIN NOISE" not in table[1]
  assert table[2].startswith("eval/bpb/web") and "(noise unknown)" in table[2]
  assert table[3].startswith("eval/benchmark_bpb/mmlu")
  # Nothing was evaluated or written.
  assert json.loads((tmp_path / "anneal_a" / "eval" / "step_60.json").read_text())["step"] == 60
  bad = subprocess.run([sys.executable, "-m", "midtrain_jax.evaluate", f"--from={a}",
                        "--suite=none", f"--compare={tmp_path / 'nothing'}"], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "no saved evaluation" in bad.stderr
