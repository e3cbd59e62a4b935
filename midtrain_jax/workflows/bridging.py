"""Midtraining as distributional bridging: midtraining vs continued pretraining, one base.

Command line: `python -m midtrain_jax.bridging_study` (midtrain_jax/bridging_study.py).

From one base checkpoint, at equal tokens (same steps x batch x seq_len, the
same linear LR decay to zero from the LR the base had there):
  midtrain   (a) general + specialised data, `mix_weight` specialised;
  continued  (b) continued pretraining on the specialised data alone;
  general    (c) the general data only;
and the timing x weight grid: general data until `start` x steps, then
`weight` specialised (`data.weight_stages`). The specialised tasks share
their part equally; the general tasks keep the proportions the mixture gives
them. Every run, and the base itself, is then probed the same way on the
target (workflows/probe.py: the SFT stage on a chat task). Reported per run:
the target metric after the probe (the chat target's held-out response BPB,
lower = better, and its benchmark when it has one), forgetting (BPB of the
general data's held-out splits after the run minus the base's, positive =
forgot) and the proximity of its training data to the target
(evals/proximity_measures.py: advantage over the general data, positive = closer).
Finished runs, probes and exposure runs are reused; one JSON holds it all.
"""
import dataclasses
import os
import time

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files, settings
from midtrain_jax.evals import heldout, scoring
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import bridging_tables, probe, proximity_study, study_runs, training

MIDTRAIN, CONTINUED, GENERAL = "midtrain", "continued", "general"
RESULTS = "bridging.json"


@dataclasses.dataclass(frozen=True)
class StudyOptions:
  """The study's settings (the command's flags of the same names)."""
  tokens: int = settings.field(245_760, "Training tokens of every run (rounded to whole "
                               "steps of the base's batch).", check=settings.POSITIVE)
  mix_weight: float = settings.field(0.3, "Specialised share of the midtraining mix (a).",
                                     check=settings.between(0, 1, low_open=True))
  timings: tuple = settings.field((0.0, 0.5), "Grid: where the specialised data comes in, "
                                  "as fractions of the run in [0, 1).")
  weights: tuple = settings.field((0.3, 0.7), "Grid: its share from then on, in (0, 1].")
  probe_steps: int = settings.field(40, "Steps of the probe on the target from every run.",
                                    check=settings.POSITIVE)
  probe_lr: float = settings.field(1e-3, "LR of the probe (constant, then linear to 0 "
                                   "over its last 30%).", check=settings.POSITIVE)
  probe_benchmark_items: int = settings.field(16, "Items of the target's benchmark scored "
                                              "after each probe (0: none).",
                                              check=settings.NON_NEGATIVE)
  max_batches: int = settings.field(8, "Held-out batches per task scored (0 = all).",
                                    check=settings.NON_NEGATIVE)
  mixture: str = settings.field("dolmino_demo", "A mixture holding every task named.")


SETTINGS = settings.Section(settings.dataclass_settings(StudyOptions),
                            help="the bridging study (workflows/bridging.py).")


def check_options(options: StudyOptions) -> None:
  """Fails naming the option whose value is impossible."""
  settings.validate(SETTINGS, dataclasses.asdict(options), "bridging")
  for start in options.timings:
    if not 0.0 <= start < 1.0:
      raise ValueError(f"bridging.timings: {start} must be in [0, 1).")
  for weight in options.weights:
    if not 0.0 < weight <= 1.0:
      raise ValueError(f"bridging.weights: {weight} must be in (0, 1].")


def mix(general: dict, specialised: dict, weight: float) -> dict[str, float]:
  """`weight` of the specialised data, the rest general (each in its own proportions)."""
  out = {t: (1.0 - weight) * w for t, w in general.items() if weight < 1.0}
  out.update({t: weight * w for t, w in specialised.items()})
  return out


