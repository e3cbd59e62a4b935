"""Experiments end to end on a tiny budget: microanneal table (and re-run reuse),
integration anneal + soup, schedule-study runs, and every notebook executed
against these artifacts."""
import glob
import math
import os
import pathlib
import re

import pytest

from midtrain_jax.evals import suite
from midtrain_jax.train import checkpoint, loop
from midtrain_jax.workflows import (
  integration_anneal,
  microanneal_study,
  training,
  upcycling_comparison,
)
from tests import helpers
from tests.data import demo_data
from tests.helpers import small_config

pytestmark = pytest.mark.slow

TOKENS = 2 * 8 * 64  # Two steps of small_config's batch.
OPTIONS = suite.EvalOptions(bpb_items=2, max_batches=1)
# The bridging study's notebook runs on its own study (tests/workflows/test_bridging_study.py).
NOTEBOOKS = sorted(p for p in glob.glob(str(helpers.REPO_ROOT / "notebooks" / "*.ipynb"))
                   if not p.endswith("bridging_study.ipynb"))
assert len(NOTEBOOKS) == 4, NOTEBOOKS  # An empty list would skip the notebook tests silently.


def _quiet(_):
  pass


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
  """A base run, a microanneal, a soup and schedule/timing runs in one folder."""
  root = tmp_path_factory.mktemp("artifacts")
  base = small_config(6, schedule="wsd")
  base.optim.update(warmup_steps=1, decay_steps=2)
  base.eval.update(every_steps=3, batches=1, downstream=("arc_easy:rc",), downstream_items=4)
  training.run(base, str(root / "base"))
  stable = str(root / "base" / "checkpoints" / "3")
  rows = microanneal_study.run(stable, ["math_synthetic", "code_python_stdlib"], TOKENS,
                               str(root / "microanneal"), options=OPTIONS, log=_quiet)
  soup = integration_anneal.run(stable, "dolmino_demo", TOKENS, 2, str(root / "integration"),
                                options=OPTIONS, log=_quiet)
  for name, schedule, final in (("wsd", "wsd", 0.0), ("cosine_tenth", "cosine", 0.1)):
    c = small_config(4, schedule=schedule)
    c.optim.update(warmup_steps=1, decay_steps=0, final_lr_fraction=final)
    c.eval.batches = 1
    training.run(c, str(root / "schedules" / name))
  web = {"web_c4": 0.3, "web_wikipedia": 0.3, "web_openwebtext": 0.4}
  with_math = {**{k: v / 2 for k, v in web.items()}, "math_synthetic": 0.5}
  for name, stages in (("start0_w0.5", ((0, with_math),)),
                       ("start2_w0.5", ((0, web), (2, with_math)))):
    c = small_config(4, weight_stages=stages)
    c.eval.batches = 1
    training.run(c, str(root / "timing_weight" / name))
  study = upcycling_comparison.run(stable, str(root / "upcycle_study"), tokens=TOKENS, experts=4,
                                   top_k=2, drop_ratio=0.5, max_batches=1, log=_quiet)
  return {"root": root, "rows": rows, "soup": soup, "stable": stable, "study": study}


def test_microanneal_table(artifacts):
  rows = {r["run"]: r for r in artifacts["rows"]}
  assert list(rows) == ["baseline", "math_synthetic", "code_python_stdlib"]
  assert all(v == 0.0 for k, v in rows["baseline"].items()
             if k.startswith("delta/") and k != "delta/target")
  assert rows["math_synthetic"]["target"] == "math"
  assert rows["code_python_stdlib"]["target"] == "code"
  for row in rows.values():
    assert math.isfinite(row["forgetting"])
  # Two steps on half math move math BPB more than web-only training does.
  assert rows["math_synthetic"]["delta/math"] < 0
  text = (artifacts["root"] / "microanneal" / "microanneal.txt").read_text()
  assert "delta/target" in text and "code_python_stdlib" in text
  # The base's eval.downstream task, scored on its items in every run, beside BPB.
  assert all(re.fullmatch(r"[01]\.\d{3} ± \d\.\d{3}( AT CHANCE)?", row["acc/arc_easy:rc"])
             for row in rows.values())
  assert "acc/arc_easy:rc" in text and "AT CHANCE = " in text
  # Two steps evaluated at each step: two checkpoints per run, too few for a noise.
  snr = text[text.index("Signal and noise of every metric"):].splitlines()
  assert snr[1].split()[:4] == ["metric", "baseline", "math_synthetic", "code_python_stdlib"]
  web = next(line for line in snr if line.startswith("in_training/bpb/web "))
  assert " 2/2/2 " in web and "unknown" in web and "(noise unknown)" in web


