"""OLMES accuracy inside training (`eval.downstream`): the in-loop figures are the
offline evaluation's, on a 2x2x2 mesh as on one device."""
import glob

import pytest
from tensorboard.backend.event_processing import event_accumulator

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.evals import downstream, olmes, scoring, tables
from midtrain_jax.workflows import training
from tests.helpers import small_config

TASK, ITEMS = "arc_easy:rc", 6


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """Two steps on a 2x2x2 mesh, downstream-evaluated after each (no held-out)."""
  workdir = str(tmp_path_factory.mktemp("downstream"))
  c = small_config(2, mesh=(2, 2, 2))
  c.eval.update(every_steps=1, batches=0, downstream=(TASK,), downstream_items=ITEMS)
  return training.run(c, workdir)


@pytest.mark.slow
def test_in_loop_figures_equal_the_offline_evaluation_of_the_checkpoint(run):
  """The step-2 in-loop scores (params sharded over 8 devices) are those of
  `olmes.evaluate_task` on the saved step-2 checkpoint on one device (what
  `evaluate --suite=arc_easy:rc --items=6` runs): the same predictions and metrics,
  every choice's loglikelihood within 1e-5."""
  in_loop = run.evals[2]["downstream"]["tasks"][TASK]
  model = scoring.load_model(run.workdir)
  assert model.step == 2
  task = olmes_tasks.sample(olmes_tasks.load_task(TASK), ITEMS)
  offline = olmes.evaluate_task(model, olmes.model_tokenizer(model), task, log=None)
  assert sorted(in_loop["logprobs"]) == sorted(offline["logprobs"]) and len(offline["logprobs"]) \
      == ITEMS
  for doc_id, expected in offline["logprobs"].items():
    assert in_loop["logprobs"][doc_id] == pytest.approx(expected, abs=1e-5, rel=1e-6), doc_id
  assert in_loop["predictions"] == offline["predictions"]
  assert in_loop["per_item"] == offline["per_item"]
  assert in_loop["metrics"] == offline["metrics"]
  assert in_loop["score"] == offline["score"]
  assert in_loop["bpb"] == pytest.approx(offline["bpb"], rel=1e-6)
  assert in_loop["chance"] == olmes.chance(task) == 0.25  # ARC-Easy: 4 choices here.


@pytest.mark.slow
def test_every_evaluation_scores_the_same_items_and_is_logged(run):
  first, last = (run.evals[s]["downstream"] for s in (1, 2))
  assert sorted(first["tasks"][TASK]["per_item"]) == sorted(last["tasks"][TASK]["per_item"])
  assert first["seconds"] > 0 and last["seconds"] > 0
  # The params moved between the steps, so the scores did.
  assert first["tasks"][TASK]["logprobs"] != last["tasks"][TASK]["logprobs"]
  events = event_accumulator.EventAccumulator(glob.glob(f"{run.workdir}/events.out.*")[0])
  events.Reload()
  tags = set(events.Tags()["tensors"])
  metrics = set(last["tasks"][TASK]["metrics"])
  assert metrics == set(olmes_tasks.METRICS)  # ARC-Easy's files carry the PMI requests.
  for name in (*metrics, "primary", "ci95", "bpb"):
    assert f"downstream/{TASK}/{name}" in tags
  assert "downstream/seconds" in tags
  assert [e.step for e in events.Tensors(f"downstream/{TASK}/primary")] == [1, 2]


def test_the_progress_line_marks_a_model_at_chance():
  result = {"tasks": {TASK: dict(metric="acc_per_char", score=0.27, ci95=0.1, chance=0.25,
                                 at_chance=True)}, "seconds": 1.25}
  assert downstream.summary(result) == \
      f"{TASK} acc_per_char 0.270 (chance 0.25 AT CHANCE) | downstream 1.2s"
  assert olmes.at_chance(result["tasks"][TASK], 0.25)
  assert not olmes.at_chance(dict(score=0.6, ci95=0.1), 0.25)


def test_an_unknown_task_is_named_with_the_known_ones():
  c = small_config(1)
  c.eval.downstream = ("arc_easy:rc", "arc_eesy:rc")
  with pytest.raises(ValueError, match=r"config.eval.downstream: 'arc_eesy:rc' is not an "
                     r"OLMES task .*Known tasks: .*arc_easy:rc"):
    config_lib.validate(c)


def _result(score, per_item, at_chance):
  return dict(metric="acc_per_char", score=score, ci95=0.1, n_items=len(per_item), chance=0.25,
              at_chance=at_chance, per_item=per_item)


def test_reports_show_accuracy_beside_bpb_and_say_when_at_chance():
  named = {"base": {"capability_bpb": {"web": 2.0},
                    "downstream": {TASK: _result(0.25, {"1": 0, "2": 1, "3": 0, "4": 0}, True)}},
           "anneal": {"capability_bpb": {"web": 1.9},
                      "downstream": {TASK: _result(0.75, {"1": 1, "2": 1, "3": 1, "4": 0},
                                                   False)}}}
  table = tables.downstream_table(named).splitlines()
  assert table[1].split()[:4] == [TASK, "acc_per_char", "4", "0.250"]
  assert "0.250 ± 0.100 AT CHANCE" in table[1] and "0.750 ± 0.100" in table[1]
  assert table[1].count("AT CHANCE") == 1 and table[-1] == tables.AT_CHANCE_LEGEND
  rows = {r["run"]: r for r in tables.comparison_rows(named, baseline="base")}
  assert rows["anneal"]["acc/" + TASK] == "0.750 ± 0.100"
  assert rows["anneal"]["delta_acc/" + TASK] == pytest.approx(0.5)  # Paired over 4 items.
  assert rows["anneal"]["delta/web"] == pytest.approx(-0.1)
  assert f"{TASK} acc_per_char" in tables.format_comparison(named, baseline="base")
