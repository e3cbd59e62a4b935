"""Evaluation: held-out bits per byte per task, benchmark BPB, generative evals.

  python -m midtrain_jax.evaluate --workdir=runs/anneal [--step=N] \
      [--suite=heldout,bpb,gsm8k,humaneval,mbpp] [--base=runs/base]

Bits per byte (BPB) is the summed next-token loss in bits over the UTF-8 size
of the text, so it compares models with different tokenizers. Three signals:

* held-out BPB per task of the eval mixture (`eval.mixture`, default the run's
  own), aggregated per capability (web, math, code, ...);
* benchmark BPB: BPB of the gold answer given the question (OLMES "bpb"
  formulation), which moves long before a small model's accuracy does;
* generative: GSM8K exact match and HumanEval/MBPP pass@1 (`generative.py`).

Forgetting is the change in web held-out BPB against a base checkpoint
(positive = the anneal got worse at web text). Results go to
`workdir/eval/step_<N>.json` and TensorBoard scalars under `workdir/eval`.
"""
import dataclasses
import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from midtrain_jax import checkpoint, config_lib
from midtrain_jax import train_step as ts
from midtrain_jax.data import benchmarks, catalog, pipeline
from midtrain_jax.data import tokenizer as tokenizer_lib

LN2 = math.log(2.0)
COMPONENTS = ("heldout", "bpb", "gsm8k", "humaneval", "mbpp")
SUITES = {"default": ("heldout", "bpb"), "all": COMPONENTS}
# Registered benchmarks whose gold answers are scored by default.
BPB_BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "mmlu", "arc_easy", "arc_challenge")


@dataclasses.dataclass
class LoadedModel:
  """A checkpoint ready to evaluate."""
  params: dict
  graphdef: object
  model_cfg: config_lib.ModelConfig
  config: ml_collections.ConfigDict
  step: int
  path: str


def load_model(path: str) -> LoadedModel:
  """Loads a checkpoint (workdir or step directory) onto the default device."""
  params, config, step = checkpoint.load_params(path)
  model_cfg = config_lib.model_config(config.model)
  graphdef, _, _ = ts.abstract_model(model_cfg)
  return LoadedModel(jax.device_put(params), graphdef, model_cfg, config, step, path)


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


