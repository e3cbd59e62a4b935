"""Loading and plotting helpers for the analysis notebooks.

The notebooks under `notebooks/` only call these, so a change in how runs
are written is fixed here once. pandas and matplotlib are imported lazily
(they are in the `notebooks` extra, not the core install).
"""
import glob
import json
import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.evals import suite
from midtrain_jax.train import optim


def _pd():
  import pandas
  return pandas


def _plt():
  import matplotlib
  matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
  import matplotlib.pyplot as plt
  return plt


def load_scalars(logdir: str):
  """Every scalar of the TensorBoard event files in `logdir` (not sub-folders).

  Args:
    logdir: a run's workdir (training scalars) or `workdir/eval`.

  Returns:
    A DataFrame with columns step, tag, value, sorted by tag and step.
  """
  if not glob.glob(os.path.join(logdir, "events.out.tfevents*")):
    raise FileNotFoundError(f"No TensorBoard event files in {logdir}.")
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0, "scalars": 0})
  acc.Reload()
  rows = []
  for tag in acc.Tags()["tensors"]:
    for event in acc.Tensors(tag):
      rows.append((event.step, tag, float(tensor_util.make_ndarray(event.tensor_proto))))
  for tag in acc.Tags()["scalars"]:
    rows.extend((e.step, tag, float(e.value)) for e in acc.Scalars(tag))
  frame = _pd().DataFrame(rows, columns=["step", "tag", "value"])
  return frame.sort_values(["tag", "step"]).reset_index(drop=True)


def plot_training_curves(workdir: str, tags=("loss", "lr"), task_tokens: bool = True):
  """Loss, LR (and per-task tokens seen) of one run against the step.

  Returns:
    The matplotlib Figure.
  """
  frame = load_scalars(workdir)
  panels = list(tags) + (["tokens/*"] if task_tokens else [])
  plt = _plt()
  fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
  for ax, tag in zip(axes[0], panels):
    chosen = frame[frame.tag.str.startswith("tokens/")] if tag == "tokens/*" else \
        frame[frame.tag == tag]
    for name, group in chosen.groupby("tag"):
      ax.plot(group.step, group.value, label=name.removeprefix("tokens/"))
    ax.set_title("tokens seen per task" if tag == "tokens/*" else tag)
    ax.set_xlabel("step")
    if tag == "tokens/*" and len(chosen):
      ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def load_microanneal(path: str):
  """The rows of a microanneal table (`microanneal.json` or its folder) as a DataFrame."""
  if os.path.isdir(path):
    path = os.path.join(path, "microanneal.json")
  with open(path) as f:
    return _pd().DataFrame(json.load(f)["rows"]).set_index("run")


def plot_microanneal(rows):
  """Bar charts: BPB change per capability for each candidate, and forgetting.

  Args:
    rows: `load_microanneal` output.

  Returns:
    The matplotlib Figure.
  """
  plt = _plt()
  deltas = rows[[c for c in rows.columns if c.startswith("delta/") and c != "delta/target"]]
  deltas = deltas.drop(index="baseline", errors="ignore")
  deltas.columns = [c.removeprefix("delta/") for c in deltas.columns]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5),
                                 gridspec_kw={"width_ratios": [3, 1]})
  deltas.plot.bar(ax=ax1, rot=20)
  ax1.legend(title="capability", bbox_to_anchor=(1.0, 1.0), loc="upper left", fontsize=8)
  ax1.axhline(0, color="black", lw=0.8)
  ax1.set_ylabel("BPB change vs web-only")
  ax1.set_title("microanneal effect per capability")
  forgetting = rows["forgetting"] if "forgetting" in rows else None
  if forgetting is not None:
    forgetting.plot.bar(ax=ax2, color="tab:red", rot=60)
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_title("forgetting (web BPB vs base)")
  fig.tight_layout()
  return fig


def decontamination_frame(data_dir: str):
  """Per-task decontamination counts of a prepared data folder as a DataFrame."""
  rows = layout.decontamination_summary(data_dir)
  frame = _pd().DataFrame(rows).set_index("task")
  frame["hits"] = frame["hits"].apply(lambda h: sum(h.values()))
  return frame


def benchmark_frame(root: str):
  """Benchmark scores of every evaluated run under `root`, with intervals and the split.

  Args:
    root: a folder of run directories (each with `eval/step_<N>.json`).

  Returns:
    A DataFrame indexed by (run, benchmark): metric, value, ci95, n_items,
    subsets, contamination status and the clean / contaminated values and
    item counts (NaN where the record is unknown).
  """
  rows = []
  for workdir in sorted(glob.glob(os.path.join(root, "*"))):
    saved = suite.read_results(workdir) if os.path.isdir(workdir) else None
    if saved is None:
      continue
    scored = [("bpb", n, r, r["bpb"]) for n, r in saved.get("benchmark_bpb", {}).items()]
    scored += [(r["metric"], n, r, r["score"]) for n, r in saved.get("generative", {}).items()]
    for metric, name, r, value in scored:
      clean, dirty = r.get("clean", {}), r.get("contaminated", {})
      rows.append({"run": os.path.basename(workdir), "benchmark": name, "metric": metric,
                   "value": value, "ci95": r.get("ci95"), "n_items": r.get("n_items"),
                   "subsets": r.get("subsets"),
                   "contamination": r.get("contamination", {}).get("status", "unknown"),
                   "clean": clean.get("value"), "clean_items": clean.get("n_items"),
                   "contaminated": dirty.get("value"), "contaminated_items": dirty.get("n_items")})
  if not rows:
    raise FileNotFoundError(f"No evaluated runs (eval/step_<N>.json) under {root}.")
  return _pd().DataFrame(rows).set_index(["run", "benchmark"])


