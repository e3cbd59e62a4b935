"""The evaluation a training run does between its steps: held-out BPB per task and
OLMES accuracy (`eval.downstream`).

`training_hook` is the training loop's `EvalHook` (train/loop.py): the loop
calls it once with the run's model and mesh and then evaluates the params
every `eval.every_steps` steps and at the end: `heldout_hook` on
`eval.batches` batches of every task's held-out split (the same documents at
every step), `downstream.downstream_hook` on the same items of every
`eval.downstream` task.
"""
import jax

from midtrain_jax.evals import downstream, heldout, suite
from midtrain_jax.parallel import sharding
from midtrain_jax.train import loop
from midtrain_jax.train import step as ts


def heldout_hook(config, graphdef, mesh, params_sharding):
  """params -> held-out `loop.Evaluation`, sharded like the train step (None: disabled)."""
  if not config.eval.batches:
    return None
  eval_step = ts.jit_eval_step(graphdef, mesh, params_sharding)
  data_cfg = heldout.eval_data_config(config)

  def evaluate(params) -> loop.Evaluation:
    fn = lambda b: eval_step(params, sharding.host_batch_to_global(
        {k: b[k] for k in ts.MODEL_INPUTS}, mesh))
    results = heldout.heldout_bpb(fn, data_cfg, max_batches=config.eval.batches,
                                  stride=config.eval.heldout_stride,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())
    capabilities = heldout.capability_bpb(results)
    caps = " | ".join(f"{c} {v:.3f}" for c, v in sorted(capabilities.items()))
    return loop.Evaluation(
        results=results,
        scalars=suite.scalars({"heldout": results, "capability_bpb": capabilities}),
        summary=f"held-out BPB {caps}")
  return evaluate


# The parts of training's evaluation, by the key their results have.
HOOKS = {"heldout": heldout_hook, "downstream": downstream.downstream_hook}


def training_hook(config, graphdef, mesh, params_sharding):
  """params -> `loop.Evaluation` of every enabled part of `HOOKS` (None: none is).

  Its results are {part: that part's results}; its scalars and progress line
  are theirs together.
  """
  parts = {name: hook(config, graphdef, mesh, params_sharding)
           for name, hook in HOOKS.items()}
  parts = {name: fn for name, fn in parts.items() if fn is not None}
  if not parts:
    return None

  def evaluate(params) -> loop.Evaluation:
    done = {name: fn(params) for name, fn in parts.items()}
    return loop.Evaluation(
        results={name: e.results for name, e in done.items()},
        scalars={k: v for e in done.values() for k, v in e.scalars.items()},
        summary=" | ".join(e.summary for e in done.values()))
  return evaluate
