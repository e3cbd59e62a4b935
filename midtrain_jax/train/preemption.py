"""Preemption: a SIGTERM ends a run at a step boundary, with that step checkpointed.

Preemptible TPU VMs, spot GPU hosts and cluster schedulers announce the end
of a job with SIGTERM and a grace period. While `loop.run` trains, a `Watch`
turns the signal into a request: the step in flight finishes, its checkpoint
is written and waited for, and the run ends with `Preempted`, a SystemExit
whose status is `PREEMPTED_EXIT_STATUS` (75, sysexits' EX_TEMPFAIL: "try
again later"). A wrapper script or a scheduler can tell it from a failure (1)
and from a process the signal killed outright (143 in a shell, -15 from
Python's subprocess). Starting the same command again resumes from the
checkpoint.

In a multi-process run every host must stop at the same step. JAX's
preemption service (on by default after `jax.distributed.initialize`)
catches SIGTERM itself and agrees on the step
(`multihost_utils.reached_preemption_sync_point`, asked through orbax's
`CheckpointManager.reached_preemption` at every step); the Python handler is
then not installed, as it would replace the service's own.
"""
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable

import jax
from absl import logging

PREEMPTED_EXIT_STATUS = 75  # os.EX_TEMPFAIL, spelled out: os has it on POSIX only.


class Preempted(SystemExit):
  """The run stopped at `step` for a preemption; `checkpoint` holds that step.

  A SystemExit, so a command ends with `PREEMPTED_EXIT_STATUS` without a
  traceback, and `except Exception` never swallows it.
  """

  def __init__(self, step: int, checkpoint: str | None, message: str):
    super().__init__(PREEMPTED_EXIT_STATUS)
    self.step, self.checkpoint, self.message = step, checkpoint, message

  def __str__(self) -> str:
    return self.message


class Watch:
  """SIGTERM handler (single process) or preemption sync point (several) for one run.

  A context manager: the handler is installed on entry and the previous one
  put back on exit, so only the training loop's lifetime is covered.
  """

  def __init__(self, reached_sync_point: Callable[[int], bool]):
    """`reached_sync_point(step)`: whether all hosts agreed to stop at `step`."""
    self._reached_sync_point = reached_sync_point
    self._previous = None
    self._installed = False
    self.signalled_at: float | None = None  # time.monotonic() of the first SIGTERM.

  def __enter__(self) -> "Watch":
    if jax.process_count() > 1:
      if not jax.config.jax_enable_preemption_service:
        logging.warning("jax_enable_preemption_service is off: a SIGTERM ends this "
                        "multi-process run without a checkpoint of the step in flight.")
    elif threading.current_thread() is not threading.main_thread():
      # Python runs signal handlers in the main thread only.
      logging.warning("Training outside the main thread: SIGTERM is not handled.")
    else:
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    return self

  def __exit__(self, *exc_info) -> None:
    if self._installed:
      # None: the previous handler was not set from Python; the default is all we can restore.
      signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
      self._installed = False

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    if self.signalled_at is None:
      self.signalled_at = time.monotonic()
      # os.write, not print: the main thread may be inside a print right now.
      os.write(2, b"SIGTERM: finishing the step in flight, then checkpointing it.\n")

  def requested(self, step: int) -> bool:
    """Whether to stop after `step` (every process calls this at every step)."""
    return self._reached_sync_point(step) or self.signalled_at is not None

  @property
  def reason(self) -> str:
    return "SIGTERM" if self.signalled_at is not None else "preemption sync point"


def stop(step: int, checkpoint: str | None, reason: str, workdir: str) -> Preempted:
  """The `Preempted` ending a run at `step`, its message printed (process 0).

  Args:
    step: the last step trained.
    checkpoint: the complete checkpoint of `step`, or None if nothing was
      trained since the run started (it then resumes where it did).
    reason: what asked for the stop ("SIGTERM", ...).
    workdir: the run's directory.
  """
  where = (f"checkpoint {checkpoint} is complete" if checkpoint else
           "no step was trained since the start, so nothing new was saved")
  message = (f"Preempted ({reason}) at step {step}: {where}. Exit status "
             f"{PREEMPTED_EXIT_STATUS}. To resume from it, run the same command again (same "
             f"--workdir, {workdir}): {shlex.join(sys.orig_argv)}")
  if jax.process_index() == 0:
    print(message, flush=True)
  return Preempted(step, checkpoint, message)