def lr_curves(configs: dict, steps: int | None = None):
  """LR per step of each named config's schedule (from the code the runs use).

  Args:
    configs: {name: config} (e.g. `configs/schedule_study.py` variants).
    steps: points to evaluate (default each config's train.steps).

  Returns:
    A DataFrame indexed by step with one column per name.
  """
  out = {}
  for name, config in configs.items():
    n = steps or config.train.steps
    schedule = optim.make_schedule(config.optim, config.train.steps)
    own = config.train.steps
    out[name] = [float(schedule(s)) if s < own else np.nan for s in range(n)]
  return _pd().DataFrame(out)


def lr_curves_of_runs(root: str):
  """LR per step of every run under `root`, from each run's config.json."""
  configs = {}
  for path in sorted(glob.glob(os.path.join(root, "*", "config.json"))):
    with open(path) as f:
      configs[os.path.basename(os.path.dirname(path))] = config_lib.from_json(f.read())
  if not configs:
    raise FileNotFoundError(f"No runs (folders with config.json) under {root}.")
  return lr_curves(configs, steps=max(c.train.steps for c in configs.values()))


def load_runs(root: str):
  """Final held-out results of every run under `root` (one folder per run).

  Returns:
    A DataFrame indexed by run name, with the run's optimiser schedule, weight
    stages and per-capability BPB of its last evaluation (`workdir/eval/`
    JSON files, or the held-out TensorBoard scalars written during training).
  """
  rows = []
  for workdir in sorted(glob.glob(os.path.join(root, "*"))):
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
      continue
    with open(config_path) as f:
      config = config_lib.from_json(f.read())
    row = {"run": os.path.basename(workdir), "schedule": config.optim.schedule,
           "final_lr_fraction": config.optim.final_lr_fraction,
           "weight_stages": json.dumps(config.data.weight_stages)}
    row.update(_final_bpb(workdir))
    rows.append(row)
  if not rows:
    raise FileNotFoundError(f"No runs (folders with config.json) under {root}.")
  return _pd().DataFrame(rows).set_index("run")


def _final_bpb(workdir: str) -> dict:
  saved = suite.read_results(workdir)
  if saved is not None:
    return {f"bpb/{c}": v for c, v in saved.get("capability_bpb", {}).items()}
  frame = load_scalars(workdir)
  frame = frame[frame.tag.str.startswith("eval/bpb/")]
  last = frame[frame.step == frame.step.max()]
  return {"bpb/" + t.removeprefix("eval/bpb/"): v for t, v in zip(last.tag, last.value)}


def timing_weight_grid(runs, capability: str = "math"):
  """Pivot of a capability's final BPB by (introduction step, target weight).

  Args:
    runs: `load_runs` output of `configs/timing_weight.py` runs.
    capability: which BPB column to pivot.

  Returns:
    A DataFrame: rows = step the target data starts, columns = its weight.
  """
  starts, weights = [], []
  for stages in runs["weight_stages"]:
    last_start, last_weights = json.loads(stages)[-1]
    web = sum(w for name, w in last_weights.items() if name.startswith("web_"))
    starts.append(last_start)
    weights.append(round(1.0 - web, 3))
  frame = runs.assign(start=starts, weight=weights)
  return frame.pivot_table(index="start", columns="weight", values=f"bpb/{capability}")


def plot_heatmap(grid, title: str, ylabel: str = "introduced at step", label: str = "BPB"):
  """A labelled heat map of a `timing_weight_grid` pivot; returns the Figure."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(4.5, 3.5))
  image = ax.imshow(np.asarray(grid, float), cmap="viridis_r", aspect="auto")
  ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
  ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
  ax.set_xlabel("target weight")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  fig.colorbar(image, ax=ax, label=label)
  fig.tight_layout()
  return fig


def load_bridging(workdir: str):
  """The bridging study's results (`workdir/bridging.json`, python -m
  midtrain_jax.bridging_study).

  Returns:
    (the results dict, its table as a DataFrame indexed by run, its timing x
    weight cells as a DataFrame).
  """
  with open(os.path.join(workdir, "bridging.json"), encoding="utf-8") as f:
    out = json.load(f)
  pd = _pd()
  return out, pd.DataFrame(out["rows"]).set_index("run"), pd.DataFrame(out["grid"])


def bridging_grid(cells, metric: str = "target_bpb"):
  """Pivot of a grid metric: rows = where the specialised data comes in (fraction of
  the run), columns = its weight."""
  return cells.pivot_table(index="start", columns="weight", values=metric)
