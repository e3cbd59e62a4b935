"""Dense vs upcycled vs drop-upcycled: the drop-upcycling paper's comparison at CPU scale.

Command line: `python -m midtrain_jax.upcycle_study` (midtrain_jax/upcycle_study.py).

From one dense base checkpoint, three continuations on the same mixture, the
same tokens and the same schedule (linear decay to zero from the LR the base
had at that checkpoint, fresh AdamW moments for all three, since the MoE
models have none to inherit):
  dense      the base itself;
  upcycle    every expert a copy of the dense FFN (r = 0);
  drop_r     drop-upcycled with ratio r (0.5 in the paper).
Each is scored on held-out bits per byte per capability; the MoE runs also
report how evenly their routers spread tokens over the experts on the
held-out data (busiest expert's load over the mean; 1.0 = balanced) and the
load-balancing loss. Finished runs and their evaluations are reused.
"""
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax import files
from midtrain_jax.data.load import heldout_batches, prepared
from midtrain_jax.evals import heldout, scoring, tables
from midtrain_jax.interop import upcycle
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts
from midtrain_jax.workflows import training


def continue_config(init: str, mixture: str, tokens: int, lr: float,
                    eval_batches: int) -> ml_collections.ConfigDict:
  """A locked anneal config continuing the checkpoint `init` (its model and data layout)."""
  source, step = checkpoint.resolve_base(init)
  c = source.config(step)
  c.workflow = "train"
  c.data.mixture = mixture
  c.eval.update(mixture=mixture, batches=eval_batches, every_steps=0)
  c.optim.update(schedule="anneal", anneal_start="config", lr=lr, warmup_steps=0,
                 warmup_fraction=0.0)
  steps = max(1, round(tokens / (c.data.batch_size * c.data.seq_len)))
  c.train.update(steps=steps, init_from=os.path.abspath(init), init_optimizer=False,
                 log_every_steps=max(1, min(10, steps // 4)))
  c.ckpt.update(every_steps=steps, keep=1, async_save=False)
  return config_lib.finalize(c)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _expert_tokens(params, batch, *, graphdef):
  _, _, aux = ts.token_losses(params, graphdef, batch, with_aux=True)
  return aux["expert_tokens"], aux["moe_load_balance"]


def expert_load(model: scoring.LoadedModel, data_cfg, max_batches: int) -> dict:
  """Router statistics of a MoE model over the held-out splits of `data_cfg`'s tasks.

  Returns:
    {expert_tokens: assignments per MoE layer and expert, summed over tasks,
     load_max: busiest expert over the mean in the worst layer (1.0 =
     balanced), load_balance: mean load-balancing loss over batches}.
  """
  counts, balance = 0.0, []
  for task in prepared.task_names(data_cfg):
    for batch in heldout_batches.make_eval_iterator(data_cfg, task, max_batches=max_batches):
      inputs = {k: jnp.asarray(batch[k]) for k in ts.MODEL_INPUTS}
      tokens, lb = _expert_tokens(model.params, inputs, graphdef=model.graphdef)
      counts += np.asarray(tokens)
      balance.append(float(lb))
  load_max = counts.max(axis=1) / counts.mean(axis=1)
  return {"expert_tokens": counts.tolist(), "load_max": float(load_max.max()),
          "load_balance": float(np.mean(balance))}


def _train_and_evaluate(name: str, config, workdir: str, max_batches: int, log) -> dict:
  saved = os.path.join(workdir, "study.json")
  if checkpoint.is_finished(workdir, config.train.steps) and os.path.exists(saved):
    log(f"[upcycle_study] {name}: finished earlier, reusing {saved}")
    with open(saved, encoding="utf-8") as f:
      return json.load(f)
  if not checkpoint.is_finished(workdir, config.train.steps):
    log(f"[upcycle_study] {name}: training {config.train.steps} steps -> {workdir}")
    training.run(config, workdir)
  model = scoring.load_model(workdir)
  data_cfg = heldout.eval_data_config(config)
  result = {"heldout": heldout.heldout_bpb(scoring.model_eval_fn(model), data_cfg,
                                           max_batches=max_batches,
                                           stride=config.eval.heldout_stride)}
  result["capability_bpb"] = heldout.capability_bpb(result["heldout"])
  if model.model_cfg.moe_experts:
    result["router"] = expert_load(model, data_cfg, max_batches)
  files.write_json(saved, result)
  return result


def run(base: str, workdir: str, *, tokens: int, experts: int = 8, top_k: int = 2,
        drop_ratio: float = 0.5, mixture: str = "dolmino_demo", seed: int = 0,
        max_batches: int = 0, log=print) -> list[dict]:
  """Runs the three continuations and prints the table.

  Args:
    base: the dense base checkpoint (workdir or step directory).
    workdir: one sub-folder per run and per upcycled start, plus study.json / .txt.
    tokens: training tokens per run.
    experts, top_k: the MoE shape (expert width = the dense MLP width).
    drop_ratio: r of the drop-upcycled run.
    mixture: the continuation's mixture (its held-out splits are scored).
    seed: drop-upcycling seed.
    max_batches: held-out batches per task (0 = whole splits).
    log: progress printer.

  Returns:
    One row per run: capability BPB, their mean, router load.
  """
  lr = checkpoint.base_lr(base)
  log(f"[upcycle_study] base {base}: continuing from its LR {lr:.3g}, linearly to 0")
  starts = {"dense": base}
  for name, ratio in (("upcycle", 0.0), (f"drop_{drop_ratio:g}", drop_ratio)):
    start = os.path.join(workdir, "starts", name)
    if checkpoint.Checkpointer(start).latest_step() is None:
      upcycle.upcycle(base, start, experts=experts, top_k=top_k, drop_ratio=ratio, seed=seed,
                      log=log)
    starts[name] = start
  results = {name: _train_and_evaluate(
      name, continue_config(start, mixture, tokens, lr, max_batches),
      os.path.join(workdir, name), max_batches, log) for name, start in starts.items()}
  rows = []
  for name, result in results.items():
    row = {"run": name, **result["capability_bpb"]}
    row["mean"] = float(np.mean(list(result["capability_bpb"].values())))
    router = result.get("router", {})
    row["load_max"] = router.get("load_max", float("nan"))
    row["load_balance"] = router.get("load_balance", float("nan"))
    rows.append(row)
  steps = continue_config(base, mixture, tokens, lr, max_batches).train.steps
  text = (f"Upcycling study ({tokens:,} tokens, {steps} steps per run on {mixture}; held-out "
          f"BPB per capability, lower = better; {experts} experts top-{top_k}; load_max = "
          "busiest expert / mean on held-out data, 1.0 = balanced):\n"
          + tables.format_table(rows))
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, "study.json"),
                   {"base": base, "tokens": tokens, "rows": rows, "results": results})
  files.write_text(os.path.join(workdir, "study.txt"), text + "\n")
  log(text)
  return rows