def test_microanneal_rerun_reuses_finished_runs(artifacts, monkeypatch):
  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(loop, "run", no_training)
  rows = microanneal_study.run(artifacts["stable"], ["math_synthetic", "code_python_stdlib"],
                               TOKENS, str(artifacts["root"] / "microanneal"), options=OPTIONS,
                               log=_quiet)
  assert rows == artifacts["rows"]


def test_microanneal_rejects_unknown_candidate(artifacts):
  with pytest.raises(ValueError, match="No mixture 'microanneal/web_c4'"):
    microanneal_study.run(artifacts["stable"], ["web_c4"], TOKENS, str(artifacts["root"] / "x"))


def test_soup_is_evaluated(artifacts):
  results = artifacts["soup"]["results"]
  assert {"seed_0", "seed_1", "soup", "mean_of_runs"} <= set(results)
  soup, runs = results["soup"], [results["seed_0"], results["seed_1"]]
  assert soup["step"] == 0 and "soup" in soup["checkpoint"]
  for cap, value in soup["capability_bpb"].items():
    assert math.isfinite(value)
    # The two seeds saw different data, so they differ; the soup is its own model.
    assert runs[0]["capability_bpb"][cap] != runs[1]["capability_bpb"][cap]
  assert math.isfinite(soup["forgetting"]["delta_web_bpb"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs(path, artifacts, monkeypatch):
  import nbclient
  import nbformat
  monkeypatch.setenv("MIDTRAIN_JAX_ARTIFACTS", str(artifacts["root"]))
  monkeypatch.setenv("MIDTRAIN_JAX_DATA_DIR", demo_data.prepared_dir("dolmino_demo"))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  notebook = nbformat.read(path, as_version=4)
  root = str(pathlib.Path(path).parents[1])
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": root}})
  client.execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any(o.output_type in ("display_data", "execute_result") for o in outputs)


def test_evaluate_cli_writes_json_and_tensorboard(artifacts):
  import json
  import subprocess
  import sys
  workdir = artifacts["root"] / "microanneal" / "baseline"
  cmd = [sys.executable, "-m", "midtrain_jax.evaluate", f"--workdir={workdir}",
         "--suite=heldout,gsm8k,humaneval", "--gen_items=2", "--max_batches=1",
         f"--base={artifacts['stable']}"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       cwd=helpers.REPO_ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "forgetting: web BPB" in out.stdout
  results = json.loads((workdir / "eval" / "step_2.json").read_text())
  assert results["generative"]["gsm8k"]["items"] == 2
  assert 0.0 <= results["generative"]["humaneval"]["score"] <= 1.0
  assert sum(results["generative"]["humaneval"]["statuses"].values()) == 2
  assert math.isfinite(results["forgetting"]["delta_web_bpb"])
  assert glob.glob(str(workdir / "eval" / "events.out.tfevents*"))


def test_upcycle_study_compares_dense_and_both_upcyclings(artifacts):
  rows = {r["run"]: r for r in artifacts["study"]}
  assert list(rows) == ["dense", "upcycle", "drop_0.5"]
  for name, row in rows.items():
    assert 0 < row["mean"] < 20, (name, row)
    if name == "dense":
      assert math.isnan(row["load_max"])
    else:
      assert 1.0 <= row["load_max"] <= 4.0 and row["load_balance"] >= 1.0 - 1e-6
  root = artifacts["root"] / "upcycle_study"
  moe_config = checkpoint.load_config(str(root / "upcycle"))
  assert (moe_config.model.moe.experts, moe_config.model.moe.top_k) == (4, 2)
  assert (root / "study.txt").read_text().startswith("Upcycling study")
