"""Multi-process start-up: `jax.distributed.initialize` driven by the environment.

One training program runs per host (TPU VM worker, GPU node, or one of several
processes on a CPU host). Before JAX touches a device, every process must join
the same distributed system. Where the membership comes from, in order:

  1. explicit flags `--coordinator=HOST:PORT --num_processes=N --process_id=I`
     (what `launch/local_multiprocess.sh` and `launch/gpu_slurm.sbatch` pass);
  2. SLURM: inside an `srun` step with more than one task, JAX reads the
     coordinator (first node), task count and task id from SLURM variables;
  3. TPU pods: on a Cloud TPU VM JAX asks the TPU metadata for its workers;
  4. otherwise a single process: nothing is initialised.

After initialisation `jax.devices()` lists the devices of all processes and
`jax.process_index()` names this one. Only process 0 writes logs, config.json
and reports; every process takes part in checkpointing (orbax coordinates the
writes), and each process loads only its share of every batch.
"""
import dataclasses
import os
from collections.abc import Callable, Mapping

import jax
from absl import logging

# Variables JAX's own SLURM detection needs (set inside an `srun` step).
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
               "SLURM_LOCALID")
# Any of these marks a Cloud TPU VM (GCE or GKE); JAX then finds the workers itself.
_TPU_VARS = ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID", "TPU_ACCELERATOR_TYPE",
             "MEGASCALE_COORDINATOR_ADDRESS")


@dataclasses.dataclass(frozen=True)
class Membership:
  """How this process joins the run.

  Attributes:
    method: "single" (nothing to initialise), "explicit", "slurm" or "tpu".
    coordinator: HOST:PORT of process 0's coordination service, when known here.
    num_processes: processes in the run, when known here.
    process_id: this process's index, when known here.
  """
  method: str
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


def _has_tpu_device(exists: Callable[[str], bool]) -> bool:
  return exists("/dev/accel0") or exists("/dev/vfio/0")


def detect(coordinator: str | None = None, num_processes: int | None = None,
           process_id: int | None = None, environ: Mapping[str, str] | None = None,
           exists: Callable[[str], bool] = os.path.exists) -> Membership:
  """Decides how to join the run (see the module docstring for the order).

  Args:
    coordinator: `--coordinator` flag (HOST:PORT), or None.
    num_processes: `--num_processes` flag, or None.
    process_id: `--process_id` flag, or None.
    environ: environment variables (default os.environ).
    exists: file test, for detecting TPU device files.

  Returns:
    The Membership to initialise.

  Raises:
    ValueError: when the explicit flags are incomplete or inconsistent.
  """
  environ = os.environ if environ is None else environ
  given = {"--coordinator": coordinator, "--num_processes": num_processes,
           "--process_id": process_id}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise ValueError(f"Multi-process flags are incomplete: {', '.join(missing)} "
                       f"missing (got {', '.join(k for k in given if k not in missing)}). "
                       "Pass all three, or none to detect SLURM/TPU from the environment.")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes="
                       f"{num_processes}).")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
      raise ValueError(f"--coordinator={coordinator!r} must be HOST:PORT, e.g. localhost:12355.")
    if num_processes == 1:
      return Membership("single")
    return Membership("explicit", coordinator, num_processes, process_id)
  if all(v in environ for v in _SLURM_VARS) and int(environ["SLURM_NTASKS"]) > 1:
    return Membership("slurm", None, int(environ["SLURM_NTASKS"]), int(environ["SLURM_PROCID"]))
  if any(v in environ for v in _TPU_VARS) or _has_tpu_device(exists):
    return Membership("tpu")
  return Membership("single")


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> Membership:
  """Joins the distributed system (call once, before any other JAX call).

  Args:
    coordinator: HOST:PORT of process 0, or None to detect.
    num_processes: number of processes, or None to detect.
    process_id: this process's index, or None to detect.

  Returns:
    The Membership used.
  """
  membership = detect(coordinator, num_processes, process_id)
  if membership.method == "single":
    return membership
  # CPU processes all-reduce through gloo (also JAX's default; stated so a
  # changed default cannot silently break multi-process CPU runs).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if membership.method == "explicit":
    jax.distributed.initialize(coordinator_address=membership.coordinator,
                               num_processes=membership.num_processes,
                               process_id=membership.process_id)
  else:  # JAX's cluster detection reads SLURM variables or TPU metadata.
    jax.distributed.initialize()
  logging.info("joined %s run as process %d of %d (%d local / %d global devices)",
               membership.method, jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return membership


def is_main_process() -> bool:
  """True on the one process that writes logs, config.json and reports."""
  return jax.process_index() == 0

