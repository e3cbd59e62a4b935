"""Kills a tiny training run at seeded random moments and checks it ends as if never stopped.

    python -m benchmarks.kill_harness [--kills=5] [--seed=0] [--steps=40] [--every=4]

Trains the tiny anneal (2 layers, d 64, seq 64, batch 8, fp32, 8 fake CPU
devices) once uninterrupted, in this process. Then the same run as the real
command, `python -m midtrain_jax.main`, in a child process that is SIGKILLed
`--kills` times, each time restarted: half of the kills (seeded) wait for a
checkpoint save to be in progress (orbax's temporary step directory exists)
and land a random few milliseconds into it, the others land a random time
into a random step. A kill "landed during a save" when the interrupted save's
temporary directory is still there after it. The run is then finished in
this process and its final loss and parameters are compared bit for bit with
the uninterrupted run's.

Then one more run is stopped by SIGTERM: the time from the signal to the
process's exit, its exit status and the size of the checkpoint it wrote.

The tests (tests/train/test_preemption.py) use the same functions.
"""
import os

if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from etils import epath  # noqa: E402

from configs import anneal  # noqa: E402
from midtrain_jax.train import checkpoint, loop, manifest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEP_LINE = re.compile(r"^step (\d+)/\d+ \|")


def overrides(steps: int, every: int, **more) -> dict:
  """The tiny run's settings over configs/anneal.py:size=tiny (`more`: further keys)."""
  values = {"model.d_model": 64, "model.n_layers": 2, "model.n_heads": 4,
            "model.n_kv_heads": 2, "model.mlp_dim": 128, "model.window_pattern": (16, 0),
            "data.seq_len": 64, "data.batch_size": 8, "optim.schedule": "constant",
            "optim.lr": 3e-3, "optim.warmup_steps": 0, "train.steps": steps,
            "train.log_every_steps": 1, "ckpt.every_steps": every, "ckpt.keep": 2,
            "ckpt.async_save": True, "eval.batches": 0, "eval.decontam_check": "off",
            "mesh.data": -1}
  values.update(more)
  return values


def config(values: dict):
  """The config the command builds from `values` (for runs in this process)."""
  c = anneal.get_config("size=tiny")
  c.update_from_flattened_dict(values)
  return c


def command(values: dict, workdir: str) -> list[str]:
  """The main command training `values` in `workdir`."""
  flags = [f"--config.{k}={'(' + ','.join(map(str, v)) + ')' if isinstance(v, tuple) else v}"
           for k, v in values.items()]
  return [sys.executable, "-m", "midtrain_jax.main", "--config=configs/anneal.py:size=tiny",
          *flags, f"--workdir={workdir}"]


def incomplete_saves(workdir: str) -> list[str]:
  """Orbax's temporary step directories under `workdir`: saves that did not finish."""
  directory = epath.Path(workdir) / checkpoint.CKPT_SUBDIR
  return sorted(ocp.step.tmp_checkpoints(directory)) if directory.exists() else []


