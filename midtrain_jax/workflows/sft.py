"""A supervised fine-tuning (SFT) probe: fine-tune a model on chat data, then evaluate it.

`python -m midtrain_jax.main --config=configs/sft.py --config.train.init_from=SRC
--workdir=DIR`: SRC is any run directory (a pretraining run, an anneal, a
soup, `convert import`'s output) or an HF model folder or .gguf file
(imported once into the cache, `interop/hf.imported_run`). The probe takes
SRC's model section and tokenizer (so the chat template is the model's own
when its tokenizer has one, data/chat.py), prepares the SFT mixture with that
tokenizer, trains `sft.epochs` passes over it with the loss on response
tokens only (the mask travels from preparation through packing into the
step), and at the end writes `sft_results.json` in DIR:

  heldout      {task: {loss, bpb, tokens, bytes, docs}}: the held-out
               conversations scored on their responses only, `bpb` being
               their bits over the UTF-8 size of the response text
  benchmark    the target's benchmark (`sft.benchmark`) on its test split,
               prompts formatted with the chat template
  base         {heldout, benchmark} of the base model itself (`sft.eval_base`)
  init_from    the model probed; steps: the run's length

Running the command again resumes the run exactly (train/checkpoint.py).
"""
import json
import math
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.evals import heldout, in_training, scoring, sft_benchmark
from midtrain_jax.interop import hf
from midtrain_jax.train import checkpoint, loop

RESULTS = "sft_results.json"


def probe_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's config with the base's model and tokenizer (an HF model imported first).

  Returns:
    An unlocked, validated copy whose train.init_from is a run directory.
  """
  c = ml_collections.ConfigDict(config.to_dict())
  config_lib.validate(c)  # Names a missing train.init_from before anything is read.
  source = c.train.init_from
  if hf.is_foreign(source):
    source = hf.imported_run(source)
  base = checkpoint.load_config(source)
  c.model = ml_collections.ConfigDict(base.model.to_dict())
  c.data.tokenizer = base.data.tokenizer
  # An imported model carries no optimiser state, and an SFT probe starts its own.
  c.train.update(init_from=os.path.abspath(source), init_optimizer=False)
  config_lib.validate(c)
  return c


def set_epochs(config: ml_collections.ConfigDict) -> None:
  """train.steps from `sft.epochs` passes over the prepared mixture's training tokens.

  data.max_epochs is set one above, so the loader's repetition cap never ends
  the run early (packing leaves part of a row empty now and then).
  """
  if not config.sft.epochs:
    return
  manifest = layout.read_manifest(layout.resolve_dir(config.data))
  tokens = sum(t["train_tokens"] for t in manifest["tasks"].values())
  per_step = config.data.batch_size * config.data.seq_len
  config.train.steps = max(1, int(config.sft.epochs * tokens / per_step))
  config.data.max_epochs = math.ceil(config.sft.epochs) + 1


def evaluate(config: ml_collections.ConfigDict, path: str) -> dict:
  """Held-out response BPB of every task (all of the split) and the target's benchmark
  of the checkpoint at `path` (a workdir or step directory): {heldout[, benchmark]}."""
  model = scoring.load_model(path)
  out = {"heldout": heldout.heldout_bpb(scoring.model_eval_fn(model), config.data,
                                        stride=config.eval.heldout_stride)}
  if config.sft.benchmark:
    out["benchmark"] = sft_benchmark.score(model, config)
  return out


def _report(results: dict, benchmark: str) -> None:
  for who, r in (("base", results.get("base")), ("sft", results)):
    if r is None:
      continue
    for task, h in r["heldout"].items():
      print(f"[sft] {who} {task}: held-out response BPB {h['bpb']:.4f} "
            f"({h['docs']} conversations)", flush=True)
    if "benchmark" in r:
      b = r["benchmark"]
      print(f"[sft] {who} {benchmark} {b['metric']}: {b['score']:.3f} "
            f"(+-{b['ci95']:.3f}, {b['n_items']} items)", flush=True)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Prepares the SFT mixture, fine-tunes (resuming), evaluates; returns the results."""
  config = probe_config(config)
  sft_benchmark.check_runnable(config)  # Not after the training.
  preparation.ensure_prepared(config.data)
  set_epochs(config)
  config.lock()
  result = loop.run(config, workdir, evaluation=in_training.training_hook)
  results = {"init_from": config.train.init_from, "steps": result.step,
             **evaluate(config, workdir)}
  if config.sft.eval_base:
    results["base"] = evaluate(config, config.train.init_from)
  files.write_json(os.path.join(workdir, RESULTS), results)
  _report(results, config.sft.benchmark)
  return results


def read_results(workdir: str) -> dict:
  """The `sft_results.json` of a finished probe."""
  with open(os.path.join(workdir, RESULTS)) as f:
    return json.load(f)
