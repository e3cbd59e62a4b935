"""End-to-end training: resume == uninterrupted (across meshes), anneal from a base,
divergence handling, mismatched checkpoints, souping."""
import json
import math
import os

import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.train import checkpoint, loop, metrics
from midtrain_jax.train import step as ts
from tests.helpers import small_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  return loop.run(small_config(6), str(tmp_path_factory.mktemp("full")))


def _async(config):
  config.ckpt.async_save = True  # The default: saves finish in the background.
  return config


def test_resume_on_another_mesh_equals_uninterrupted(tmp_path, uninterrupted):
  first = loop.run(_async(small_config(3)), str(tmp_path))
  assert first.step == 3
  resumed = loop.run(_async(small_config(6, mesh=(2, 2, 2))), str(tmp_path))
  assert resumed.step == 6 and sorted(resumed.losses) == [4, 5, 6]
  for step in range(1, 7):
    got = (first.losses | resumed.losses)[step]
    assert math.isclose(got, uninterrupted.losses[step], rel_tol=2e-5), step
  assert uninterrupted.losses[6] < uninterrupted.losses[1]  # It learns.
  written = json.loads(open(os.path.join(tmp_path, "config.json")).read())
  assert written["mesh"]["tensor"] == 2 and written["train"]["steps"] == 6
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path))


def test_mfu_of_the_tiny_run_is_within_one(uninterrupted):
  config = small_config(6)
  cfg = config_lib.model_config(config.model)
  _, abstract, _ = ts.abstract_model(cfg)
  fpt = metrics.flops_per_token(cfg, metrics.param_count(abstract), config.data.seq_len)
  # The denominator the run measured before its data started, on XLA's GEMM (8 devices).
  peak = uninterrupted.peak
  assert peak.source == "measured fp32 xla" and "of the physical limit" in peak.check
  # The first log has no interval to time; every later one has a rate and an MFU.
  assert "mfu" not in uninterrupted.metrics[1]
  for step in range(2, 7):
    m = uninterrupted.metrics[step]
    assert 0 < m["mfu"] <= 1, (step, m)
    assert m["mfu"] == pytest.approx(m["tokens_per_s"] * fpt / peak.flops)


def test_anneal_from_base_checkpoint_lr(tmp_path, uninterrupted):
  base = small_config(6, schedule="wsd")
  base.optim.update(warmup_steps=1, decay_steps=4)
  loop.run(base, str(tmp_path / "base"))
  c = small_config(4, schedule="anneal")
  c.optim.anneal_start = "from_checkpoint"
  c.train.init_from = str(tmp_path / "base" / "checkpoints" / "3")
  c.ckpt.every_steps = 2
  result = loop.run(c, str(tmp_path / "anneal"))
  # Base WSD at step 3: decay started at step 2 over 4 steps -> 0.75 * peak.
  assert result.step == 4
  ckpt = checkpoint.Checkpointer(str(tmp_path / "anneal"))
  assert ckpt.config(4)["train"]["init_from"].endswith("3")
  assert math.isclose(checkpoint.base_lr(c.train.init_from), 0.75 * 3e-3, rel_tol=1e-5)
  # The LR each update applied (the optimiser's own schedule count, logged by
  # the step): linear from the base's 0.75 * peak towards 0 over the 4 steps.
  applied = [result.metrics[s]["lr"] for s in (1, 2, 3, 4)]
  np.testing.assert_allclose(applied, np.array([1, 0.75, 0.5, 0.25]) * 0.75 * 3e-3, rtol=1e-5)
  # An anneal branched off this anneal's step 2 starts where that one was.
  assert math.isclose(checkpoint.base_lr(str(tmp_path / "anneal" / "checkpoints" / "2")),
                      0.5 * 0.75 * 3e-3, rel_tol=1e-5)


