"""Non-finite values are never saved: the `train.on_nonfinite` policy, on the host side.

Every step reports the norms of `step.MUST_BE_FINITE` (loss, gradient,
update, parameters). With `stop` the first step where one is NaN or infinite
ends the run (`TrainingDivergedError` naming the step and which of them),
before that step's checkpoint: the loop reads a step's metrics before saving
it. With `skip` the step itself (train/step.py) left the state as it was;
here the skipped steps are counted and the run stops after
`train.max_consecutive_skips` in a row. Before every save `check_saveable`
looks at every value of the params and the optimiser state as well, so even a
value the norms miss is never written.
"""
import math

import jax
import numpy as np

from midtrain_jax.train import step as ts


class TrainingDivergedError(FloatingPointError):
  """The loss, gradients, update or parameters became NaN or infinite."""


_KEEP_ADVICE = ("Nothing of this step was saved; the last checkpoint is intact (lower "
                "optim.lr, check the data, or set train.on_nonfinite=skip).")


def _found(values: dict[str, float]) -> tuple[str, str]:
  """(what was non-finite, e.g. "gradient, update", and the values) of a step's metrics."""
  bad = [k for k in ts.MUST_BE_FINITE if not math.isfinite(values[k])]
  return (", ".join(ts.MUST_BE_FINITE[k] for k in bad),
          ", ".join(f"{k}={values[k]}" for k in bad))


class Guard:
  """Applies `train.on_nonfinite` to each step's metrics, once per step, in order."""

  def __init__(self, policy: str, max_consecutive: int):
    self.policy, self.max_consecutive = policy, max_consecutive
    self.in_a_row = 0
    self.skipped = 0  # Skipped steps since this run started.

  def check(self, step: int, values: dict[str, float]) -> None:
    """Raises TrainingDivergedError when `step` ends the run; counts skipped steps."""
    what, found = _found(values)
    if not what:
      self.in_a_row = 0
      return
    if self.policy == "stop":
      raise TrainingDivergedError(
          f"Training diverged at step {step}: non-finite {what} ({found}). {_KEEP_ADVICE}")
    self.in_a_row += 1
    self.skipped += 1
    if self.in_a_row >= self.max_consecutive:
      raise TrainingDivergedError(
          f"Training diverged: {self.in_a_row} steps in a row up to step {step} were skipped "
          f"(train.max_consecutive_skips={self.max_consecutive}); the last had non-finite "
          f"{what} ({found}). {_KEEP_ADVICE}")
    if jax.process_index() == 0:
      print(f"step {step} skipped: non-finite {what} ({found}); the update was not applied "
            f"({self.in_a_row} in a row, {self.skipped} in this run).", flush=True)


def check_saveable(step: int, finite_parts: dict) -> None:
  """Raises TrainingDivergedError if the state about to be saved holds a non-finite value.

  Args:
    step: the step being saved.
    finite_parts: `step.all_finite(state)` (device booleans).
  """
  bad = [name for name, ok in jax.device_get(finite_parts).items() if not np.all(ok)]
  if bad:
    raise TrainingDivergedError(
        f"Training diverged at step {step}: non-finite values in the {' and '.join(bad)}, "
        f"although the step's norms were finite. {_KEEP_ADVICE}")
