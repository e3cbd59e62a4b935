"""Evaluate a checkpoint: held-out BPB, benchmark BPB, generative evals, OLMES accuracy.

  python -m midtrain_jax.evaluate --from=runs/anneal [--step=N] \
      [--suite=heldout,bpb,gsm8k,humaneval,mbpp] [--base=runs/base] \
      [--bpb_items=32] [--gen_items=8] [--sample_seed=0] [--compare=runs/other] \
      [--unsafe_exec]
  python -m midtrain_jax.evaluate --from=runs/anneal --suite=heldout --seq_len=1024
  python -m midtrain_jax.evaluate --from=model.gguf --suite=arc_easy:rc,hellaswag:rc \
      --items=500 --out=results.json [--compare=other_results.json]
  python -m midtrain_jax.evaluate --list_tasks

`--from` is a run, a `checkpoints/<step>` directory, a Hugging Face model
folder or a GGUF file (imported once into the cache, with its own tokenizer).

Held-out BPB scores every target of a document once, in windows of the run's
data.seq_len tokens that overlap by seq_len - eval.heldout_stride (evals/heldout.py);
`--seq_len` scores them in windows of another length (e.g. the length a model
was extended to), without changing anything else.

Benchmarks are scored on a seeded sample stratified over their subjects (at
least one item per subject; 0 items = the whole benchmark): runs evaluated
with the same sizes and seed are scored on the same items. Prints a summary
(each benchmark score as `value ± 95% interval` with its item count, and its
clean / contaminated split where the training data recorded one) and writes
`workdir/eval/step_<N>.json` plus TensorBoard scalars under `workdir/eval`
(midtrain_jax/evals/suite.py). `--compare` also prints the change of every
benchmark against another run's latest saved evaluation, with its paired 95%
interval over the items both scored (`*` = it excludes zero). With several
runs (`--compare=runs/b,runs/c`) the changes are against the first of them,
and every metric the runs share is ranked by signal-to-noise
(evals/signal_noise.py): noise = its spread over each run's last
`--noise_checkpoints` evaluated checkpoints (in-training evaluations from the
TensorBoard events and saved evaluations, evals/history.py; unknown below 3),
signal = the spread of the runs' final values; the best run on a metric whose
margin is under 2 x noise is marked WITHIN NOISE. `--suite=none` evaluates
nothing and compares the saved evaluations:

  python -m midtrain_jax.evaluate --from=runs/demo/anneal_dolmino --suite=none \
      --compare=runs/demo/anneal_web

Names with a colon in `--suite` are OLMES multiple-choice tasks read from the
official request files (benchmark_data/olmes.py, scored by evals/olmes.py):
`--items` per task, results in `--out` (JSON), and `--compare` then names
other `--out` files.
"""
import json
import os

from absl import flags

from midtrain_jax import cli, files
from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.evals import heldout, history, olmes, stats, suite, tables
from midtrain_jax.evals import settings as eval_settings
from midtrain_jax.interop import hf
from midtrain_jax.train import checkpoint

_FROM = flags.DEFINE_string("from", None, "What to evaluate: a run, a checkpoints/<step> "
                            "directory, an HF model folder or a GGUF file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A run directory (the same as --from=RUN).")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (default: the latest).")
_SUITE = flags.DEFINE_string("suite", "default", f"{sorted(suite.SUITES)} or a comma list "
                             f"of {suite.COMPONENTS} and OLMES tasks (arc_easy:rc, ...; "
                             "--list_tasks); none: evaluate nothing, compare the saved "
                             "evaluations (--compare).")
_LIST_TASKS = flags.DEFINE_bool("list_tasks", False, "List the OLMES tasks and exit.")
_ITEMS = flags.DEFINE_integer("items", 500, "Items per OLMES task, stratified over its "
                              "subjects (0 = all).")
_OUT = flags.DEFINE_string("out", "", "JSON file for the OLMES results (default: "
                           "<run>/eval/olmes_step_<N>.json).")
_MAX_LEN = flags.DEFINE_integer("max_len", 2048, "OLMES: the window in tokens (contexts "
                                "longer than it are cut from the left).")
_BASE = flags.DEFINE_string("base", "", "Base checkpoint for the forgetting figure.")
_EVAL_MIXTURE = flags.DEFINE_string("eval_mixture", "", "Mixture whose held-out splits to "
                                    "score (default: eval.mixture, else the run's mixture).")
_BPB_ITEMS = flags.DEFINE_integer("bpb_items", 32, "Items per benchmark for benchmark BPB, "
                                  "at least one per subject (0 = all).")
_GEN_ITEMS = flags.DEFINE_integer("gen_items", 8, "Items per generative benchmark (0 = all).")
_SAMPLE_SEED = flags.DEFINE_integer("sample_seed", 0, "Which stratified sample of items; runs "
                                    "compared must share it.")
_MAX_BATCHES = flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 0, "Held-out evaluation only: rows (windows) of "
                                "this many tokens instead of the run's data.seq_len (0); "
                                "the results record it as `heldout_windows`.", lower_bound=0)
_UNSAFE_EXEC = flags.DEFINE_bool(
    "unsafe_exec", False, "Run generated code (humaneval, mbpp) even where the operating-"
    "system sandbox is unavailable (README: Generated code); otherwise that is an error.")
_COMPARE = flags.DEFINE_list("compare", [], "Other runs' workdirs (or, for OLMES tasks, "
                             "their --out files): paired deltas against the first, and the "
                             "metrics of all the runs ranked by signal-to-noise.")
_NOISE_CHECKPOINTS = flags.DEFINE_integer(
    "noise_checkpoints", eval_settings.SECTION.entries["noise_checkpoints"].default,
    "Evaluated checkpoints per run (the last ones) whose spread is a metric's noise; "
    "0 = all (eval.noise_checkpoints).")


