"""Proximity of data sources to a target, against the general data (both measures).

Command line: `python -m midtrain_jax.proximity` (midtrain_jax/proximity.py).
The measures are defined in evals/proximity_measures.py; here the exposure runs of the
loss gap are trained (one run folder per source under `workdir`, reused on
re-run) and both measures are reported per source, with the general data as
the reference and the advantage over it.
"""
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.evals import heldout, scoring, tables
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import probe, study_runs, training

GENERAL = "general"
MEASURES = proximity.MEASURES


def general_weights(tasks: list[str], mixture: str) -> dict[str, float]:
  """The general data: `tasks` in the proportions `mixture` gives them (equal if absent)."""
  if not tasks:
    raise ValueError("The general data needs at least one task.")
  catalog.check_tasks(tasks, "general")
  rates = catalog.get_mixture(mixture).rates
  raw = {t: rates.get(t, 0.0) for t in tasks}
  if not all(raw.values()):
    raw = dict.fromkeys(tasks, 1.0)
  total = sum(raw.values())
  return {t: v / total for t, v in raw.items()}


def target_data_config(base: str, target: str, mixture: str):
  """Where the target's held-out split is read: `mixture` when it holds the target,
  else the probe's chat data (workflows/probe.py)."""
  if target in catalog.get_mixture(mixture).rates:
    return None
  return probe.target_data_config(base, target)


def exposure_config(base_path: str, weights: dict[str, float], mixture: str,
                    options: proximity.ProximityOptions) -> ml_collections.ConfigDict:
  """`options.steps` steps on `weights` from the base at the constant LR `options.lr`.

  The model, data layout and batch come from the base run; the optimiser
  starts with fresh moments (a short exposure, not a continuation).
  """
  base, step = checkpoint.resolve_base(base_path)
  c = base.config(step)
  c.workflow = "train"
  c.data.update(mixture=mixture, weights=dict(weights), weight_stages=())
  c.optim.update(schedule="constant", lr=options.lr, warmup_steps=0, warmup_fraction=0.0,
                 anneal_start="config")
  c.train.update(steps=options.steps, init_from=os.path.abspath(f"{base.directory}/{step}"),
                 init_optimizer=False, log_every_steps=max(1, options.steps // 2))
  c.ckpt.update(every_steps=options.steps, keep=1, async_save=False)
  # Scored after the run on the target alone, not in the loop.
  c.eval.update(batches=0, every_steps=0, downstream=(), mixture="")
  return config_lib.finalize(c)


def target_loss(path: str, data_cfg, target: str, options: proximity.ProximityOptions,
                stride: int = 0) -> float:
  """The target's held-out loss per token of the checkpoint at `path`."""
  eval_fn = scoring.model_eval_fn(scoring.load_model(path))
  return proximity.task_loss(eval_fn, data_cfg, target, max_batches=options.max_batches,
                             stride=stride)


def measure(base: str, sources: dict[str, dict[str, float]], target: str,
            general: dict[str, float], workdir: str, *, mixture: str = "dolmino_demo",
            options: proximity.ProximityOptions = proximity.ProximityOptions(),
            target_data=None, log=print) -> dict:
  """Both measures for every source and the general data; writes workdir/proximity.json.

  Args:
    base: the base checkpoint (workdir or step directory).
    sources: {name: {task: weight}} (names are folder names).
    target: the target task (its held-out split is the target distribution).
    general: the general data's {task: weight}.
    workdir: one exposure run per source (and `general`), plus the JSON.
    mixture: a registered mixture holding every task named.
    options: the measures' settings.
    target_data: the `data` section holding the target (prepared; default:
      the sources' own, `mixture`).
    log: progress printer.

  Returns:
    {target, base, target_loss_before, general: {...}, sources: {name:
    {weights, js_unigram, js_bigram, loss_gap, target_loss_after,
    advantage/<measure>}}}.
  """
  proximity.check_options(options)
  catalog.check_tasks([target], "target")
  if GENERAL in sources:
    raise ValueError(f"{GENERAL!r} names the reference; call the source otherwise.")
  everything = {GENERAL: general, **sources}
  if target_data is None:
    target_data = target_data_config(base, target, mixture)
  configs = {name: exposure_config(base, w, mixture, options) for name, w in everything.items()}
  training.prepare_data(configs[GENERAL])
  data_cfg = heldout.eval_data_config(configs[GENERAL])
  target_cfg = data_cfg if target_data is None else target_data
  vocab = configs[GENERAL].model.vocab_size
  stride = configs[GENERAL].eval.heldout_stride
  log(f"[proximity] target {target}: token distributions and base loss")
  target_dist = proximity.source_distributions(target_cfg, {target: 1.0}, vocab, options,
                                               split="heldout")
  before = target_loss(base, target_cfg, target, options, stride)
  measured = {}
  for name, weights in everything.items():
    row = {"weights": weights,
           **proximity.distances(proximity.source_distributions(data_cfg, weights, vocab,
                                                                options), target_dist)}
    run_dir = os.path.join(workdir, name)
    config = configs[name]
    after = study_runs.train_or_reuse(
        name, config, run_dir,
        lambda d=run_dir, c=config: {"target": target, "target_loss": target_loss(
            study_runs.final_checkpoint(d, c), target_cfg, target, options, stride)},
        log=log, tag="proximity", fits=lambda saved: saved.get("target") == target)["target_loss"]
    row.update(target_loss_after=after, loss_gap=after - before)
    measured[name] = row
  for name in sources:
    measured[name].update(proximity.advantages(measured[name], measured[GENERAL]))
  result = {"target": target, "base": base, "target_loss_before": before,
            "options": {k: getattr(options, k) for k in proximity.SETTINGS.entries},
            GENERAL: measured[GENERAL], "sources": {n: measured[n] for n in sources}}
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, "proximity.json"), result)
  return result


def format_table(result: dict) -> str:
  """One row per source and the general reference: each measure and its advantage."""
  rows = [{"run": GENERAL, **{k: result[GENERAL][k] for k in MEASURES},
           **{f"adv/{k}": 0.0 for k in MEASURES}}]
  for name, r in result["sources"].items():
    rows.append({"run": name, **{k: r[k] for k in MEASURES},
                 **{f"adv/{k}": r[f"advantage/{k}"] for k in MEASURES}})
  return (f"Proximity to {result['target']} (JS divergence in bits, lower = closer; "
          f"loss_gap = target loss per token after {result['options']['steps']} steps on "
          f"the source minus before, nats, lower = closer; adv = general minus source, "
          f"positive = closer than the general data):\n"
          + tables.format_table(rows, [*MEASURES, *(f"adv/{k}" for k in MEASURES)]))
