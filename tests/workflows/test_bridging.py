"""The bridging study end to end on a tiny budget: its table is the runs' own results,
a re-run trains nothing, a changed study is refused, and its notebook runs."""
import json
import math
import os
import pathlib

import pytest

from midtrain_jax.evals import heldout
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.train import loop
from midtrain_jax.workflows import bridging as bridging_study
from midtrain_jax.workflows import study_runs, training
from tests import helpers
from tests.helpers import small_config

pytestmark = pytest.mark.slow

TARGET = "sft_math_synthetic"
GENERAL = ["web_c4", "web_wikipedia", "web_openwebtext"]
SPECIALISED = ["math_synthetic"]
OPTIONS = bridging_study.StudyOptions(tokens=2 * 8 * 64, mix_weight=0.5, timings=(0.0, 0.5),
                                      weights=(0.5,), probe_steps=2, probe_benchmark_items=0,
                                      max_batches=1)
PROXIMITY = proximity.ProximityOptions(steps=2, max_tokens=5_000, max_batches=1)


def _quiet(_):
  pass


def _study(base: str, workdir: str, options=OPTIONS) -> dict:
  return bridging_study.run(base, TARGET, GENERAL, SPECIALISED, workdir, options=options,
                            prox_options=PROXIMITY, log=_quiet)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  root = tmp_path_factory.mktemp("artifacts")
  training.run(small_config(4), str(root / "base"))
  base = str(root / "base" / "checkpoints" / "4")
  return root, base, _study(base, str(root / "bridging"))


def _read(path: pathlib.Path) -> dict:
  return json.loads(path.read_text())


def test_runs_have_equal_tokens_and_the_grid_reuses_the_midtraining_run(study):
  root, _, out = study
  assert set(out["runs"]) == {"base", "midtrain", "continued", "general", "start0.5_w0.5"}
  steps = set()
  for name in ("midtrain", "continued", "general", "start0.5_w0.5"):
    c = _read(root / "bridging" / name / "config.json")
    steps.add((c["train"]["steps"], c["data"]["batch_size"], c["data"]["seq_len"]))
  assert steps == {(2, 8, 64)}
  assert [(c["start"], c["run"]) for c in out["grid"]] == [(0.0, "midtrain"),
                                                           (0.5, "start0.5_w0.5")]
  late = _read(root / "bridging" / "start0.5_w0.5" / "config.json")["data"]["weight_stages"]
  assert [stage[0] for stage in late] == [0, 1]
  assert late[1][1]["math_synthetic"] == pytest.approx(0.5)


def test_table_matches_the_runs_own_results_files(study):
  root, _, out = study
  workdir = root / "bridging"
  assert _read(workdir / bridging_study.RESULTS)["rows"] == json.loads(json.dumps(out["rows"]))

  def general_bpb(name):  # Straight from the run's own results file.
    scored = _read(workdir / name / study_runs.RESULT)["heldout"]
    nats = sum(scored[t]["loss"] * scored[t]["tokens"] for t in GENERAL)
    return nats / heldout.LN2 / sum(scored[t]["bytes"] for t in GENERAL)

  rows = {row["run"]: row for row in out["rows"]}
  assert list(rows) == ["base", "midtrain", "continued", "general"]
  for name in ("midtrain", "continued", "general"):
    sft = _read(workdir / "probes" / TARGET / name / "sft_results.json")
    assert rows[name]["target_bpb"] == sft["heldout"][TARGET]["bpb"]
    assert math.isfinite(rows[name]["forgetting"])
    before = _read(workdir / name / study_runs.RESULT)["target_before_probe"]["bpb"]
    assert rows[name]["before_probe"] == before
  base = out["runs"]["base"]["heldout"]
  base_bpb = (sum(base[t]["loss"] * base[t]["tokens"] for t in GENERAL) / heldout.LN2
              / sum(base[t]["bytes"] for t in GENERAL))
  for name in ("midtrain", "continued", "general"):
    assert rows[name]["forgetting"] == pytest.approx(general_bpb(name) - base_bpb, abs=1e-12)
  prox = _read(workdir / "proximity" / "proximity.json")
  assert rows["continued"]["adv/js_unigram"] == prox["sources"]["math_synthetic"][
      "advantage/js_unigram"]
  assert rows["general"]["adv/loss_gap"] == 0.0


def test_rerun_trains_nothing_and_gives_the_same_table(study, monkeypatch):
  root, base, out = study

  def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(loop, "run", no_training)
  again = _study(base, str(root / "bridging"))
  assert again["rows"] == out["rows"] and again["grid"] == out["grid"]


def test_a_changed_study_is_refused(study):
  root, base, _ = study
  changed = bridging_study.StudyOptions(**{**OPTIONS.__dict__, "mix_weight": 0.25})
  with pytest.raises(study_runs.RunMismatchError, match="data.weight_stages"):
    _study(base, str(root / "bridging"), changed)


def test_notebook_runs(study, monkeypatch):
  import nbclient
  import nbformat
  root, _, _ = study
  monkeypatch.setenv("MIDTRAIN_JAX_ARTIFACTS", str(root))
  monkeypatch.setenv("MPLBACKEND", "Agg")
  path = helpers.REPO_ROOT / "notebooks" / "bridging_study.ipynb"
  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                   resources={"metadata": {"path": str(helpers.REPO_ROOT)}})
  client.execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  assert any(o.output_type == "display_data" for o in outputs)
  assert os.path.exists(root / "bridging" / bridging_study.RESULTS)
