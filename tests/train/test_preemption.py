"""Runs that survive SIGKILL, SIGTERM, damaged checkpoints and full disks, resume on
another device count, and never save non-finite values.

The interrupted runs are the real command in a subprocess, driven by
benchmarks/kill_harness.py (which also prints the figures); each is compared
with one uninterrupted run of the same tiny config in this process.
"""
import contextlib
import os
import resource
import shutil
import signal

import jax
import numpy as np
import pytest

from benchmarks import kill_harness
from midtrain_jax.parallel import sharding
from midtrain_jax.train import checkpoint, ckpt_steps, loop, manifest, nonfinite, preemption
from midtrain_jax.train import step as ts
from midtrain_jax.workflows import analysis
from tests import helpers

STEPS, EVERY = 12, 2
VALUES = kill_harness.overrides(STEPS, EVERY)  # ckpt.keep=2: steps 10 and 12 stay.


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  return loop.run(kill_harness.config(VALUES), str(tmp_path_factory.mktemp("uninterrupted")))


def _copy(reference, tmp_path, drop=()) -> str:
  """The uninterrupted run's workdir copied, without the checkpoints of steps `drop`."""
  workdir = str(tmp_path / "run")
  shutil.copytree(reference.workdir, workdir)
  for step in drop:
    shutil.rmtree(f"{workdir}/checkpoints/{step}")
  return workdir


def _assert_ends_like(result, reference, workdir):
  """Bit-identical: every loss of the resumed steps, the final loss and the params."""
  assert result.step == STEPS
  for step, loss in result.losses.items():
    assert loss == reference.losses[step], step
  assert result.loss == reference.loss
  assert kill_harness.same_params(workdir, reference.workdir)


@pytest.mark.slow
def test_sigkills_at_random_moments_end_bit_identical(tmp_path, reference, capsys):
  workdir = str(tmp_path / "killed")
  kills = kill_harness.kill_repeatedly(VALUES, workdir, kills=3, seed=3)
  assert not any(k.finished_first for k in kills), kills
  assert sum(k.landed_in_save for k in kills) >= 1, kills  # Saves cut off half-written.
  resumed = loop.run(kill_harness.config(VALUES), workdir)
  out = capsys.readouterr().out
  if kills[-1].landed_in_save:
    assert "Incomplete checkpoint" in out and "never loaded" in out, out
  assert not kill_harness.incomplete_saves(workdir)  # Removed before the first save.
  _assert_ends_like(resumed, reference, workdir)


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_in_flight_then_resumes_identically(tmp_path, reference):
  workdir = str(tmp_path / "run")
  # Regular checkpoints every 5 steps: the one SIGTERM writes after step 6 is its own.
  stop = kill_harness.terminate(kill_harness.overrides(STEPS, 5), workdir, after_step=6)
  assert stop.status == preemption.PREEMPTED_EXIT_STATUS, stop.output[-3000:]
  assert stop.step is not None and 6 <= stop.step < 10, stop.output[-3000:]
  assert "To resume from it, run the same command again" in stop.output
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.latest_step() == stop.step
  assert ckpt_steps.problems(f"{ckpt.directory}/{stop.step}") == []
  resumed = loop.run(kill_harness.config(VALUES), workdir)
  assert min(resumed.losses) == stop.step + 1
  _assert_ends_like(resumed, reference, workdir)


def _largest_file(step_dir: str) -> str:
  sizes = {os.path.join(d, f): os.path.getsize(os.path.join(d, f))
           for d, _, names in os.walk(step_dir) for f in names}
  return max(sizes, key=sizes.get)


