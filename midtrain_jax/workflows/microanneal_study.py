"""Microanneals: which candidate data source helps, and what does it cost?

Command line: `python -m midtrain_jax.microanneal` (midtrain_jax/microanneal.py).

Runs a web-only baseline and one `microanneal/<task>` anneal (50% task + 50%
web) per candidate, all branching off `--base` with the same token budget and
the same linear LR decay to zero (starting from the LR the base's schedule had
at that checkpoint). Each run is evaluated on the held-out splits of
`--eval_mixture`, on benchmark BPB and on the OLMES accuracy of the base
run's `eval.downstream` tasks (scored in the loop too); the table gives
per-capability BPB deltas against the baseline (negative = the candidate
helped), each run's accuracy beside them (marked AT CHANCE where its interval
holds the chance level) and forgetting (web BPB change against the base).
Finished runs and their evaluations are reused on re-run, so adding a
candidate only trains that one.

Each run also evaluates held-out BPB during training, at 2 x
`eval.noise_checkpoints` points spread over its steps: the spread of the last
`eval.noise_checkpoints` of them is each metric's noise, and a second table
ranks the metrics by signal-to-noise and marks the best run on a metric whose
margin is within noise (evals/signal_noise.py).
"""
import dataclasses
import math
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.evals import heldout, history, scoring, signal_noise, suite, tables
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import training

BASELINE = "baseline"


