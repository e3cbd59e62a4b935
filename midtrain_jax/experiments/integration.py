"""Integration anneal with souping: K anneals of one mixture, averaged, evaluated.

  python -m midtrain_jax.experiments.integration --base=runs/demo/base/checkpoints/200 \
      --mixture=dolmino_demo --tokens=200000 --k=3 --workdir=runs/integration

The K runs share the base and the budget and differ only in their data order
(`seed` and `data.shuffle_seed`), as in OLMo 2's final anneals. Their params
are averaged with `checkpoint.soup` and the soup is evaluated like any run;
the table compares each run and the soup against the mean of the runs.
Finished runs, the soup and their evaluations are reused on re-run.
"""
import json
import os

from midtrain_jax import checkpoint, evaluate, report
from midtrain_jax.experiments import microanneal


def run(base: str, mixture: str, tokens: int, k: int, workdir: str, *,
        eval_mixture: str = "dolmino_demo",
        options: evaluate.EvalOptions = evaluate.EvalOptions(), log=print) -> dict:
  """Trains K seeds, soups them and evaluates everything.

  Args:
    base: base checkpoint to branch off.
    mixture: the anneal mixture.
    tokens: training tokens per run.
    k: number of anneals (>= 2).
    workdir: `seed_<i>/` per run, `soup/`, and integration.json / .txt.
    eval_mixture: mixture whose held-out splits are scored.
    options: evaluation sizes.
    log: progress printer.

  Returns:
    {"results": {name: eval results}, "rows": comparison rows, "soup": path}.
  """
  if k < 2:
    raise ValueError(f"--k={k}: souping needs at least two anneals.")
  configs = {f"seed_{i}": microanneal.anneal_config(base, mixture, tokens,
                                                    eval_mixture=eval_mixture, seed=i)
             for i in range(k)}
  base_heldout = evaluate.heldout_bpb(
      evaluate.model_eval_fn(evaluate.load_model(base)),
      evaluate.eval_data_config(configs["seed_0"]), max_batches=options.max_batches)
  results = {name: microanneal.train_and_evaluate(cfg, os.path.join(workdir, name), options,
                                                  base_heldout, log)
             for name, cfg in configs.items()}
  soup_dir = os.path.join(workdir, "soup")
  soup_results = os.path.join(soup_dir, "eval", "step_0.json")
  if os.path.exists(soup_results):
    with open(soup_results) as f:
      results["soup"] = json.load(f)
  else:
    if not os.path.isdir(os.path.join(soup_dir, checkpoint.CKPT_SUBDIR)):
      log(f"[integration] souping {k} runs -> {soup_dir}")
      checkpoint.soup([os.path.join(workdir, name) for name in configs], soup_dir)
    data_cfg = evaluate.eval_data_config(configs["seed_0"])
    results["soup"] = evaluate.evaluate(evaluate.load_model(soup_dir), options, data_cfg,
                                        base_heldout=base_heldout, log=log)
    evaluate.write_results(soup_dir, results["soup"])
  results["mean_of_runs"] = _mean(results[name] for name in configs)
  rows = report.comparison_rows(results, baseline="mean_of_runs")
  caps = sorted(results["soup"]["capability_bpb"])
  text = ("Integration anneal: soup vs the mean of its runs (BPB change, negative = "
          "better)\n" + report.format_table(rows, [f"delta/{c}" for c in caps] +
                                            ["forgetting"]))
  log(text)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "integration.txt"), "w") as f:
    f.write(text + "\n")
  out = {"results": results, "rows": rows, "soup": soup_dir}
  with open(os.path.join(workdir, "integration.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
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


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  options = evaluate.EvalOptions(bpb_items=f.bpb_items, max_batches=f.max_batches)
  run(f.base, f.mixture, f.tokens, f.k, f.workdir, eval_mixture=f.eval_mixture,
      options=options)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("base", None, "Base checkpoint (workdir or step directory).")
  flags.DEFINE_string("mixture", "dolmino_demo", "Anneal mixture.")
  flags.DEFINE_integer("tokens", None, "Training tokens per run.")
  flags.DEFINE_integer("k", 3, "Number of anneals (data-order seeds) to soup.")
  flags.DEFINE_string("workdir", "runs/integration", "Folder for the runs and the soup.")
  flags.DEFINE_string("eval_mixture", "dolmino_demo", "Mixture whose held-out splits to score.")
  flags.DEFINE_integer("bpb_items", 16, "Benchmark BPB items per benchmark.")
  flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")
  flags.mark_flags_as_required(["base", "tokens"])
  app.run(main)
