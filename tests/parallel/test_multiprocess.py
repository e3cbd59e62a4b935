"""Two processes (4 fake CPU devices each, gloo collectives) train like one with 8,
and stop together at one checkpointed step when one of them gets a SIGTERM.

With `data.loader_shards=2` the global batch is the same for one process
(reading both loader shards) and two (one shard each), so the 2-process run
must reproduce the 1-process losses. Its checkpoint is then resumed by one
process, which deals the two saved shard states to itself and continues the
2-process run's losses exactly.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import kill_harness
from midtrain_jax.train import ckpt_steps, loop, manifest, preemption
from midtrain_jax.workflows import analysis
from tests import helpers
from tests.helpers import small_config

pytestmark = pytest.mark.slow

ROOT = str(helpers.REPO_ROOT)
STEPS = 4


def _flags(config) -> list[str]:
  """`--config.*` flags that turn configs/anneal.py into `config`."""
  m, d = config.model, config.data
  values = {"model.d_model": m.d_model, "model.n_layers": m.n_layers, "model.n_heads": m.n_heads,
            "model.n_kv_heads": m.n_kv_heads, "model.mlp_dim": m.mlp_dim,
            "model.window_pattern": f"({','.join(map(str, m.window_pattern))})",
            "data.seq_len": d.seq_len, "data.batch_size": d.batch_size,
            "data.loader_shards": d.loader_shards,
            "optim.schedule": config.optim.schedule, "optim.lr": config.optim.lr,
            "optim.warmup_steps": config.optim.warmup_steps, "train.steps": config.train.steps,
            "train.log_every_steps": 1, "ckpt.every_steps": config.ckpt.every_steps,
            "ckpt.async_save": False, "mesh.data": config.mesh.data}
  return ["--config=configs/anneal.py:size=tiny"] + [f"--config.{k}={v}" for k, v in values.items()]


def _run_two_processes(config, workdir, log_dir) -> dict[int, float]:
  env = dict(os.environ, PYTHONPATH=ROOT)
  env.pop("XLA_FLAGS", None)  # The script gives each process its own 4 devices.
  cmd = ["bash", os.path.join(ROOT, "launch", "local_multiprocess.sh"), "--num_processes=2",
         "--devices_per_process=4", f"--port={12000 + os.getpid() % 5000}",
         f"--log_dir={log_dir}", f"--python={sys.executable}", "--",
         *_flags(config), f"--workdir={workdir}"]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
  output = proc.stdout + proc.stderr
  assert proc.returncode == 0, output[-4000:]
  # Process 0's TensorBoard events hold every logged loss at full precision.
  scalars = analysis.load_scalars(str(workdir))
  losses = {int(r.step): float(r.value) for r in scalars[scalars.tag == "loss"].itertuples()}
  assert sorted(losses) == list(range(1, STEPS + 1)), output[-4000:]
  return losses


def test_two_processes_match_one_and_resume_on_one(tmp_path):
  config = small_config(STEPS, loader_shards=2)
  config.ckpt.every_steps = 2
  reference = loop.run(config, str(tmp_path / "one_process"))

  two = _run_two_processes(config, tmp_path / "two_processes", tmp_path / "logs")
  for step in range(1, STEPS + 1):
    assert two[step] == pytest.approx(reference.losses[step], rel=5e-5), step
  assert two[STEPS] < two[1]
  saved = tmp_path / "two_processes" / "checkpoints"
  assert sorted(os.listdir(saved / "2" / "data")) == [
      "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"]

  # One process resumes the 2-process checkpoint of step 2: it takes both
  # saved loader-shard states and continues the same stream.
  resume = tmp_path / "resume"
  shutil.copytree(tmp_path / "two_processes", resume)
  shutil.rmtree(resume / "checkpoints" / str(STEPS))
  resumed = loop.run(small_config(STEPS, loader_shards=2), str(resume))
  assert sorted(resumed.losses) == [3, 4]
  for step in (3, 4):
    assert resumed.losses[step] == pytest.approx(two[step], rel=5e-5), step
    assert resumed.losses[step] == pytest.approx(reference.losses[step], rel=5e-5), step


def test_resume_on_fewer_processes_restarts_data_with_warning(tmp_path, caplog):
  """Without a matching data state, model and optimiser resume and the data restarts."""
  config = small_config(2)
  config.ckpt.every_steps = 2
  first = loop.run(config, str(tmp_path))
  data_dir = tmp_path / "checkpoints" / "2" / "data"
  # As if written by two processes: no state for a 1-process run (and their manifest).
  for name in os.listdir(data_dir):
    if name.startswith("process_"):
      os.rename(data_dir / name, data_dir / name.replace("-of-1", "-of-2"))
  manifest.write(data_dir.parent, checksums=True)
  with caplog.at_level("WARNING"):
    resumed = loop.run(small_config(3), str(tmp_path))
  assert first.step == 2 and resumed.step == 3 and sorted(resumed.losses) == [3]
  assert "data order restarts" in caplog.text


def test_sigterm_to_one_process_stops_both_at_one_checkpointed_step(tmp_path):
  """JAX's preemption service: one host gets the SIGTERM, every host stops at the step they
  agree on (the sync point), with that step checkpointed, and exits with status 75."""
  workdir = tmp_path / "run"
  values = kill_harness.overrides(30, 50)  # No regular checkpoint before the end.
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  port = 12000 + (os.getpid() + 1) % 5000
  outputs = [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = [subprocess.Popen(
      kill_harness.command(values, str(workdir)) + [
          f"--coordinator=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=env, stdout=open(outputs[i], "w"), stderr=subprocess.STDOUT)
      for i in range(2)]
  try:
    while "step 5/30" not in outputs[0].read_text():
      assert all(p.poll() is None for p in procs), outputs[0].read_text()[-3000:]
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=300) for p in procs]
  finally:
    for p in procs:
      p.kill()
  text = outputs[0].read_text()
  assert codes == [preemption.PREEMPTED_EXIT_STATUS] * 2, text[-3000:]
  stopped = re.search(r"Preempted \(preemption sync point\) at step (\d+): checkpoint", text)
  assert stopped, text[-3000:]
  step = int(stopped.group(1))
  assert 5 <= step < 30 and os.listdir(workdir / "checkpoints") == [str(step)]
  assert ckpt_steps.problems(workdir / "checkpoints" / str(step)) == []
