"""A run's metrics at each of its evaluated checkpoints: `{metric: {step: value}}`.

Two records a run already has, kept apart because they score different
amounts of data (so their values differ even at the same step):

* `in_training/...`: what the training loop's evaluation hook wrote to the
  run's TensorBoard events at every `eval.every_steps` (held-out BPB per task
  and capability on `eval.batches` batches: the same documents at every step);
  the events' `eval/...` tags, renamed.
* `eval/...`: the saved evaluations `eval/step_<N>.json` (`suite.write_results`,
  named as `suite.scalars` names them), and `olmes/<task>/<metric>` from the
  OLMES results `eval/olmes_step_<N>.json`. Checkpoints evaluated with other
  options than the latest (other benchmark items, held-out documents or
  windows) are left out of a metric's series: their values are not comparable.

Held-out BPB counts per capability (`bpb/<capability>`, what the reports
compare); the per-task figures behind it, bootstrap intervals and the
forgetting figure (web BPB minus a constant) are left out: the first repeat
a capability's figure where it has one task, the others are not metrics of
their own.
"""
import glob
import json
import os
import re

from midtrain_jax.evals import signal_noise, suite

IN_TRAINING = "in_training/"
_SAVED = re.compile(r"step_(\d+)\.json")
_OLMES = re.compile(r"olmes_step_(\d+)\.json")


def _is_metric(tag: str) -> bool:
  return not ("ci95" in tag or "/forgetting/" in tag or "/heldout_bpb/" in tag)


def in_training(workdir: str) -> dict[str, dict[int, float]]:
  """The `eval/...` scalars of the run's own TensorBoard events, as `in_training/...`."""
  if not glob.glob(os.path.join(workdir, "events.out.tfevents*")):
    return {}
  # Imported here: reading events is the only use, and commands that never
  # read a history should not pay for tensorboard's import.
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  acc = event_accumulator.EventAccumulator(workdir, size_guidance={"tensors": 0, "scalars": 0})
  acc.Reload()
  out = {}
  tags = acc.Tags()
  for tag in tags.get("tensors", []):
    if tag.startswith("eval/") and _is_metric(tag):
      out[IN_TRAINING + tag.removeprefix("eval/")] = {
          e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
  for tag in tags.get("scalars", []):
    if tag.startswith("eval/") and _is_metric(tag):
      out[IN_TRAINING + tag.removeprefix("eval/")] = {e.step: float(e.value)
                                                      for e in acc.Scalars(tag)}
  return out


def scope(results: dict) -> dict[str, object]:
  """What each metric of a saved evaluation scored; equal scopes make values comparable.

  Args:
    results: one checkpoint's saved evaluation (`suite.evaluate`).

  Returns:
    {metric (as `suite.scalars` names it): a comparable description of the
    documents, windows or items behind it}.
  """
  where = (results.get("eval_mixture"), json.dumps(results.get("heldout_windows"),
                                                   sort_keys=True))
  out = {}
  heldout = results.get("heldout", {})
  for task, r in heldout.items():
    out[f"eval/heldout_bpb/{task}"] = (*where, r.get("bytes"))
  for cap in results.get("capability_bpb", {}):
    out[f"eval/bpb/{cap}"] = (*where, tuple(sorted(
        (t, r.get("bytes")) for t, r in heldout.items() if r.get("capability") == cap)))
  for name, r in results.get("benchmark_bpb", {}).items():
    out[f"eval/benchmark_bpb/{name}"] = tuple(sorted(r.get("per_item", {}))) or r.get("n_items")
  for name, r in results.get("generative", {}).items():
    out[f"eval/{name}/{r['metric']}"] = tuple(sorted(r.get("per_item", {}))) or r.get("n_items")
  return out


def _steps(workdir: str, pattern: re.Pattern) -> dict[int, str]:
  paths = glob.glob(os.path.join(workdir, "eval", "*.json"))
  found = {int(m.group(1)): p for p in paths if (m := pattern.fullmatch(os.path.basename(p)))}
  return dict(sorted(found.items()))


def _read(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def saved(workdir: str) -> dict[str, dict[int, float]]:
  """The run's saved evaluations, each metric over the checkpoints scored like the latest."""
  evaluations = {step: _read(path) for step, path in _steps(workdir, _SAVED).items()}
  out = {}
  latest_scope = {}
  for step in sorted(evaluations, reverse=True):  # Latest first: its scope is the reference.
    results = evaluations[step]
    scopes = scope(results)
    for metric, value in suite.scalars(results).items():
      if not _is_metric(metric):
        continue
      latest_scope.setdefault(metric, scopes.get(metric))
      if scopes.get(metric) == latest_scope[metric]:
        out.setdefault(metric, {})[step] = value
  return out


def saved_olmes(workdir: str) -> dict[str, dict[int, float]]:
  """OLMES task metrics of `eval/olmes_step_<N>.json`, over checkpoints scored on the
  same documents as the latest."""
  out, reference = {}, {}
  for step, path in sorted(_steps(workdir, _OLMES).items(), reverse=True):
    for task, r in _read(path)["tasks"].items():
      items = tuple(sorted(r.get("per_item", {})))
      if reference.setdefault(task, items) != items:
        continue
      for metric, value in {**r.get("metrics", {}), "bpb": r.get("bpb")}.items():
        if value is not None:
          out.setdefault(f"olmes/{task}/{metric}", {})[step] = float(value)
  return out


def run_history(workdir: str) -> dict[str, dict[int, float]]:
  """Every metric of a run at every checkpoint it was evaluated at (see the module doc)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{workdir}: not a run directory.")
  return {**in_training(workdir), **saved(workdir), **saved_olmes(workdir)}


def run_names(workdirs: list[str]) -> dict[str, str]:
  """{name: workdir}: each run named by its folder, by its path where two folders share a name."""
  bases = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  return {(b if bases.count(b) == 1 else w): w for b, w in zip(bases, workdirs)}


def compare_runs(workdirs: dict[str, str], k: int) -> list[signal_noise.MetricSNR]:
  """The SNR table (`signal_noise.snr_table`) of named runs, from their histories."""
  return signal_noise.snr_table({name: run_history(w) for name, w in workdirs.items()}, k)