def test_impossible_schedule_fails_before_any_data_work(tmp_path):
  bad = small_config(6, schedule="wsd")
  bad.optim.update(warmup_steps=5, decay_steps=2)
  with pytest.raises(ValueError, match=r"warmup \(5\) \+ decay \(2\) steps exceed "
                                       r"config.train.steps=6"):
    loop.run(bad, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
  loop.run(small_config(3), str(tmp_path))
  bad = small_config(9)
  bad.optim.lr = 1e30
  with pytest.raises(loop.TrainingDivergedError, match="diverged at step"):
    loop.run(bad, str(tmp_path))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 3
  params, _, _ = checkpoint.load_params(str(tmp_path))
  assert all(np.isfinite(p).all() for p in __import__("jax").tree.leaves(params))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # The LR itself.
def test_non_finite_update_stops_before_its_checkpoint(tmp_path):
  """An infinite LR: the step's loss and gradients are finite, its update is not."""
  bad = small_config(3)
  bad.optim.lr = 1e39  # Beyond float32: inf.
  bad.ckpt.every_steps = 1
  with pytest.raises(loop.TrainingDivergedError, match="diverged at step 1: non-finite update"):
    loop.run(bad, str(tmp_path))
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() is None


def test_mismatched_checkpoint_names_parameter(tmp_path):
  loop.run(small_config(3), str(tmp_path))
  wider = small_config(6)
  wider.model.mlp_dim = 256
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"mlp/down/kernel.*\(128, 64\)"):
    loop.run(wider, str(tmp_path))


def test_soup_averages_params(tmp_path, uninterrupted):
  other = loop.run(small_config(3), str(tmp_path / "other"))
  out = checkpoint.soup([uninterrupted.workdir, other.workdir], str(tmp_path / "soup"))
  a, _, _ = checkpoint.load_params(uninterrupted.workdir)
  b, _, _ = checkpoint.load_params(other.workdir)
  s, _, _ = checkpoint.load_params(out)
  np.testing.assert_allclose(s["embed"]["embedding"],
                             (a["embed"]["embedding"] + b["embed"]["embedding"]) / 2, rtol=1e-6)
  wider = small_config(3)
  wider.model.mlp_dim = 256
  loop.run(wider, str(tmp_path / "wider"))
  with pytest.raises(checkpoint.CheckpointMismatchError):
    checkpoint.soup([uninterrupted.workdir, str(tmp_path / "wider")], str(tmp_path / "soup2"))


def test_decontamination_check_names_tasks_and_benchmarks():
  c = small_config(1)
  c.data.decontam.benchmarks = ()  # Prepared without decontamination.
  c.eval.update(benchmarks=("gsm8k", "humaneval"), decontam_check="error")
  pipeline_gaps = loop.prepared.undecontaminated(c.data, ["gsm8k", "humaneval"])
  assert set(pipeline_gaps) == set(loop.prepared.task_names(c.data))
  with pytest.raises(loop.ContaminationRiskError, match=r"math_synthetic: gsm8k, humaneval"):
    loop._check_decontamination(c)
  c.eval.decontam_check = "off"
  loop._check_decontamination(c)  # Silent.


def test_anneal_from_a_base_of_the_other_layer_layout(tmp_path, uninterrupted):
  """A scanned anneal from an unscanned base (params and AdamW moments converted)
  trains exactly as the unscanned anneal does."""
  losses = {}
  for scan in (False, True):
    c = small_config(2)
    c.model.scan_layers = scan
    c.train.init_from = os.path.join(uninterrupted.workdir, "checkpoints", "6")
    losses[scan] = loop.run(c, str(tmp_path / f"scan_{scan}")).losses
  for step in (1, 2):
    assert math.isclose(losses[True][step], losses[False][step], rel_tol=2e-5), step
  params, config, _ = checkpoint.load_params(str(tmp_path / "scan_True"))
  assert config.model.scan_layers and "layers" in params


def test_resume_in_the_other_layer_layout_equals_uninterrupted(tmp_path, uninterrupted):
  """A run checkpointed unscanned resumes scanned (a config that now scans by default)."""
  loop.run(small_config(3), str(tmp_path))
  scanned = small_config(6)
  scanned.model.scan_layers = True
  resumed = loop.run(scanned, str(tmp_path))
  for step in (4, 5, 6):
    assert math.isclose(resumed.losses[step], uninterrupted.losses[step], rel_tol=2e-5), step
