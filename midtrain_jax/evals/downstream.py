"""OLMES multiple-choice accuracy during training (`eval.downstream`).

`downstream_hook` is an `EvalHook` (train/loop.py): called once with the
run's model and mesh, it samples `eval.downstream_items` items of every
`eval.downstream` task (seeded and stratified as `evaluate --items` samples
them, so the figures are those of `python -m midtrain_jax.evaluate
--suite=TASK --items=N` on the same checkpoint) and encodes them; every
evaluation then scores the same requests with the training state's params,
sharded as the train step shards them, under the run's mesh.
"""
import time

import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import loglikelihood, olmes
from midtrain_jax.evals.scoring import LoadedModel
from midtrain_jax.train import loop

# Contexts per forward pass (rounded up to a multiple of the batch mesh size).
_BATCH = 4
# The window, as `evaluate --max_len` has it by default.
MAX_LEN = 2048


def sample_tasks(config: ml_collections.ConfigDict) -> dict[str, olmes_tasks.Task]:
  """{name: the sampled task} of `eval.downstream` (`evaluate`'s sample: seed 0)."""
  return {name: olmes_tasks.sample(olmes_tasks.load_task(name), config.eval.downstream_items)
          for name in config.eval.downstream}


def scalars(results: dict) -> dict[str, float]:
  """TensorBoard scalars: `downstream/<task>/<metric>` (each of the task's accuracy
  metrics, the primary one as `primary` with its `ci95`, and gold-answer `bpb`) and
  `downstream/seconds` (the evaluation's cost)."""
  flat = {}
  for name, r in results["tasks"].items():
    prefix = f"downstream/{name}"
    flat.update({f"{prefix}/{m}": v for m, v in r["metrics"].items()})
    flat[f"{prefix}/primary"] = r["score"]
    if r.get("ci95") is not None:
      flat[f"{prefix}/ci95"] = r["ci95"]
    flat[f"{prefix}/bpb"] = r["bpb"]
  flat["downstream/seconds"] = results["seconds"]
  return flat


def summary(results: dict) -> str:
  """The progress line's part: each task's primary metric, chance marked, and the cost."""
  parts = [f"{name} {r['metric']} {r['score']:.3f} (chance {r['chance']:.2f}"
           f"{' AT CHANCE' if r['at_chance'] else ''})" for name, r in results["tasks"].items()]
  return f"{' | '.join(parts)} | downstream {results['seconds']:.1f}s"


def downstream_hook(config, graphdef, mesh, params_sharding):
  """params -> downstream `loop.Evaluation` on the mesh (None: `eval.downstream` is empty).

  Results: {"tasks": {task: `olmes.evaluate_task`'s result with `chance` and
  `at_chance`}, "seconds": the whole evaluation's wall time}.
  """
  del params_sharding  # The params arrive laid out as the train step has them.
  if not config.eval.downstream:
    return None
  model_cfg = config_lib.model_config(config.model)
  tok = tokenizer_lib.load_tokenizer(config.data.tokenizer)
  tasks = sample_tasks(config)
  encoded = {name: olmes.encode_task(tok, task) for name, task in tasks.items()}
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  batch = -(-_BATCH // shards) * shards  # Whole rows per batch shard.

  def evaluate(params) -> loop.Evaluation:
    model = LoadedModel(params, graphdef, model_cfg, config, -1, "")
    started = time.time()
    results = {}
    for name, task in tasks.items():
      task_started = time.time()
      scored = loglikelihood.loglikelihoods(model, encoded[name], max_len=MAX_LEN,
                                            batch=batch, mesh=mesh)
      r = olmes.task_result(task, encoded[name], scored, time.time() - task_started)
      r["chance"] = olmes.chance(task)
      r["at_chance"] = olmes.at_chance(r, r["chance"])
      results[name] = r
    results = {"tasks": results, "seconds": time.time() - started}
    return loop.Evaluation(results=results, scalars=scalars(results),
                           summary=summary(results))
  return evaluate
