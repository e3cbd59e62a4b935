"""Which benchmark items a checkpoint's training data held: the clean / contaminated split.

`prepare` records, per task, the benchmark items its decontaminator found in
the training documents (`decontam.items` in the task's stats.json and the
manifest) and what it did with them (`decontam.mode`). An item counts as
contaminated for a checkpoint when it was found in a task the checkpoint was
trained on (its config's `data` section, and that of every base it was
initialised from) whose mode kept the documents ("keep"); items found where
the mode dropped or cut them are counted as removed, and scored as clean.

The record is only as good as what was prepared: a benchmark is "unknown"
(never assumed clean) when a task was not checked against it, when a folder
prepared before item-level records found hits without saying which, when the
prepared folder is gone, or when the weights came from outside (an imported
model, whose pretraining data nobody recorded here). The split is computed on
the items the evaluation scored, so it has the sample's size.
"""
import dataclasses
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.evals import stats
from midtrain_jax.train import checkpoint

# Bases followed through `train.init_from`; deeper chains are reported as unknown.
_MAX_DEPTH = 8


@dataclasses.dataclass
class TrainingRecord:
  """What a checkpoint's prepared training data says about benchmark items.

  Attributes:
    data_dirs: the prepared folders read.
    unknown: why the whole lineage's record is incomplete ("" if it is not).
    checked: benchmarks every task of the lineage was checked against.
    in_training: {benchmark: item ids found in documents that were kept}.
    removed: {benchmark: item ids found in documents dropped or cut}.
    gaps: {benchmark: why its record is incomplete}.
  """
  data_dirs: list[str] = dataclasses.field(default_factory=list)
  unknown: str = ""
  checked: set[str] = dataclasses.field(default_factory=set)
  in_training: dict[str, set[str]] = dataclasses.field(default_factory=dict)
  removed: dict[str, set[str]] = dataclasses.field(default_factory=dict)
  gaps: dict[str, str] = dataclasses.field(default_factory=dict)

  def status(self, benchmark: str) -> str:
    """Why `benchmark` has no usable record, or "" when it has one."""
    if self.unknown:
      return self.unknown
    if benchmark in self.gaps:
      return self.gaps[benchmark]
    if benchmark not in self.checked:
      return f"the training data was not checked against {benchmark}"
    return ""


def _lineage(config, path: str, depth: int = 0) -> tuple[list, list[str]]:
  """(data sections the weights were trained on, why part of the lineage is unknown)."""
  if depth > _MAX_DEPTH:
    return [], [f"more than {_MAX_DEPTH} bases above {path}"]
  meta = {}
  if path:
    try:
      ckpt, step = checkpoint.resolve_base(path)
      meta = ckpt.meta(step)
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
      if config is None:
        return [], [f"no training config (checkpoint {path} cannot be read: {e})"]
    if meta.get("imported_from"):
      return [], [f"{path} holds weights imported from {meta['imported_from']}, whose "
                  "training data is not recorded here"]
    if meta.get("soup_of"):
      sections, unknown = [], []
      for source in meta["soup_of"]:
        s, u = _lineage(None, source, depth + 1)
        sections, unknown = sections + s, unknown + u
      return sections, unknown
  if "config" in meta:
    config = config_lib.from_json(meta["config"])
  if config is None:
    return [], ["no training config"]
  sections, unknown = [config.data], []
  if config.train.init_from:
    s, u = _lineage(None, config.train.init_from, depth + 1)
    sections, unknown = sections + s, unknown + u
  return sections, unknown


def _task_records(data_cfg) -> tuple[str, dict[str, dict] | str]:
  """(prepared folder, {task: its decontamination record}) or the folder and why not."""
  try:
    tasks = list(catalog.get_mixture(data_cfg.mixture).rates)
    data_dir = str(layout.resolve_dir(data_cfg))
  except (ValueError, KeyError, OSError) as e:
    return "", f"mixture {data_cfg.mixture!r} cannot be resolved ({e})"
  if layout.read_manifest(data_dir) is None:
    return data_dir, f"no prepared data in {data_dir}"
  records = {}
  for task in tasks:
    try:
      records[task] = layout.decontamination(layout.read_stats(data_dir, task))
    except FileNotFoundError as e:
      return data_dir, str(e)
  return data_dir, records


def training_record(config: ml_collections.ConfigDict | None, path: str = "",
                    names=benchmarks.EVAL_SUITE) -> TrainingRecord:
  """Reads the contamination record of a checkpoint's training data.

  Args:
    config: the checkpoint's config (its `data` section names the mixture and
      the prepared folder, `layout.resolve_dir`); None when unknown.
    path: the checkpoint (its saved metadata tells imports and soups apart,
      and its config wins over `config`); "" to read `config` alone.
    names: the benchmarks to report on.

  Returns:
    The record; benchmarks it cannot vouch for say why (`status`).
  """
  sections, unknown = _lineage(config, path)
  record = TrainingRecord(unknown="; ".join(unknown), checked=set(names))
  for data_cfg in sections:
    data_dir, tasks = _task_records(data_cfg)
    if data_dir and data_dir not in record.data_dirs:
      record.data_dirs.append(data_dir)
    if isinstance(tasks, str):
      record.unknown = "; ".join(filter(None, [record.unknown, tasks]))
      continue
    for task, entry in tasks.items():
      _add_task(record, task, entry, data_dir, names)
  return record


def _add_task(record: TrainingRecord, task: str, entry: dict, data_dir: str, names) -> None:
  where = f"task {task} ({data_dir})"
  for name in names:
    if name not in entry["benchmarks"]:
      record.checked.discard(name)
      record.gaps.setdefault(name, f"{where} was not checked against {name}")
      continue
    if "items" in entry:
      found = entry["items"].get(name, [])
    elif entry["counts"].get(f"hits/{name}", 0):
      record.gaps.setdefault(name, f"{where} found {name} items without recording which "
                                   "(prepared before item records; prepare it again)")
      continue
    else:
      found = []  # Prepared before item records, but it found nothing.
    target = record.in_training if entry["mode"] == "keep" else record.removed
    target.setdefault(name, set()).update(found)


def annotate(result: dict, benchmark: str, record: TrainingRecord) -> dict:
  """Adds `contamination` and, where the record is usable, `clean` / `contaminated`.

  Args:
    result: one benchmark's result with `per_item` (benchmark BPB or generative).
    benchmark: its name.
    record: `training_record` of the checkpoint.

  Returns:
    `result`, updated in place: `contamination` is {status: "unknown", reason}
    or {status: "recorded", in_training, removed, contaminated_ids,
    data_dirs} (counts of the scored items, and the ids of those in the
    training data), and `clean` / `contaminated` are {value, n_items,
    subsets, ci95} of the scored items outside / inside the training data.
    Within one run the two differ also in which items they are; a paired
    comparison with a run trained without the leak isolates the leak
    (`tables.comparison_rows` splits its deltas the same way).
  """
  reason = record.status(benchmark)
  if reason:
    result["contamination"] = {"status": "unknown", "reason": reason}
    return result
  per_item = result["per_item"]
  inside = record.in_training.get(benchmark, set()) & set(per_item)
  removed = (record.removed.get(benchmark, set()) - inside) & set(per_item)
  subsets = {i: benchmarks.subset_of_id(benchmark, i) for i in per_item}
  result["clean"], result["contaminated"] = stats.split(per_item, inside, subsets)
  result["contamination"] = {"status": "recorded", "in_training": len(inside),
                             "removed": len(removed), "contaminated_ids": sorted(inside),
                             "data_dirs": [os.path.abspath(d) for d in record.data_dirs]}
  return result