@pytest.mark.parametrize("damage", ["truncated", "interrupted"])
def test_newest_checkpoint_damaged_or_interrupted_falls_back(tmp_path, reference, capsys,
                                                              damage):
  workdir = _copy(reference, tmp_path)
  newest = f"{workdir}/checkpoints/{STEPS}"
  if damage == "truncated":
    path = _largest_file(newest)
    os.truncate(path, os.path.getsize(path) // 2)
  else:  # A save cut off: orbax never published its temporary directory.
    path = newest + ".orbax-checkpoint-tmp"
    os.rename(newest, path)
  resumed = loop.run(kill_harness.config(VALUES), workdir)
  out = capsys.readouterr().out
  assert path in out, out
  assert f"resumed from {workdir}/checkpoints/{STEPS - EVERY}" in out
  _assert_ends_like(resumed, reference, workdir)
  if damage == "truncated":  # Kept for inspection, out of the run's way.
    assert os.path.exists(f"{workdir}/checkpoints.damaged/{STEPS}")
  assert not kill_harness.incomplete_saves(workdir)


def test_manifest_finds_missing_truncated_and_changed_files(tmp_path):
  step_dir = tmp_path / "7"
  (step_dir / "params").mkdir(parents=True)
  for name, data in (("params/a", b"x" * 1000), ("params/b", b"y" * 10), ("meta", b"{}")):
    (step_dir / name).write_bytes(data)
  written = manifest.write(step_dir, checksums=True)
  assert written["bytes"] == 1012 and manifest.problems(step_dir, written) == []
  (step_dir / "params" / "a").write_bytes(b"x" * 999)
  (step_dir / "params" / "b").write_bytes(b"z" * 10)
  (step_dir / "meta").unlink()
  found = manifest.problems(step_dir, manifest.read(step_dir))
  assert found == [f"{step_dir}/meta: missing",
                   f"{step_dir}/params/a: 999 bytes, 1000 when saved (truncated or overwritten)",
                   found[2]]
  assert found[2].startswith(f"{step_dir}/params/b: content differs from when saved")


@contextlib.contextmanager
def _file_size_limit(max_bytes: int):
  """No file of this process may grow past `max_bytes` (writes fail with EFBIG), like a
  disk that fills; SIGXFSZ is ignored so the write fails rather than the process."""
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_full_disk_names_the_checkpoint_and_keeps_the_only_complete_one(tmp_path, reference):
  workdir = _copy(reference, tmp_path, drop=[STEPS])
  values = dict(VALUES, **{"ckpt.keep": 1})  # Keeping one must not delete the only one.
  largest = os.path.getsize(_largest_file(f"{workdir}/checkpoints/{STEPS - EVERY}"))
  with _file_size_limit(largest // 4), pytest.raises(
      checkpoint.CheckpointWriteError,
      match=rf"Writing checkpoint {workdir}/checkpoints/{STEPS} failed .*File too large.*"
            rf"the previous checkpoint {workdir}/checkpoints/{STEPS - EVERY} is intact"):
    loop.run(kill_harness.config(values), workdir)
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.latest_step() == STEPS - EVERY
  assert ckpt_steps.problems(f"{ckpt.directory}/{STEPS - EVERY}") == []
  _assert_ends_like(loop.run(kill_harness.config(values), workdir), reference, workdir)


@pytest.mark.slow
def test_resume_on_four_devices_continues_the_eight_device_run(tmp_path, reference):
  workdir = _copy(reference, tmp_path, drop=[STEPS])
  for name in os.listdir(workdir):  # The resumed run's events alone.
    if name.startswith("events.out.tfevents"):
      os.remove(os.path.join(workdir, name))
  child = kill_harness.Child(VALUES, workdir, devices=4)
  assert child.finish() == 0, child.output[-3000:]
  assert f"resumed from {workdir}/checkpoints/{STEPS - EVERY}" in child.output
  assert "mesh {'data': 4, 'fsdp': 1, 'tensor': 1}" in child.output
  scalars = analysis.load_scalars(workdir)
  losses = {int(r.step): r.value for r in scalars[scalars.tag == "loss"].itertuples()}
  assert sorted(losses) == list(range(STEPS - EVERY + 1, STEPS + 1))
  for step, loss in losses.items():
    assert abs(loss - reference.losses[step]) <= 1e-5, (step, loss, reference.losses[step])


def test_sigterm_handler_lives_only_as_long_as_the_watch():
  def mine(signum, frame):
    del signum, frame
  previous = signal.signal(signal.SIGTERM, mine)
  try:
    with preemption.Watch(lambda step: step == 40) as watch:
      assert signal.getsignal(signal.SIGTERM) is not mine
      assert not watch.requested(3) and watch.requested(40)  # The multi-host sync point.
      os.kill(os.getpid(), signal.SIGTERM)
      assert watch.requested(4) and watch.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is mine
  finally:
    signal.signal(signal.SIGTERM, previous)
  stop = preemption.stop(4, "ckpt/4", "SIGTERM", "runs/x")
  assert isinstance(stop, SystemExit) and stop.code == preemption.PREEMPTED_EXIT_STATUS == 75


def test_a_skipped_step_leaves_params_and_optimiser_state_as_they_were():
  cfg = helpers.tiny_model()
  s = helpers.train_setup(cfg, (1, 1, 1), jax.devices()[:1])  # One device: compiles fastest.
  batch = sharding.host_batch_to_global(helpers.text_batch(8, 32), s.mesh)
  step = ts.jit_train_step(s.graphdef, s.tx, s.schedule, 1e-4, s.mesh, s.shardings,
                           skip_nonfinite=True)
  start = jax.device_get(ts.init_state(cfg, s.tx, 0, s.shardings))
  state, metrics = step(jax.device_put(start, s.shardings), batch)
  assert float(metrics["skipped"]) == 0.0 and int(state.step) == 1
  moved = jax.device_get(state.params["embed"]["embedding"])
  assert not np.array_equal(moved, start.params["embed"]["embedding"])
  # One NaN weight: the loss, gradients, update and parameters all go NaN.
  broken = jax.tree.map(np.copy, start)
  broken.params["final_norm"]["scale"][0] = np.nan
  state, metrics = step(jax.device_put(broken, s.shardings), batch)
  assert float(metrics["skipped"]) == 1.0 and not np.isfinite(float(metrics["grad_norm"]))
  after = jax.device_get(state)
  assert int(after.step) == 1  # Only the step count moved.
  same = jax.tree.map(lambda a, b: a.tobytes() == b.tobytes(), (broken.params, broken.opt_state),
                      (after.params, after.opt_state))
  assert all(jax.tree.leaves(same))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # The LR itself.
def test_skip_counts_non_finite_steps_and_stops_after_n_in_a_row(tmp_path, capsys):
  values = dict(kill_harness.overrides(6, 1), **{
      "optim.lr": 1e39, "train.on_nonfinite": "skip", "train.max_consecutive_skips": 3})
  with pytest.raises(loop.TrainingDivergedError,
                     match=r"3 steps in a row up to step 3 were skipped.*non-finite update"):
    loop.run(kill_harness.config(values), str(tmp_path))
  assert "step 2 skipped: non-finite update" in capsys.readouterr().out
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.all_steps() == [1, 2]  # Step 3 ended the run before its save.
  one, _, _ = checkpoint.load_params(f"{tmp_path}/checkpoints/1")
  two, _, _ = checkpoint.load_params(f"{tmp_path}/checkpoints/2")
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two)):
    assert np.isfinite(a).all() and a.tobytes() == b.tobytes()