def anneal_config(base_path: str, mixture: str, tokens: int, *, eval_mixture: str,
                  seed: int = 0) -> ml_collections.ConfigDict:
  """A locked anneal config on `mixture` for `tokens` tokens from a base checkpoint.

  Args:
    base_path: base checkpoint (workdir or step directory).
    mixture: the registered mixture to anneal on.
    tokens: training tokens (rounded to whole steps of the base's batch).
    eval_mixture: mixture whose held-out splits are scored.
    seed: run seed (changes the data order, not the initialisation).

  Returns:
    The config; model, data layout and optimiser come from the base run.
  """
  catalog.get_mixture(mixture)
  base, step = checkpoint.resolve_base(base_path)
  c = base.config(step)  # Today's keys, with the base run's values.
  c.workflow = "train"
  c.seed = seed
  c.data.mixture = mixture
  c.data.shuffle_seed = seed
  c.eval.mixture = eval_mixture
  c.optim.update(schedule="anneal", anneal_start="from_checkpoint", warmup_steps=0)
  steps = max(1, round(tokens / (c.data.batch_size * c.data.seq_len)))
  c.train.update(steps=steps, init_from=os.path.abspath(f"{base.directory}/{step}"),
                 init_optimizer=True, log_every_steps=max(1, min(10, steps // 4)))
  c.ckpt.update(every_steps=steps, keep=1, async_save=False)
  # Evaluations over the second half of the anneal: the last noise_checkpoints of
  # them give each metric's checkpoint-to-checkpoint noise.
  evaluations = 2 * (c.eval.noise_checkpoints or signal_noise.MIN_CHECKPOINTS)
  c.eval.every_steps = max(1, steps // evaluations)
  return config_lib.finalize(c)


def train_and_evaluate(config, workdir: str, options: suite.EvalOptions,
                       base_heldout: dict, log=print) -> dict:
  """Trains (unless finished) and evaluates (unless already evaluated) one run."""
  steps = config.train.steps
  saved = suite.read_results(workdir, steps)
  if checkpoint.is_finished(workdir, steps) and saved is not None:
    log(f"[microanneal] {workdir}: finished earlier, reusing its results")
    return saved
  if not checkpoint.is_finished(workdir, steps):
    log(f"[microanneal] training {config.data.mixture} for {steps} steps -> {workdir}")
    training.run(config, workdir)
  if not options.downstream:  # The tasks the run scored in its loop, on the same items.
    options = dataclasses.replace(options, downstream=tuple(config.eval.downstream),
                                  downstream_items=config.eval.downstream_items)
  data_cfg = heldout.eval_data_config(config)
  results = suite.evaluate(suite.load_model(workdir), options, data_cfg,
                           base_heldout=base_heldout, log=log)
  suite.write_results(workdir, results)
  return results


def _run_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, name.replace("/", "_"))


def run(base: str, tasks: list[str], tokens: int, workdir: str, *,
        eval_mixture: str = "dolmino_demo", baseline_mixture: str = "web_only",
        options: suite.EvalOptions = suite.EvalOptions(), log=print) -> list[dict]:
  """Runs the baseline and one microanneal per task; returns the table rows.

  Args:
    base: base checkpoint to branch off.
    tasks: candidate task names (each needs a `microanneal/<task>` mixture).
    tokens: training tokens per run.
    workdir: one sub-folder per run, plus microanneal.json / .txt.
    eval_mixture: mixture whose held-out splits are scored.
    baseline_mixture: the web-only mixture of the baseline.
    options: evaluation sizes.
    log: progress printer.

  Returns:
    Rows of `tables.comparison_rows` (baseline first).
  """
  if not tasks:
    raise ValueError("--tasks needs at least one candidate task.")
  suite.check_code_execution(options)  # Before training, not after.
  mixtures = {BASELINE: baseline_mixture}
  for task in tasks:
    name = f"microanneal/{task}"
    if name not in catalog.MIXTURES:
      raise ValueError(f"No mixture {name!r}: candidates are "
                       f"{sorted(m.split('/', 1)[1] for m in catalog.MIXTURES if '/' in m)}.")
    mixtures[task] = name
  configs = {run_name: anneal_config(base, mixture, tokens, eval_mixture=eval_mixture)
             for run_name, mixture in mixtures.items()}
  training.prepare_data(configs[BASELINE])  # The eval mixture, scored before any training.
  base_data = heldout.eval_data_config(configs[BASELINE])
  log(f"[microanneal] base held-out BPB ({base})")
  base_heldout = heldout.heldout_bpb(scoring.model_eval_fn(scoring.load_model(base)),
                                      base_data, max_batches=options.max_batches,
                                      stride=configs[BASELINE].eval.heldout_stride)
  results = {name: train_and_evaluate(cfg, _run_dir(workdir, name), options, base_heldout, log)
             for name, cfg in configs.items()}
  rows = tables.comparison_rows(results, baseline=BASELINE)
  for row in rows:
    if row["run"] != BASELINE:
      cap = catalog.get_task(row["run"]).capability
      row["target"] = cap
      row["delta/target"] = row.get(f"delta/{cap}", math.nan)
  text = format_table(rows, tokens, configs[BASELINE].train.steps)
  k = configs[BASELINE].eval.noise_checkpoints
  snr = history.compare_runs({name: _run_dir(workdir, name) for name in configs}, k)
  text += ("\n\nSignal and noise of every metric over the runs (highest signal-to-noise "
           "first):\n" + tables.format_snr(snr, k))
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, "microanneal.json"),
                   {"base": base, "tokens": tokens, "rows": rows, "results": results,
                    "snr": [dataclasses.asdict(row) for row in snr]})
  files.write_text(os.path.join(workdir, "microanneal.txt"), text + "\n")
  log(text)
  return rows


def format_table(rows: list[dict], tokens: int, steps: int) -> str:
  """The microanneal table: target-capability delta, every capability, downstream
  accuracy (`acc/<task>`, at chance marked), forgetting."""
  caps = sorted({k.split("/", 1)[1] for row in rows for k in row
                 if k.startswith("delta/") and k != "delta/target"})
  accuracy = sorted({k for row in rows for k in row if k.startswith("acc/")})
  columns = ["delta/target"] + [f"delta/{c}" for c in caps] + accuracy + ["forgetting"]
  for row in rows:
    row.setdefault("delta/target", math.nan)
  legend = f"\n{tables.AT_CHANCE_LEGEND}" if accuracy else ""
  return (f"Microanneal table ({tokens:,} tokens, {steps} steps per run; BPB change vs "
          f"the web-only baseline, negative = better; acc = OLMES accuracy ± 95% interval, "
          f"higher = better; forgetting = web BPB change vs the base):\n"
          + tables.format_table(rows, columns) + legend)