def _source() -> str:
  path = _FROM.value or _WORKDIR.value
  if not path:
    raise flags.ValidationError("Give --from (or --workdir): what to evaluate.")
  if hf.is_foreign(path):
    return hf.imported_run(path)
  if _STEP.value >= 0:
    return os.path.join(path, checkpoint.CKPT_SUBDIR, str(_STEP.value))
  return path


def _run_dir(path: str) -> str:
  """The run directory of a run or of one of its `checkpoints/<step>` directories."""
  parent = os.path.dirname(os.path.normpath(path))
  return os.path.dirname(parent) if os.path.basename(parent) == checkpoint.CKPT_SUBDIR else path


def _evaluate_olmes(model, names: list[str]) -> None:
  tok = olmes.model_tokenizer(model)
  results, tasks = {}, {}
  for name in names:
    task = olmes_tasks.sample(olmes_tasks.load_task(name), _ITEMS.value, _SAMPLE_SEED.value)
    tasks[name] = task
    print(f"[olmes] {name}: {len(task.docs)} items from {task.variant} ({task.split})",
          flush=True)
    results[name] = olmes.evaluate_task(model, tok, task, max_len=_MAX_LEN.value)
    print(olmes.format_line(results[name], olmes.chance(task)), flush=True)
  out = _OUT.value or os.path.join(_run_dir(model.path), "eval",
                                    f"olmes_step_{model.step}.json")
  files.write_json(out, {"checkpoint": os.path.abspath(model.path), "step": model.step,
                         "items": _ITEMS.value, "sample_seed": _SAMPLE_SEED.value,
                         "tasks": results})
  for path in cli.names(_COMPARE.value):
    with open(path, encoding="utf-8") as f:
      other = json.load(f)["tasks"]
    for name, result in results.items():
      if name in other:
        # Within subjects (the sample is stratified), averaged as the score is.
        task = tasks[name]
        d = stats.paired_delta(result["per_item"], other[name]["per_item"],
                               subsets={t.doc_id: t.subset for t in task.docs},
                               macro=task.macro_average)
        mark = " *" if d["significant"] else ""
        print(f"  {name}: {d['delta']:+.3f} ± {d['ci95'] or float('nan'):.3f} over "
              f"{d['n_common']} common items vs {path}{mark}")
  print(f"wrote {out}")


def _compare(run_dir: str, results: dict) -> None:
  """Changes against the first --compare run; every run's metrics ranked by SNR."""
  others = cli.names(_COMPARE.value)
  runs = history.run_names([run_dir, *others])
  named = {}
  for name, path in runs.items():
    saved = results if path == run_dir else suite.read_results(path)
    if saved is None:
      raise FileNotFoundError(f"--compare={path}: no saved evaluation "
                              f"({suite.results_path(path, '*')}).")
    named[name] = saved
  first = next(n for n, p in runs.items() if p == others[0])
  print(f"change vs {first} (step {named[first]['step']}):")
  print(tables.format_comparison(named, baseline=first))
  k = _NOISE_CHECKPOINTS.value
  print(f"\nsignal and noise of {', '.join(runs)} (highest signal-to-noise first):")
  print(tables.format_snr(history.compare_runs(runs, k), k))


def _saved_results(path: str) -> dict:
  """--suite=none: the saved evaluation of the checkpoint (the latest without --step)."""
  step = _STEP.value if _STEP.value >= 0 else None
  results = suite.read_results(_run_dir(path), step)
  if results is None:
    raise FileNotFoundError(f"--suite=none: {_run_dir(path)} has no saved evaluation"
                            f"{'' if step is None else f' of step {step}'} "
                            f"({suite.results_path(_run_dir(path), '*')}); evaluate it first.")
  return results


def main(argv):
  del argv
  if _LIST_TASKS.value:
    print("\n".join(olmes_tasks.task_names()))
    return
  names = [n for n in _SUITE.value.split(",") if n]
  rest = ",".join(n for n in names if ":" not in n)
  if rest and rest != "none":  # Before loading anything: the suite may need the code sandbox.
    suite.check_code_execution(suite.EvalOptions(suite=rest, unsafe_exec=_UNSAFE_EXEC.value))
  path = _source()
  if _SUITE.value == "none":
    if not cli.names(_COMPARE.value):
      raise flags.ValidationError("--suite=none evaluates nothing: give --compare.")
    _compare(_run_dir(path), _saved_results(path))
    return
  model = suite.load_model(path)
  olmes_names = [n for n in names if ":" in n]
  if olmes_names:
    _evaluate_olmes(model, olmes_names)
  if not rest:
    return
  options = suite.EvalOptions(suite=rest, bpb_items=_BPB_ITEMS.value,
                              gen_items=_GEN_ITEMS.value, seed=_SAMPLE_SEED.value,
                              max_batches=_MAX_BATCHES.value, base=_BASE.value,
                              unsafe_exec=_UNSAFE_EXEC.value)
  data_cfg = heldout.eval_data_config(model.config)
  if _EVAL_MIXTURE.value:
    data_cfg.mixture = _EVAL_MIXTURE.value
  if _SEQ_LEN.value:
    data_cfg.seq_len = _SEQ_LEN.value
  if "heldout" in suite.parse_suite(options.suite) or options.base:
    preparation.ensure_prepared(data_cfg)  # The loader only reads prepared data.
  results = suite.evaluate(model, options, data_cfg)
  written = suite.write_results(_run_dir(path), results)
  print(tables.format_results(results))
  if cli.names(_COMPARE.value):
    _compare(_run_dir(path), results)
  print(f"wrote {written}")


if __name__ == "__main__":
  cli.run(main)