def test_non_finite_state_is_never_saved():
  state = {"w": np.ones(3, np.float32), "count": np.int32(2)}
  assert jax.device_get(ts.all_finite(ts.TrainState(0, state, state)))["parameters"]
  broken = ts.TrainState(0, state, {"mu": np.array([1.0, np.nan], np.float32)})
  with pytest.raises(loop.TrainingDivergedError,
                     match="step 8: non-finite values in the optimiser state"):
    nonfinite.check_saveable(8, ts.all_finite(broken))


def test_a_step_without_manifest_is_loaded_only_in_a_run_that_never_wrote_one(tmp_path, capsys):
  for step in (4, 8):
    (tmp_path / str(step) / "params").mkdir(parents=True)
    (tmp_path / str(step) / "params" / "a").write_bytes(b"x" * 10)
  assert ckpt_steps.newest_complete(tmp_path, [4, 8], set_aside=False) == 8  # Older version.
  assert "no file manifest" in capsys.readouterr().out
  manifest.write(tmp_path / "8", checksums=True)
  (tmp_path / "8" / "params" / "a").write_bytes(b"x" * 5)
  # Beside a step with a manifest, 4 may be a deletion cut off half-way: not loaded.
  assert ckpt_steps.newest_complete(tmp_path, [4, 8], set_aside=True) is None
  out = capsys.readouterr().out
  assert f"{tmp_path}/8/params/a: 5 bytes, 10 when saved" in out
  assert f"{tmp_path}/4/{manifest.NAME}: missing while other steps have one" in out
  assert sorted(os.listdir(f"{tmp_path}.damaged")) == ["4", "8"]
