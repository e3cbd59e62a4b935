"""Launch scripts print the exact commands they run; start-up reads the environment."""
import os
import shlex
import subprocess

import pytest

from midtrain_jax.parallel import multihost as distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN_FLAGS = ["--config=configs/anneal.py:size=7b", "--workdir=/shared/runs/a b"]


def _dry_run(script: str, *options: str, env: dict[str, str] | None = None) -> list[str]:
  clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  proc = subprocess.run(["bash", os.path.join(ROOT, "launch", script), "--dry-run", *options,
                         "--", *MAIN_FLAGS], env={**clean, **(env or {})},
                        capture_output=True, text=True, timeout=30, check=True)
  return proc.stdout.strip().splitlines()


def _main_args(words: list[str]) -> list[str]:
  """The words after `python -m midtrain_jax.main`."""
  at = words.index("midtrain_jax.main")
  assert words[at - 1] == "-m"
  return words[at + 1:]


def test_local_multiprocess_commands():
  lines = _dry_run("local_multiprocess.sh", "--num_processes=3", "--devices_per_process=2",
                   "--port=23456")
  assert len(lines) == 3
  for i, line in enumerate(lines):
    words = shlex.split(line)
    assert words[:3] == ["env", "JAX_PLATFORMS=cpu",
                         "XLA_FLAGS=--xla_force_host_platform_device_count=2"]
    assert _main_args(words) == ["--coordinator=localhost:23456", "--num_processes=3",
                                 f"--process_id={i}", *MAIN_FLAGS]
  gpu = shlex.split(_dry_run("local_multiprocess.sh", "--platform=gpu")[1])
  assert gpu[1] == "CUDA_VISIBLE_DEVICES=1" and "--process_id=1" in gpu


def test_gpu_slurm_command():
  env = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "4",
         "SLURM_JOB_NODELIST": "gpu[003-006,009],cpu1", "PATH": "/usr/bin:/bin"}
  (line,) = _dry_run("gpu_slurm.sbatch", env=env)
  words = shlex.split(line)
  assert words[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
  assert words[4:6] == ["bash", "-c"] and len(words) == 7
  task = shlex.split(words[6])
  assert task[:2] == ["exec", "python3"]
  # Each task substitutes its own $SLURM_PROCID; the coordinator is the first node.
  assert _main_args(task) == ["--coordinator=gpu003:24242", "--num_processes=4",
                              "--process_id=$SLURM_PROCID", *MAIN_FLAGS]


def test_tpu_pod_commands():
  lines = _dry_run("tpu_pod.sh", "--name=anneal", "--zone=us-east5-a",
                   "--accelerator=v5p-256", "--project=p")
  assert len(lines) == 5
  assert lines[0].startswith("gcloud compute tpus tpu-vm describe anneal --zone=us-east5-a "
                             "--project=p > /dev/null 2>&1 || gcloud compute tpus tpu-vm create")
  assert "--accelerator-type=v5p-256 --version=v2-alpha-tpuv5" in lines[0]
  assert "--worker=all" in lines[2] and "--worker=all" in lines[3]
  run = shlex.split(lines[4])
  assert run[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in run
  command = shlex.split(run[-1].removeprefix("--command="))
  assert command[:3] == ["cd", "midtrain_jax", "&&"]
  assert _main_args(command) == MAIN_FLAGS
  skip = _dry_run("tpu_pod.sh", "--name=a", "--zone=z", "--accelerator=v4-8", "--skip_install")
  assert len(skip) == 2 and "--version=tpu-ubuntu2204-base" in skip[0]


def test_launch_scripts_reject_bad_options():
  proc = subprocess.run(["bash", os.path.join(ROOT, "launch", "tpu_pod.sh"), "--name=a"],
                        capture_output=True, text=True, timeout=30)
  assert proc.returncode == 2 and "--zone is required" in proc.stderr
  proc = subprocess.run(["bash", os.path.join(ROOT, "launch", "local_multiprocess.sh"),
                         "--config=x"], capture_output=True, text=True, timeout=30)
  assert proc.returncode == 2 and "unknown option --config=x" in proc.stderr


def _never(_):
  return False


def test_detect_explicit_slurm_tpu_single():
  explicit = distributed.detect("host:1234", 4, 2, environ={}, exists=_never)
  assert explicit == distributed.Membership("explicit", "host:1234", 4, 2)
  assert distributed.detect("host:1234", 1, 0, environ={}, exists=_never).method == "single"
  slurm_env = {"SLURM_JOB_ID": "1", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
               "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
  assert distributed.detect(environ=slurm_env, exists=_never) == distributed.Membership(
      "slurm", None, 2, 1)
  # A single-task SLURM allocation is just one process.
  assert distributed.detect(environ={**slurm_env, "SLURM_NTASKS": "1"},
                            exists=_never).method == "single"
  assert distributed.detect(environ={"TPU_WORKER_HOSTNAMES": "a,b"}, exists=_never).method == "tpu"
  assert distributed.detect(environ={}, exists=lambda p: p == "/dev/accel0").method == "tpu"
  assert distributed.detect(environ={}, exists=_never).method == "single"
  # Flags win over the environment.
  assert distributed.detect("h:1", 2, 0, environ=slurm_env, exists=_never).method == "explicit"


@pytest.mark.parametrize("flags,message", [
    (("h:1", None, 0), "--num_processes missing"),
    ((None, 2, None), "--coordinator, --process_id missing"),
    (("h:1", 2, 2), r"--process_id=2 must be in \[0, --num_processes=2\)"),
    (("nohost", 2, 0), "must be HOST:PORT"),
])
def test_detect_rejects_bad_flags(flags, message):
  with pytest.raises(ValueError, match=message):
    distributed.detect(*flags, environ={}, exists=_never)


def test_single_process_initialise_is_a_no_op(monkeypatch):
  monkeypatch.setattr(distributed, "detect", lambda *a: distributed.Membership("single"))
  called = []
  monkeypatch.setattr(distributed.jax.distributed, "initialize", lambda **k: called.append(k))
  assert distributed.initialize().method == "single" and not called
