"""The probe of the bridging study: the same SFT run on the target from every
checkpoint, and the target metric after it.

The probe is the supervised fine-tuning stage (workflows/sft.py) with the
settings of configs/sft.py, except its length and LR, which the study sets so
that every checkpoint gets the same probe: `probe_steps` steps (not epochs)
on the chat task `target` (mixture `sft/<target>`, the loss on response
tokens only) from the checkpoint, fresh AdamW moments, the LR constant at
`probe_lr` then decaying linearly to 0 over the last 30%. The metric is the
target's held-out response bits per byte (lower = better), plus its
benchmark where it has one (`BENCHMARKS`; `probe_benchmark_items` items).
The probe's folder is reused like the study's runs.
"""
import json
import math
import os

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.workflows import sft, study_runs

# The benchmark each chat target is scored on after the probe (as configs/sft.py).
BENCHMARKS = {"sft_math_synthetic": "gsm8k", "sft_code_stdlib": "humaneval"}


def target_mixture(target: str) -> str:
  """The SFT mixture of a chat task, or an error naming the chat tasks."""
  name = f"sft/{target}"
  if name not in catalog.MIXTURES:
    chats = sorted(m.split("/", 1)[1] for m in catalog.MIXTURES if m.startswith("sft/"))
    raise ValueError(f"target={target!r}: the probe fine-tunes on a chat task with an "
                     f"sft/<task> mixture; choose one of {chats}.")
  return name


def check_target(target: str) -> None:
  """Fails naming the chat tasks when `target` is none of them."""
  target_mixture(target)


def probe_config(init: str, target: str, *, steps: int, lr: float,
                 benchmark_items: int, max_epochs: int = 0) -> ml_collections.ConfigDict:
  """The probe of the checkpoint `init` (a step directory or workdir), locked.

  Args:
    init: the checkpoint probed.
    target: the chat task.
    steps: the probe's steps.
    lr: its LR before the decay.
    benchmark_items: items of the target's benchmark scored (0: none).
    max_epochs: the target's repetition cap (`repeats_needed`; 0: the task's own).
  """
  benchmark = BENCHMARKS.get(target, "") if benchmark_items else ""
  c = config_lib.base_config("tiny")  # The model section is replaced by the base's.
  c.workflow = "sft"
  c.data.update(mixture=target_mixture(target), seq_len=256, batch_size=16,
                max_epochs=max_epochs)
  # As configs/sft.py: the chat data decontaminated against the benchmark scored.
  c.data.decontam.update(benchmarks=(BENCHMARKS[target],) if target in BENCHMARKS else (),
                         mode="drop")
  c.eval.benchmarks = c.data.decontam.benchmarks
  c.optim.update(schedule="wsd", lr=lr, warmup_steps=0, decay_fraction=0.3,
                 decay_shape="linear", weight_decay=0.0)
  c.train.update(init_from=init, init_optimizer=False, steps=steps, z_loss=0.0,
                 log_every_steps=max(1, steps // 2))
  c.ckpt.update(every_steps=steps, keep=1, async_save=False)
  # Scored once at the end (the whole held-out split), not in the loop.
  c.eval.update(every_steps=0, batches=0)
  # The study scores every checkpoint before its probe itself (once, the base included).
  c.sft.update(epochs=0.0, benchmark=benchmark, benchmark_items=benchmark_items,
               eval_base=False)
  c = sft.probe_config(c)
  c.lock()
  return c


def target_data_config(init: str, target: str) -> ml_collections.ConfigDict:
  """The probe's `data` section (the target's chat data, with the model's tokenizer),
  prepared."""
  data_cfg = probe_config(init, target, steps=1, lr=1.0, benchmark_items=0).data
  preparation.ensure_prepared(data_cfg)
  return data_cfg


def repeats_needed(data_cfg, steps: int) -> int:
  """Passes over the prepared target's training tokens that `steps` steps may take, plus
  one (packing leaves rows part empty): a small chat set must not run out mid-probe."""
  manifest = layout.read_manifest(layout.resolve_dir(data_cfg))
  tokens = sum(t["train_tokens"] for t in manifest["tasks"].values())
  return math.ceil(steps * data_cfg.batch_size * data_cfg.seq_len / max(tokens, 1)) + 1


def _summary(results: dict, target: str) -> dict:
  """What the study keeps of sft_results.json: the target's response BPB, the benchmark."""
  out = {"target_bpb": results["heldout"][target]["bpb"],
         "target_loss": results["heldout"][target]["loss"]}
  if "benchmark" in results:
    out["benchmark"] = {k: results["benchmark"][k]
                        for k in ("metric", "score", "ci95", "n_items")
                        if k in results["benchmark"]}
  return out


def probe_or_reuse(init: str, target: str, workdir: str, *, steps: int, lr: float,
                   benchmark_items: int, log=print) -> dict:
  """Probes the checkpoint `init` on `target` in `workdir` (reused when done).

  Args:
    init, target, steps, lr, benchmark_items: as `probe_config`'s.
    workdir: the probe's folder.
    log: progress printer.

  Returns:
    {target_bpb, target_loss[, benchmark: {metric, score, ci95, n_items}]}.
  """
  epochs = repeats_needed(target_data_config(init, target), steps)
  config = probe_config(init, target, steps=steps, lr=lr, benchmark_items=benchmark_items,
                        max_epochs=epochs)

  def evaluate() -> dict:
    path = os.path.join(workdir, sft.RESULTS)
    if not os.path.exists(path):  # Trained earlier, stopped before its evaluation.
      files.write_json(path, sft.evaluate(config, workdir))
    with open(path, encoding="utf-8") as f:
      return _summary(json.load(f), target)

  return study_runs.train_or_reuse(f"probe of {init}", config, workdir, evaluate, log=log,
                                   tag="bridging", train=sft.run)
