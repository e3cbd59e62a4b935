"""Seed soup (the integration anneal): K anneals of one mixture, averaged, evaluated.

Command line: `python -m midtrain_jax.seed_soup` (midtrain_jax/seed_soup.py).

The K runs share the base and the budget and differ only in their data order
(`seed` and `data.shuffle_seed`), as in OLMo 2's final anneals. Their params
are averaged with `checkpoint.soup` and the soup is evaluated like any run;
the table compares each run and the soup against the mean of the runs.
Finished runs, the soup and their evaluations are reused on re-run.
"""
import os

from midtrain_jax import files
from midtrain_jax.evals import heldout, scoring, suite, tables
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import microanneal_study, training


def run(base: str, mixture: str, tokens: int, k: int, workdir: str, *,
        eval_mixture: str = "dolmino_demo",
        options: suite.EvalOptions = suite.EvalOptions(), log=print) -> dict:
  """Trains K seeds, soups them and evaluates everything.

  Args:
    base: base checkpoint to branch off.
    mixture: the anneal mixture.
    tokens: training tokens per run.
    k: number of anneals (>= 2).
    workdir: `seed_<i>/` per run, `soup/`, and seed_soup.json / .txt.
    eval_mixture: mixture whose held-out splits are scored.
    options: evaluation sizes.
    log: progress printer.

  Returns:
    {"results": {name: eval results}, "rows": comparison rows, "soup": path}.
  """
  if k < 2:
    raise ValueError(f"--k={k}: souping needs at least two anneals.")
  configs = {f"seed_{i}": microanneal_study.anneal_config(base, mixture, tokens,
                                                          eval_mixture=eval_mixture, seed=i)
             for i in range(k)}
  training.prepare_data(configs["seed_0"])  # The eval mixture, scored before any training.
  base_heldout = heldout.heldout_bpb(
      scoring.model_eval_fn(scoring.load_model(base)),
      heldout.eval_data_config(configs["seed_0"]), max_batches=options.max_batches,
      stride=configs["seed_0"].eval.heldout_stride)
  results = {name: microanneal_study.train_and_evaluate(cfg, os.path.join(workdir, name), options,
                                                        base_heldout, log)
             for name, cfg in configs.items()}
  soup_dir = os.path.join(workdir, "soup")
  saved = suite.read_results(soup_dir, 0)
  if saved is not None:
    results["soup"] = saved
  else:
    if not os.path.isdir(os.path.join(soup_dir, checkpoint.CKPT_SUBDIR)):
      log(f"[seed_soup] souping {k} runs -> {soup_dir}")
      checkpoint.soup([os.path.join(workdir, name) for name in configs], soup_dir)
    data_cfg = heldout.eval_data_config(configs["seed_0"])
    results["soup"] = suite.evaluate(suite.load_model(soup_dir), options, data_cfg,
                                     base_heldout=base_heldout, log=log)
    suite.write_results(soup_dir, results["soup"])
  results["mean_of_runs"] = _mean(results[name] for name in configs)
  rows = tables.comparison_rows(results, baseline="mean_of_runs")
  caps = sorted(results["soup"]["capability_bpb"])
  text = ("Integration anneal: soup vs the mean of its runs (BPB change, negative = "
          "better)\n" + tables.format_table(rows, [f"delta/{c}" for c in caps] +
                                            ["forgetting"]))
  log(text)
  os.makedirs(workdir, exist_ok=True)
  files.write_text(os.path.join(workdir, "seed_soup.txt"), text + "\n")
  out = {"results": results, "rows": rows, "soup": soup_dir}
  files.write_json(os.path.join(workdir, "seed_soup.json"), out)
  return out


def _mean(results) -> dict:
  results = list(results)
  mean = {"capability_bpb": {}, "benchmark_bpb": {}}
  for cap in results[0]["capability_bpb"]:
    mean["capability_bpb"][cap] = sum(r["capability_bpb"][cap] for r in results) / len(results)
  for name in results[0].get("benchmark_bpb", {}):
    mean["benchmark_bpb"][name] = {
        "bpb": sum(r["benchmark_bpb"][name]["bpb"] for r in results) / len(results)}
  if all("forgetting" in r for r in results):
    delta = sum(r["forgetting"]["delta_web_bpb"] for r in results) / len(results)
    mean["forgetting"] = {"delta_web_bpb": delta}
  return mean