def run_stages(general: dict, specialised: dict, steps: int,
               options: StudyOptions) -> tuple[dict[str, tuple], list[dict]]:
  """The runs and the grid.

  Returns:
    ({run name: data.weight_stages}: (a), (b), (c), then the grid cells not
    among them; [{start, weight, run}]: each grid cell and the run it is).
  """
  runs = {MIDTRAIN: ((0, mix(general, specialised, options.mix_weight)),),
          CONTINUED: ((0, dict(specialised)),),
          GENERAL: ((0, dict(general)),)}
  cells = []
  for start in options.timings:
    for weight in options.weights:
      start_step = int(round(start * steps))
      late = mix(general, specialised, weight)
      stages = ((0, late),) if start_step == 0 else ((0, dict(general)), (start_step, late))
      same = [name for name, s in runs.items() if s == stages]
      name = same[0] if same else grid_name(start, weight)
      runs[name] = stages
      cells.append({"start": start, "weight": weight, "run": name})
  return runs, cells


def grid_name(start: float, weight: float) -> str:
  return f"start{start:g}_w{weight:g}"


def run_config(base_path: str, stages: tuple, steps: int,
               mixture: str) -> ml_collections.ConfigDict:
  """A run from the base on `stages`: the base's model, data layout and batch, its LR at
  that checkpoint decaying linearly to zero, its optimiser state."""
  base, step = checkpoint.resolve_base(base_path)
  c = base.config(step)
  c.workflow = "train"
  c.data.update(mixture=mixture, weights={}, weight_stages=tuple(stages))
  c.optim.update(schedule="anneal", anneal_start="from_checkpoint", warmup_steps=0,
                 warmup_fraction=0.0)
  c.train.update(steps=steps, init_from=os.path.abspath(f"{base.directory}/{step}"),
                 init_optimizer=True, log_every_steps=max(1, min(25, steps // 4)))
  c.ckpt.update(every_steps=steps, keep=1, async_save=False)
  # Scored once after the run (general and target held-out), not in the loop.
  c.eval.update(batches=0, every_steps=0, downstream=(), mixture="")
  return config_lib.finalize(c)


def _heldout(path: str, data_cfg, tasks: list[str], options: StudyOptions) -> dict:
  """{task: {bpb, loss, bytes, tokens}} of the checkpoint at `path` on `data_cfg`."""
  eval_fn = scoring.model_eval_fn(scoring.load_model(path))
  scored = heldout.heldout_bpb(eval_fn, data_cfg, max_batches=options.max_batches, tasks=tasks)
  return {task: {"bpb": r["bpb"], "loss": r["loss"], "bytes": r["bytes"],
                 "tokens": r["tokens"]} for task, r in scored.items()}


def _evaluate(path: str, data: dict, general: dict, target: str,
              options: StudyOptions) -> dict:
  """The general data's held-out BPB and the target's (before any probe) of a checkpoint."""
  return {"heldout": _heldout(path, data["runs"], list(general), options), "target": target,
          "target_before_probe": _heldout(path, data["target"], [target], options)[target]}


def _probe(init: str, target: str, workdir: str, options: StudyOptions, log) -> dict:
  return probe.probe_or_reuse(init, target, workdir, steps=options.probe_steps,
                              lr=options.probe_lr,
                              benchmark_items=options.probe_benchmark_items, log=log)


def _train_and_probe(configs: dict, stages: dict, target: str, workdir: str, data: dict,
                     options: StudyOptions, log) -> dict:
  """Every run trained (or reused), scored on held-out data and probed."""
  general = configs[GENERAL].data.weight_stages[0][1]
  results = {}
  for i, (name, config) in enumerate(configs.items()):
    log(f"[bridging] run {i + 1}/{len(configs)}: {name}")
    run_dir = os.path.join(workdir, name)
    evaluated = study_runs.train_or_reuse(
        name, config, run_dir, lambda d=run_dir, c=config: _evaluate(
            study_runs.final_checkpoint(d, c), data, general, target, options),
        log=log, tag="bridging", fits=lambda saved: saved.get("target") == target)
    results[name] = {**evaluated, "stages": stages[name],
                     "probe": _probe(study_runs.final_checkpoint(run_dir, config), target,
                                     os.path.join(workdir, "probes", target, name), options, log)}
  return results


def run(base: str, target: str, general_tasks: list[str], specialised_tasks: list[str],
        workdir: str, *, options: StudyOptions = StudyOptions(),
        prox_options: proximity.ProximityOptions = proximity.ProximityOptions(),
        log=print) -> dict:
  """Runs (or reuses) every run, probe and exposure run; writes workdir/bridging.json.

  Args:
    base: the base checkpoint (workdir or step directory).
    target: the target task (probed on, and the proximity's target).
    general_tasks: the general pretraining data's tasks.
    specialised_tasks: the specialised data's tasks.
    workdir: one folder per run, probes/<target>/<run>, proximity/<source>, and the
      results (bridging.json, bridging.txt).
    options: the study's settings.
    prox_options: the proximity measures' settings.
    log: progress printer.

  Returns:
    The results written to bridging.json: the runs' own results, the
    proximity measures, `rows` and `grid` (workflows/bridging_tables.py).
  """
  started = time.time()
  check_options(options)
  probe.check_target(target)
  general, specialised = _data(general_tasks, specialised_tasks, options)
  c0 = run_config(base, ((0, general),), 1, options.mixture)
  steps = max(1, round(options.tokens / (c0.data.batch_size * c0.data.seq_len)))
  stages, cells = run_stages(general, specialised, steps, options)
  configs = {n: run_config(base, s, steps, options.mixture) for n, s in stages.items()}
  tokens = steps * c0.data.batch_size * c0.data.seq_len
  log(f"[bridging] {len(configs)} runs of {steps} steps ({tokens:,} tokens) from {base}, "
      f"each probed on {target}")
  training.prepare_data(configs[GENERAL])
  data = {"runs": heldout.eval_data_config(configs[GENERAL]),
          "target": probe.target_data_config(base, target)}
  results = {"base": {**_evaluate(base, data, general, target, options),
                      "probe": _probe(base, target, os.path.join(workdir, "probes", target, "base"),
                                      options, log)}}
  results.update(_train_and_probe(configs, stages, target, workdir, data, options, log))
  log("[bridging] proximity of each source to the target")
  sources = {proximity.source_name(specialised): specialised,
             MIDTRAIN: dict(stages[MIDTRAIN][-1][1])}
  sources.update({t: {t: 1.0} for t in specialised if len(specialised) > 1})
  prox = proximity_study.measure(base, sources, target, general,
                                 os.path.join(workdir, "proximity"),
                                 mixture=options.mixture, options=prox_options,
                                 target_data=data["target"], log=log)
  out = {"base": base, "target": target, "general": general, "specialised": specialised,
         "steps": steps, "tokens": tokens, "options": dataclasses.asdict(options),
         "proximity": prox, "runs": results, "grid_cells": cells}
  out["rows"] = bridging_tables.rows(out)
  out["grid"] = bridging_tables.grid(out)
  out["wall_s"] = time.time() - started
  files.write_json(os.path.join(workdir, RESULTS), out)
  text = bridging_tables.format_report(out)
  files.write_text(os.path.join(workdir, "bridging.txt"), text + "\n")
  log(text)
  return out


def _data(general_tasks, specialised_tasks, options) -> tuple[dict, dict]:
  """The general data ({task: share}, the mixture's proportions) and the specialised
  data (equal shares), checked."""
  general = proximity_study.general_weights(general_tasks, options.mixture)
  if not specialised_tasks:
    raise ValueError("--specialised needs at least one task.")
  specialised = proximity.parse_source("+".join(specialised_tasks))
  both = sorted(set(general) & set(specialised))
  if both:
    raise ValueError(f"Task(s) {both} are both general and specialised.")
  return general, specialised
