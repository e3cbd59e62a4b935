"""Evaluation: held-out bits per byte per task, benchmark BPB, generative evals.

Command line: `python -m midtrain_jax.evaluate` (midtrain_jax/evaluate.py).

Bits per byte (BPB) is the summed next-token loss in bits over the UTF-8 size
of the text, so it compares models with different tokenizers. Three signals:

* held-out BPB per task of the eval mixture (`eval.mixture`, default the run's
  own), aggregated per capability (web, math, code, ...);
* benchmark BPB: BPB of the gold answer given the question (OLMES "bpb"
  formulation), which moves long before a small model's accuracy does;
* generative: GSM8K exact match and HumanEval/MBPP pass@1 (`generative.py`);
* downstream: OLMES multiple-choice accuracy (`olmes.py`) of the tasks
  `downstream` names, on `downstream_items` items each (as `eval.downstream`
  scores them during training), marked when at chance.

Benchmarks are scored on a seeded sample stratified over their subjects
(`items.sample_items`: `bpb_items` / `gen_items` per benchmark, at least one
item per subject, 0 = all), the same items for every model with the same
options. Each benchmark result carries `n_items`, `subsets`, `ci95` (95%
bootstrap half-width over items, `stats.py`) and `per_item` values, so two
runs compare paired (`tables.comparison_rows`), and, from the record of the
checkpoint's prepared training data, `contamination` with `clean` /
`contaminated` scores (`contamination.py`).

Forgetting is the change in web held-out BPB against a base checkpoint
(positive = the anneal got worse at web text). Results go to
`workdir/eval/step_<N>.json` and TensorBoard scalars under `workdir/eval`.
"""
import dataclasses
import glob
import json
import os

import jax

from midtrain_jax import files, logs
from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import heldout_batches
from midtrain_jax.evals import answer_bpb, contamination, generative, heldout, olmes, sandbox
from midtrain_jax.evals.scoring import LoadedModel, load_model, model_eval_fn

COMPONENTS = ("heldout", "bpb", "gsm8k", "humaneval", "mbpp")
SUITES = {"default": ("heldout", "bpb"), "all": COMPONENTS}
metric_writers = logs.quiet_import("clu.metric_writers")