class Child:
  """The command in a subprocess, its output read as it comes (the last step printed)."""

  def __init__(self, values: dict, workdir: str, devices: int = 8):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    self.proc = subprocess.Popen(command(values, workdir), cwd=ROOT, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    self.lines: list[str] = []
    self.times: list[float] = []  # time.perf_counter() when each line arrived.
    self.step = 0  # The last step whose progress line was printed.
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self) -> None:
    for line in self.proc.stdout:
      self.times.append(time.perf_counter())
      self.lines.append(line.rstrip("\n"))
      if match := _STEP_LINE.match(line):
        self.step = int(match.group(1))

  def wait_for_step(self, step: int, timeout: float = 300.0) -> bool:
    """Waits until step `step` is printed; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while self.step < step:
      if self.proc.poll() is not None or time.monotonic() > deadline:
        return False
      time.sleep(0.002)
    return True

  def finish(self, timeout: float = 300.0) -> int:
    self.proc.wait(timeout)
    self._reader.join(timeout)
    return self.proc.returncode

  @property
  def output(self) -> str:
    return "\n".join(self.lines)


@dataclasses.dataclass
class Kill:
  """One SIGKILL: when it was aimed, what it hit."""
  aimed_at_save: bool
  after_step: int  # The last step printed before it.
  landed_in_save: bool  # The save in flight was left incomplete.
  finished_first: bool = False  # The run ended before the kill (nothing was killed).


def _resumed_step(workdir: str) -> int:
  step = checkpoint.Checkpointer(workdir).latest_step()
  return 0 if step is None else step


def kill_once(values: dict, workdir: str, rng: np.random.Generator, at_save: bool) -> Kill:
  """Starts the command and SIGKILLs it at a seeded random moment (in a save if `at_save`)."""
  total = values["train.steps"]
  start = _resumed_step(workdir)
  target = int(rng.integers(start + 1, total))  # A step still to come, never the last.
  delay = float(rng.uniform(0.0, 0.01 if at_save else 0.15))
  child = Child(values, workdir)
  if child.wait_for_step(target) and at_save:
    before = set(incomplete_saves(workdir))
    while not set(incomplete_saves(workdir)) - before and child.proc.poll() is None:
      time.sleep(0.001)
  time.sleep(delay)
  finished = child.proc.poll() is not None
  child.proc.send_signal(signal.SIGKILL)
  child.finish()
  return Kill(aimed_at_save=at_save, after_step=child.step,
              landed_in_save=bool(incomplete_saves(workdir)), finished_first=finished)


def kill_repeatedly(values: dict, workdir: str, kills: int, seed: int) -> list[Kill]:
  """`kills` SIGKILLs of the command, each restart resuming where the last left off."""
  rng = np.random.default_rng(seed)
  aims = rng.permutation([i % 2 == 0 for i in range(kills)])  # Half of them (rounded up).
  return [kill_once(values, workdir, rng, at_save=bool(aim)) for aim in aims]


@dataclasses.dataclass
class Termination:
  """A SIGTERM and how the command ended."""
  status: int
  seconds: float  # From the signal to the process's exit.
  saved_seconds: float | None  # From the signal to the message that the checkpoint is complete.
  step: int | None  # The step the run stopped at (its checkpoint), from its message.
  checkpoint_bytes: int
  output: str


def terminate(values: dict, workdir: str, after_step: int, devices: int = 8) -> Termination:
  """Starts the command, sends SIGTERM once `after_step` is printed, times the exit."""
  child = Child(values, workdir, devices)
  if not child.wait_for_step(after_step):
    child.finish()
    raise RuntimeError(f"The run ended before step {after_step}:\n{child.output[-3000:]}")
  sent = time.perf_counter()
  child.proc.send_signal(signal.SIGTERM)
  status = child.finish()
  seconds = time.perf_counter() - sent
  pattern = re.compile(r"Preempted \(SIGTERM\) at step (\d+): checkpoint (\S+) is complete")
  for line, arrived in zip(child.lines, child.times):
    if found := pattern.match(line):
      return Termination(status, seconds, arrived - sent, int(found.group(1)),
                         manifest.read(found.group(2))["bytes"], child.output)
  return Termination(status, seconds, None, None, 0, child.output)


def same_params(workdir_a: str, workdir_b: str) -> bool:
  """Whether the newest checkpoints of two runs hold bit-identical parameters."""
  a, _, _ = checkpoint.load_params(workdir_a)
  b, _, _ = checkpoint.load_params(workdir_b)
  (leaves_a, tree_a), (leaves_b, tree_b) = (jax.tree.flatten(p) for p in (a, b))
  return tree_a == tree_b and all(np.asarray(x).tobytes() == np.asarray(y).tobytes()
                                  for x, y in zip(leaves_a, leaves_b))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--every", type=int, default=4, help="steps between checkpoints")
  parser.add_argument("--workdir", default="runs/kill_harness")
  args = parser.parse_args()
  values = overrides(args.steps, args.every)
  root = os.path.abspath(args.workdir)
  if os.path.exists(root):
    raise SystemExit(f"{root} exists; give a fresh --workdir.")
  reference = loop.run(config(values), f"{root}/uninterrupted")
  start = time.perf_counter()
  kills = kill_repeatedly(values, f"{root}/killed", args.kills, args.seed)
  resumed = loop.run(config(values), f"{root}/killed")
  for i, k in enumerate(kills):
    print(f"kill {i + 1}: after step {k.after_step}, aimed at a save: {k.aimed_at_save}, "
          f"landed in a save: {k.landed_in_save}" + (" (run had ended)" * k.finished_first))
  identical = same_params(f"{root}/uninterrupted", f"{root}/killed") and \
      resumed.loss == reference.loss
  print(f"kills={len(kills)} landed_in_save={sum(k.landed_in_save for k in kills)} "
        f"final_loss={resumed.loss!r} uninterrupted={reference.loss!r} "
        f"bit_identical={identical} ({time.perf_counter() - start:.0f}s)")
  stop = terminate(values, f"{root}/terminated", after_step=args.steps // 2)
  print(f"sigterm: checkpoint of step {stop.step} ({stop.checkpoint_bytes / 1e6:.1f} MB) "
        f"complete after {stop.saved_seconds:.2f}s, exit status {stop.status} after "
        f"{stop.seconds:.2f}s")


if __name__ == "__main__":
  main()
