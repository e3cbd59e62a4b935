"""Test set-up: 8 fake CPU devices, so every sharding path runs on a laptop."""
import fcntl
import os
import shutil
import tempfile

import pytest

# Must happen before JAX is imported anywhere.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# TensorFlow (pulled in by seqio) must never claim an accelerator or spam logs.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The cores shared out among the xdist workers, for torch's (and BLAS's) OpenMP
# threads in the transformers references: two workers with a team of two threads
# each on two cores wait at every op's barrier for a descheduled thread (on a busy
# two-core machine, transformers' forwards ran 2-10x slower than with one thread).
# Set in each worker only (xdist names the count there), so that a serial run keeps
# torch's default and the controller's setting never reaches the workers.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
  os.environ.setdefault("OMP_NUM_THREADS", str(max(
      1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

# One XLA compilation cache for the run, made by the first process (the xdist
# controller, or the only one) and inherited by the workers and the commands
# tests start: many tests compile the same small train steps (programs taking
# over a second to compile are kept). A size limit turns on JAX's file lock, so
# concurrent workers never read a half-written entry. Removed when the run ends.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="midtrain_jax_tests_xla_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"  # Train steps, not small jits.
  os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(4 << 30)


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _demo_mixtures_prepared():
  """The demo mixtures that training tests read from the cache, prepared up front.

  The loader never prepares, so tests that call `train.loop.run` directly need
  them ready; xdist workers share the cache, so one prepares while the other
  waits on the lock and then finds them done.
  """
  from midtrain_jax import cache
  from midtrain_jax.data.prepare import tasks
  from tests.helpers import small_config
  root = cache.cache_root()
  root.mkdir(parents=True, exist_ok=True)
  with open(root / "prepare.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    for mixture in ("dolmino_demo", "web_only"):
      config = small_config(1)
      config.data.mixture = mixture
      tasks.ensure_prepared(config.data, log=lambda _: None)