def parse_suite(suite: str) -> tuple[str, ...]:
  """Expands a suite name or comma list into evaluation components."""
  if suite in SUITES:
    return SUITES[suite]
  parts = tuple(p for p in suite.split(",") if p)
  unknown = [p for p in parts if p not in COMPONENTS]
  if unknown or not parts:
    raise ValueError(f"Unknown evaluation suite {suite!r}: use one of {sorted(SUITES)} or a "
                     f"comma list of {COMPONENTS}.")
  return parts


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How much of each component to run (small defaults keep CPU runs quick).

  Attributes:
    suite: a `SUITES` name or a comma list of `COMPONENTS`.
    bpb_items: benchmark BPB sample size per benchmark (0 = every item); a
      benchmark gets at least one item per subject (MMLU: 57).
    gen_items: generative sample size per benchmark (0 = every item).
    seed: which sample; runs compared must share it (and the sizes).
    max_batches: held-out batches per task (0 = all).
    base: base checkpoint for the forgetting figure.
    unsafe_exec: run generated code (humaneval, mbpp) even where the operating-system
      sandbox is unavailable (`sandbox.py`); otherwise that is an error.
    downstream: OLMES tasks whose accuracy is scored (`eval.downstream` names).
    downstream_items: items per downstream task (0 = all).
  """
  suite: str = "default"
  bpb_items: int = 32
  gen_items: int = 8
  seed: int = 0
  max_batches: int = 0
  base: str = ""
  downstream: tuple[str, ...] = ()
  downstream_items: int = 100
  unsafe_exec: bool = False


def check_code_execution(options: EvalOptions) -> None:
  """Fails now, not after training or loading, if the suite will need the code sandbox.

  Raises:
    sandbox.SandboxUnavailable: the suite runs generated code (humaneval, mbpp), the
      operating-system sandbox is unavailable here and `options.unsafe_exec` is False.
  """
  if any(c in generative.CODE_BENCHMARKS for c in parse_suite(options.suite)):
    sandbox.require_isolation(options.unsafe_exec)


def evaluate(model: LoadedModel, options: EvalOptions = EvalOptions(),
             data_cfg=None, base_heldout: dict | None = None, log=print) -> dict:
  """Runs the chosen evaluation components on a loaded checkpoint.

  Args:
    model: the checkpoint.
    options: suite and sizes.
    data_cfg: the data section to read held-out splits from (default
      `eval_data_config(model.config)`).
    base_heldout: the base checkpoint's held-out results, if already known;
      else computed from `options.base` when set.
    log: progress printer.

  Returns:
    A JSON-serialisable dict of results.
  """
  components = parse_suite(options.suite)
  check_code_execution(options)  # Fail before the slow parts, not after them.
  data_cfg = data_cfg or heldout.eval_data_config(model.config)
  tok = tokenizer_lib.load_tokenizer(data_cfg.tokenizer)
  out = {"checkpoint": os.path.abspath(model.path), "step": model.step,
         "eval_mixture": data_cfg.mixture}
  # The run's own window stride; data_cfg.seq_len (the window) may be overridden.
  stride = model.config.eval.heldout_stride
  if "heldout" in components or options.base:
    log(f"[eval] held-out BPB on {data_cfg.mixture} (windows of {data_cfg.seq_len} tokens)")
    out["heldout"] = heldout.heldout_bpb(model_eval_fn(model), data_cfg,
                                         max_batches=options.max_batches, stride=stride)
    out["capability_bpb"] = heldout.capability_bpb(out["heldout"])
    out["heldout_windows"] = {"seq_len": data_cfg.seq_len,
                              "stride": stride or heldout_batches.default_stride(
                                  data_cfg.seq_len)}
  if options.base or base_heldout is not None:
    if base_heldout is None:
      log(f"[eval] base held-out BPB ({options.base})")
      base_heldout = heldout.heldout_bpb(model_eval_fn(load_model(options.base)), data_cfg,
                                         max_batches=options.max_batches, stride=stride)
    out["forgetting"] = forgetting(out["heldout"], base_heldout, options.base)
  if "bpb" in components:
    log(f"[eval] benchmark BPB ({_size(options.bpb_items)}, seed {options.seed})")
    out["benchmark_bpb"] = answer_bpb.benchmark_bpb(model, tok, items=options.bpb_items,
                                                    seed=options.seed)
  generative_names = [c for c in components if c in generative.GENERATIVE]
  if generative_names:
    log(f"[eval] generative {','.join(generative_names)} ({_size(options.gen_items)}, "
        f"seed {options.seed})")
    out["generative"] = {}
    for name in generative_names:
      code = {"unsafe_exec": options.unsafe_exec} if name in generative.CODE_BENCHMARKS else {}
      out["generative"][name] = generative.GENERATIVE[name](
          model, tok, items=options.gen_items, seed=options.seed, **code)
  if options.downstream:
    log(f"[eval] downstream accuracy {','.join(options.downstream)} "
        f"({_size(options.downstream_items)}, seed {options.seed})")
    out["downstream"] = downstream_accuracy(model, tok, options)
  names = [*out.get("benchmark_bpb", {}), *out.get("generative", {})]
  if names:
    record = contamination.training_record(model.config, model.path, dict.fromkeys(names))
    for group in ("benchmark_bpb", "generative"):
      for name, result in out.get(group, {}).items():
        contamination.annotate(result, name, record)
  return out


def downstream_accuracy(model: LoadedModel, tok, options: EvalOptions) -> dict[str, dict]:
  """{task: `olmes.evaluate_task`'s result with `chance` and `at_chance`}."""
  out = {}
  for name in options.downstream:
    task = olmes_tasks.sample(olmes_tasks.load_task(name), options.downstream_items,
                              options.seed)
    r = olmes.evaluate_task(model, tok, task, log=None)
    r["chance"] = olmes.chance(task)
    r["at_chance"] = olmes.at_chance(r, r["chance"])
    out[name] = r
  return out


def _size(items: int) -> str:
  return "every item" if items <= 0 else f"{items} items each, at least one per subject"


def forgetting(heldout_results: dict, base_heldout: dict, base_path: str = "") -> dict:
  """Change in web BPB against the base (positive = worse on web text)."""
  capability = heldout.capability_bpb(heldout_results)
  base_capability = heldout.capability_bpb(base_heldout)
  web = capability.get("web", float("nan"))
  base_web = base_capability.get("web", float("nan"))
  return {"base": base_path, "web_bpb": web, "base_web_bpb": base_web,
          "delta_web_bpb": web - base_web,
          "base_capability_bpb": base_capability}


def scalars(results: dict) -> dict[str, float]:
  """Flattens results into TensorBoard scalar names like `eval/bpb/math`."""
  flat = {}
  for task, r in results.get("heldout", {}).items():
    flat[f"eval/heldout_bpb/{task}"] = r["bpb"]
  for cap, v in results.get("capability_bpb", {}).items():
    flat[f"eval/bpb/{cap}"] = v
  for name, r in results.get("benchmark_bpb", {}).items():
    flat[f"eval/benchmark_bpb/{name}"] = r["bpb"]
    if r.get("ci95") is not None:
      flat[f"eval/benchmark_bpb_ci95/{name}"] = r["ci95"]
  for name, r in results.get("generative", {}).items():
    flat[f"eval/{name}/{r['metric']}"] = r["score"]
    if r.get("ci95") is not None:
      flat[f"eval/{name}/{r['metric']}_ci95"] = r["ci95"]
  for name, r in results.get("downstream", {}).items():
    flat.update({f"eval/downstream/{name}/{m}": v for m, v in r["metrics"].items()})
  if "forgetting" in results:
    flat["eval/forgetting/delta_web_bpb"] = results["forgetting"]["delta_web_bpb"]
  return flat


def results_path(workdir: str, step: int | str) -> str:
  """Where the evaluation of a run's checkpoint `step` is saved ("*": a glob pattern)."""
  return os.path.join(workdir, "eval", f"step_{step}.json")


def read_results(workdir: str, step: int | None = None) -> dict | None:
  """Saved results of checkpoint `step` (default: the latest evaluated), or None."""
  if step is None:
    saved = glob.glob(results_path(workdir, "*"))
    if not saved:
      return None
    step = max(int(p.rsplit("_", 1)[1].removesuffix(".json")) for p in saved)
  path = results_path(workdir, step)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_results(workdir: str, results: dict) -> str:
  """Writes `workdir/eval/step_<N>.json` and TensorBoard scalars; returns the path."""
  path = results_path(workdir, results["step"])
  out_dir = os.path.dirname(path)
  os.makedirs(out_dir, exist_ok=True)
  files.write_json(path, results)
  if jax.process_index() == 0:
    writer = metric_writers.SummaryWriter(out_dir)
    writer.write_scalars(results["step"], scalars(results))
    writer.close()
  return path