def eval_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's `data` section, reading the eval mixture's held-out splits."""
  data_cfg = ml_collections.ConfigDict(config.data.to_dict())
  data_cfg.mixture = config.eval.mixture or config.data.mixture
  return data_cfg


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _row_nats(params, batch, mask_BT, *, graphdef):
  ce_BT, _ = ts.token_losses(params, graphdef, batch)
  return (ce_BT * mask_BT).sum(axis=-1)


def model_eval_fn(model: LoadedModel):
  """A `batch -> {nats, tokens}` function for `heldout_bpb` on one device."""
  def fn(batch):
    inputs = {k: jnp.asarray(batch[k]) for k in ts.MODEL_INPUTS}
    mask = (inputs["segment_ids"] > 0).astype(jnp.float32)
    return {"nats": _row_nats(model.params, inputs, mask, graphdef=model.graphdef).sum(),
            "tokens": mask.sum()}
  return fn


def heldout_bpb(eval_fn, data_cfg, *, max_batches: int = 0, batch_size: int | None = None,
                process_index: int = 0, process_count: int = 1) -> dict[str, dict]:
  """Loss and bits per byte on every task's held-out split.

  Args:
    eval_fn: host batch (numpy dict) -> {"nats", "tokens"} summed over the
      global batch (e.g. the jitted `train_step.eval_step`).
    data_cfg: `data` section whose mixture names the tasks.
    max_batches: batches per task (0 = the whole split). With several
      processes every process runs exactly this many, so they stay in step.
    batch_size: global rows per batch (default data.batch_size).
    process_index, process_count: this host and the number of hosts.

  Returns:
    {task: {loss, bpb, tokens, bytes, capability}}. When a split is cut short
    its byte count is scaled by the fraction of its tokens evaluated.
  """
  results = {}
  for task in pipeline.task_names(data_cfg):
    batches = pipeline.make_eval_iterator(data_cfg, task, batch_size=batch_size,
                                          process_index=process_index,
                                          process_count=process_count)
    nats = tokens = 0.0
    count, last = 0, None
    for batch in batches:
      if max_batches and count == max_batches:
        break
      out = eval_fn(batch)
      nats, tokens, count = nats + float(out["nats"]), tokens + float(out["tokens"]), count + 1
      last = batch
    # Hosts with fewer held-out documents run all-padding batches (segment id 0
    # counts nothing), so every host joins every global computation.
    while process_count > 1 and max_batches and last is not None and count < max_batches:
      eval_fn({k: np.zeros_like(v) if k == "segment_ids" else v for k, v in last.items()})
      count += 1
    share = min(1.0, tokens / max(1, batches.num_tokens * process_count))
    num_bytes = batches.num_bytes * process_count * share
    results[task] = dict(loss=nats / max(tokens, 1.0), bpb=nats / LN2 / max(num_bytes, 1.0),
                         tokens=tokens, bytes=num_bytes,
                         capability=catalog.get_task(task).capability)
  return results


def capability_bpb(heldout: dict[str, dict]) -> dict[str, float]:
  """Byte-weighted BPB per capability from `heldout_bpb` results."""
  nats, nbytes = {}, {}
  for r in heldout.values():
    cap = r["capability"]
    nats[cap] = nats.get(cap, 0.0) + r["loss"] * r["tokens"]
    nbytes[cap] = nbytes.get(cap, 0.0) + r["bytes"]
  return {cap: nats[cap] / LN2 / max(nbytes[cap], 1.0) for cap in nats}


def context_and_answer(item: benchmarks.BenchmarkItem) -> tuple[str, str]:
  """The conditioning text and the gold continuation of a benchmark item."""
  if item.benchmark == "humaneval":
    return item.question, item.answer
  if item.benchmark == "mbpp":
    return f'"""{item.question}"""\n', item.answer
  context = f"{item.passage}\n" if item.passage else ""
  return f"{context}Question: {item.question}\nAnswer:", " " + item.answer


def answer_rows(items, tok, max_len: int):
  """Tokenises items into (tokens, answer mask, answer bytes) rows.

  The context is cut from the left and the answer from the right so a row
  fits `max_len + 1` tokens; the byte count is that of the answer kept.
  """
  rows = []
  for item in items:
    context, answer = context_and_answer(item)
    answer_ids = tok.encode(answer)[:max_len // 2]
    kept = answer if len(answer_ids) == len(tok.encode(answer)) else tok.decode(answer_ids)
    context_ids = [tok.bos_id] + tok.encode(context)
    context_ids = context_ids[-(max_len + 1 - len(answer_ids)):]
    ids = context_ids + answer_ids
    mask = [0] * (len(context_ids) - 1) + [1] * len(answer_ids)
    rows.append((ids, mask, len(kept.encode("utf-8"))))
  return rows


def benchmark_bpb(model: LoadedModel, tok, names=BPB_BENCHMARKS, *, items: int = 32,
                  max_len: int = 512, batch_size: int = 16) -> dict[str, dict]:
  """Bits per byte of each benchmark's gold answers given their questions.

  Args:
    model: the loaded checkpoint.
    tok: the tokenizer the model was trained with.
    names: benchmarks (see `data.benchmarks.SPECS`).
    items: the first this many items of each benchmark (0 = all).
    max_len: longest row in tokens.
    batch_size: rows per forward pass.

  Returns:
    {benchmark: {bpb, items, bytes}}.
  """
  results = {}
  for name in names:
    chosen = benchmarks.load_items(name)
    chosen = chosen[:items] if items else chosen
    rows = answer_rows(chosen, tok, max_len)
    nats = 0.0
    for start in range(0, len(rows), batch_size):
      chunk = rows[start:start + batch_size]
      width = -(-max(len(ids) - 1 for ids, _, _ in chunk) // 64) * 64
      batch = {k: np.zeros((batch_size, width), np.int32) for k in ts.MODEL_INPUTS}
      mask = np.zeros((batch_size, width), np.float32)
      for i, (ids, answer_mask, _) in enumerate(chunk):
        n = len(ids) - 1
        batch["inputs"][i, :n] = ids[:-1]
        batch["targets"][i, :n] = ids[1:]
        batch["segment_ids"][i, :n] = 1
        batch["positions"][i, :n] = np.arange(n)
        mask[i, :n] = answer_mask
      nats += float(_row_nats(model.params, batch, mask, graphdef=model.graphdef).sum())
    total_bytes = sum(b for _, _, b in rows)
    results[name] = dict(bpb=nats / LN2 / max(total_bytes, 1), items=len(rows),
                         bytes=total_bytes)
  return results


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """How much of each component to run (small defaults keep CPU runs quick)."""
  suite: str = "default"
  bpb_items: int = 32
  gen_items: int = 8
  max_batches: int = 0
  base: str = ""


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
  from midtrain_jax import generative  # Local: decoding compiles only when asked for.
  components = parse_suite(options.suite)
  data_cfg = data_cfg or eval_data_config(model.config)
  tok = tokenizer_lib.load_tokenizer(data_cfg.tokenizer)
  out = {"checkpoint": os.path.abspath(model.path), "step": model.step,
         "eval_mixture": data_cfg.mixture}
  if "heldout" in components or options.base:
    log(f"[eval] held-out BPB on {data_cfg.mixture}")
    out["heldout"] = heldout_bpb(model_eval_fn(model), data_cfg, max_batches=options.max_batches)
    out["capability_bpb"] = capability_bpb(out["heldout"])
  if options.base or base_heldout is not None:
    if base_heldout is None:
      log(f"[eval] base held-out BPB ({options.base})")
      base_heldout = heldout_bpb(model_eval_fn(load_model(options.base)), data_cfg,
                                 max_batches=options.max_batches)
    out["forgetting"] = forgetting(out["heldout"], base_heldout, options.base)
  if "bpb" in components:
    log(f"[eval] benchmark BPB ({options.bpb_items} items each)")
    out["benchmark_bpb"] = benchmark_bpb(model, tok, items=options.bpb_items)
  generative_names = [c for c in components if c in generative.GENERATIVE]
  if generative_names:
    log(f"[eval] generative {','.join(generative_names)} ({options.gen_items} items each)")
    out["generative"] = {name: generative.GENERATIVE[name](model, tok, items=options.gen_items)
                         for name in generative_names}
  return out


def forgetting(heldout: dict, base_heldout: dict, base_path: str = "") -> dict:
  """Change in web BPB against the base (positive = worse on web text)."""
  web = capability_bpb(heldout).get("web", float("nan"))
  base_web = capability_bpb(base_heldout).get("web", float("nan"))
  return {"base": base_path, "web_bpb": web, "base_web_bpb": base_web,
          "delta_web_bpb": web - base_web,
          "base_capability_bpb": capability_bpb(base_heldout)}


def scalars(results: dict) -> dict[str, float]:
  """Flattens results into TensorBoard scalar names like `eval/bpb/math`."""
  flat = {}
  for task, r in results.get("heldout", {}).items():
    flat[f"eval/heldout_bpb/{task}"] = r["bpb"]
  for cap, v in results.get("capability_bpb", {}).items():
    flat[f"eval/bpb/{cap}"] = v
  for name, r in results.get("benchmark_bpb", {}).items():
    flat[f"eval/benchmark_bpb/{name}"] = r["bpb"]
  for name, r in results.get("generative", {}).items():
    flat[f"eval/{name}/{r['metric']}"] = r["score"]
  if "forgetting" in results:
    flat["eval/forgetting/delta_web_bpb"] = results["forgetting"]["delta_web_bpb"]
  return flat


def write_results(workdir: str, results: dict) -> str:
  """Writes `workdir/eval/step_<N>.json` and TensorBoard scalars; returns the path."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f"step_{results['step']}.json")
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)
  writer = metric_writers.create_default_writer(out_dir, just_logging=jax.process_index() != 0)
  writer.write_scalars(results["step"], scalars(results))
  writer.close()
  return path


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  path = f.workdir if f.step < 0 else os.path.join(f.workdir, checkpoint.CKPT_SUBDIR, str(f.step))
  model = load_model(path)
  options = EvalOptions(suite=f.suite, bpb_items=f.bpb_items, gen_items=f.gen_items,
                        max_batches=f.max_batches, base=f.base)
  data_cfg = eval_data_config(model.config)
  if f.eval_mixture:
    data_cfg.mixture = f.eval_mixture
  results = evaluate(model, options, data_cfg)
  written = write_results(f.workdir, results)
  from midtrain_jax import report  # pylint: disable=g-import-not-at-top
  print(report.format_results(results))
  print(f"wrote {written}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Run directory (with checkpoints/).")
  flags.DEFINE_integer("step", -1, "Checkpoint step (default: the latest).")
  flags.DEFINE_string("suite", "default", f"{sorted(SUITES)} or a comma list of {COMPONENTS}.")
  flags.DEFINE_string("base", "", "Base checkpoint for the forgetting figure.")
  flags.DEFINE_string("eval_mixture", "", "Mixture whose held-out splits to score "
                      "(default: eval.mixture, else the run's mixture).")
  flags.DEFINE_integer("bpb_items", 32, "Items per benchmark for benchmark BPB (0 = all).")
  flags.DEFINE_integer("gen_items", 8, "Items per generative benchmark.")
  flags.DEFINE_integer("max_batches", 0, "Held-out batches per task (0 = all).")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
