"""Which checkpoint steps may be loaded: interrupted saves and damaged steps are set aside.

Two kinds of step directory are never loaded, and each is reported with its
path:

* incomplete: a save cut off (a kill, a crash, a full disk) leaves orbax's
  temporary `<step>.orbax-checkpoint-tmp` directory, never published; the
  writing run removes it before its first save;
* damaged: a published step whose files no longer match its manifest
  (train/manifest.py): a file missing, truncated or changed.

`newest_complete` walks the steps newest first and returns the first whose
files match; the run that writes the directory moves the damaged ones newer
than it to `<checkpoints>.damaged/<step>` (kept for inspection), so it can
save those steps again. A step without a manifest is loaded, unverified and
with a warning, only when no step of the directory has one (a run written
before manifests existed); beside steps that have one it is damaged: a kill
while orbax deleted an old step (`ckpt.keep`) can leave it half removed.
"""
import time
from collections.abc import Sequence

import jax
import orbax.checkpoint as ocp
from etils import epath

from midtrain_jax.train import manifest


def _warn(message: str) -> None:
  """Printed (the command's own output, like the loop's lines) by process 0 only."""
  if jax.process_index() == 0:
    print(f"WARNING: {message}", flush=True)


def report_incomplete(directory: str | epath.Path) -> list[str]:
  """Reports the interrupted saves under `directory` (they are never loaded)."""
  directory = epath.Path(directory)
  if not directory.exists():
    return []
  names = sorted(ocp.step.tmp_checkpoints(directory))
  for name in names:
    _warn(f"Incomplete checkpoint {directory / name}: its save was interrupted; it is "
          "never loaded (a run writing here removes it).")
  return names


def problems(step_dir: str | epath.Path) -> list[str] | None:
  """What is wrong with a published step; None when it has no manifest to check against."""
  saved = manifest.read(step_dir)
  return None if saved is None else manifest.problems(step_dir, saved)


def _without_manifest(step_dir: epath.Path, others_have_one: bool) -> list[str]:
  """A step without a manifest: [] (loaded unverified) when no step has one, else why not."""
  if others_have_one:
    return [f"{step_dir / manifest.NAME}: missing while other steps have one (a save or "
            "a deletion was cut off)"]
  _warn(f"Checkpoint {step_dir} has no file manifest (written by an older version): "
        "loaded without checking its files.")
  return []


def _set_aside(step_dir: epath.Path) -> str:
  """Moves a damaged step out of orbax's view; returns where it went."""
  target_root = step_dir.parent.with_name(step_dir.parent.name + ".damaged")
  target_root.mkdir(parents=True, exist_ok=True)
  target = target_root / step_dir.name
  if target.exists():
    target = target_root / f"{step_dir.name}.{int(time.time())}"
  try:
    step_dir.rename(target)
    return f"moved to {target}"
  except OSError as error:  # Object stores rename no directories; no copy is worth it.
    step_dir.rmtree()
    return f"removed (moving it failed: {error})"


def newest_complete(directory: str | epath.Path, steps: Sequence[int],
                    set_aside: bool) -> int | None:
  """The newest of `steps` whose files match its manifest, reporting the damaged ones.

  Args:
    directory: the checkpoints directory (`<workdir>/checkpoints`).
    steps: the published steps (orbax's listing).
    set_aside: move damaged steps newer than the one returned out of the
      directory (only the run writing it does; process 0 alone).

  Returns:
    The step to load, or None if no step is complete.
  """
  directory = epath.Path(directory)
  with_manifests = any((directory / str(s) / manifest.NAME).exists() for s in steps)
  for step in sorted(steps, reverse=True):
    step_dir = directory / str(step)
    found = problems(step_dir)
    if found is None:
      found = _without_manifest(step_dir, with_manifests)
    if not found:
      return step
    where = ""
    if set_aside and jax.process_index() == 0:
      where = f"; {_set_aside(step_dir)}"
    _warn(f"Checkpoint {step_dir} is damaged and is not loaded{where}:\n  "
          + "\n  ".join(found))
  return None
