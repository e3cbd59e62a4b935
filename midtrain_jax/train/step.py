"""Pure training and evaluation steps, and sharded state creation. No I/O.

The train state is a pytree of plain arrays (params as a nested dict), so
orbax, souping and the optimiser all see the same structure. The model's
graph definition is static and closed over when the step is jitted.
"""
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from midtrain_jax.model import moe
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.parallel import sharding
from midtrain_jax.train import losses, optim

# `loss_mask` weighs each position's loss: 1 on scored targets, 0 on padding
# and on tokens that are only context (held-out windows; prompts in SFT).
MODEL_INPUTS = ("inputs", "targets", "segment_ids", "positions", "loss_mask")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def abstract_model(cfg: ModelConfig):
  """(graphdef, abstract params dict, logical axes dict) without allocating."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  is_var = lambda x: isinstance(x, nnx.Variable)
  # A scanned layer's parameters carry their layer's axes; the stacking axis
  # in front is `layers` (sharding.LOGICAL_RULES).
  axes = jax.tree.map(lambda v: (("layers",) * (v.value.ndim - len(v.get_metadata()["axes"]))
                                 + tuple(v.get_metadata()["axes"])), state, is_leaf=is_var)
  return graphdef, nnx.to_pure_dict(state), nnx.to_pure_dict(axes)


def param_shardings(abstract_params, axes, mesh: Mesh):
  """NamedSharding per parameter from its logical axes (see sharding.LOGICAL_RULES)."""
  return jax.tree.map(lambda p, a: sharding.named_sharding(mesh, a, p.shape),
                      abstract_params, axes, is_leaf=lambda x: isinstance(x, tuple))


def state_shardings(tx: optax.GradientTransformation, abstract_params, params_sharding,
                    mesh: Mesh) -> TrainState:
  """Shardings of the whole train state: optimiser moments follow their params."""
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_sharding = optax.tree_utils.tree_map_params(
      tx, lambda _, s: s, abstract_opt, params_sharding,
      transform_non_params=lambda _: sharding.replicated(mesh),
      is_leaf=lambda x: isinstance(x, NamedSharding))
  return TrainState(step=sharding.replicated(mesh), params=params_sharding,
                    opt_state=opt_sharding)


def init_params(cfg: ModelConfig, key):
  """Freshly initialised params as a nested dict (call under jit for sharding)."""
  return nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(params=key))))


def init_state(cfg: ModelConfig, tx, seed: int, shardings: TrainState,
               params=None) -> TrainState:
  """A train state created directly in its sharded layout (never on one device).

  Args:
    cfg: model config.
    tx: the optimiser.
    seed: parameter init seed.
    shardings: TrainState of NamedShardings.
    params: optional existing (sharded) params; then only the optimiser
      state is created fresh.
  """
  def init(key, params):
    params = init_params(cfg, key) if params is None else params
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  in_shardings = (None, None if params is None else shardings.params)
  return jax.jit(init, in_shardings=in_shardings, out_shardings=shardings)(
      jax.random.key(seed), params)


def token_losses(params, graphdef, batch, with_aux: bool = False):
  """Per-token cross entropy and log-partition, both [B, T] float32 (evaluation;
  training takes the fused `loss_sums`).

  With `with_aux`, also the model's MoE auxiliary outputs
  (`Transformer.hidden_and_aux`; {} for a dense model).
  """
  model = nnx.merge(graphdef, params)
  x, aux = model.hidden_and_aux(batch["inputs"], batch["positions"], batch["segment_ids"])
  ce, log_z = losses.token_losses(x, model.head_weight(), batch["targets"],
                                  model.cfg.vocab_size, model.cfg.matmul)
  return (ce, log_z) + ((aux,) if with_aux else ())


def loss_weights(batch):
  """Each position's loss weight, float32 [B, T]: the batch's `loss_mask`."""
  return batch["loss_mask"].astype(jnp.float32)


def loss_sums(params, graphdef, batch, z_loss: float):
  """Summed (not averaged) loss over scored tokens (`loss_mask`): what microbatches
  add up.

  The output layer and cross entropy are fused (`train/losses.py`): the
  [tokens, vocab] logits are never materialised. A MoE model's auxiliary
  losses (means over this batch's real tokens) enter weighted by its real
  tokens. The router z-loss so adds up over microbatches exactly; the
  load-balancing loss, a product of two means, does not: the differentiated
  total holds each microbatch's own, while the per-expert totals returned let
  the step report the whole batch's (`moe.batch_aux`; model/moe.py's
  docstring).

  Returns:
    (cross entropy + z_loss * z (+ MoE losses) summed over tokens,
     {ce_sum, z_sum, tokens} plus, for a MoE model, moe_router_z_sum and the
     per-layer expert_tokens and expert_probs totals).
  """
  model = nnx.merge(graphdef, params)
  x, aux = model.hidden_and_aux(batch["inputs"], batch["positions"], batch["segment_ids"])
  weights = loss_weights(batch)
  total, ce_sum, z_sum = losses.loss_sums(x, model.head_weight(), batch["targets"], weights,
                                          z_loss, model.cfg.vocab_size, model.cfg.matmul)
  sums = {"ce_sum": ce_sum, "z_sum": z_sum, "tokens": weights.sum()}
  if aux:
    sums.update(moe_router_z_sum=aux["moe_router_z"] * sums["tokens"],
                expert_tokens=aux["expert_tokens"], expert_probs=aux["expert_probs"])
    total = total + aux["moe_loss"] * sums["tokens"]
  return total, sums


def _model_config(graphdef, params) -> ModelConfig:
  return nnx.merge(graphdef, params).cfg


def _means(sums, cfg: ModelConfig) -> dict:
  n_tokens = jnp.maximum(sums["tokens"], 1.0)
  means = {"loss": sums["ce_sum"] / n_tokens, "z_loss": sums["z_sum"] / n_tokens,
           "tokens": sums["tokens"]}
  if "expert_tokens" in sums:
    # From the batch's totals: the batch's values however it was split.
    means.update(moe.batch_aux(cfg, sums["expert_tokens"], sums["expert_probs"],
                               sums["moe_router_z_sum"], sums["tokens"]))
    counts_LE = sums["expert_tokens"]
    means["expert_tokens"] = counts_LE.sum(axis=0)
    # Busiest expert's load over the mean load per layer: 1 when balanced, E
    # when collapsed; the progress line shows the worst layer.
    by_layer = counts_LE.max(axis=1) / jnp.maximum(counts_LE.mean(axis=1), 1e-9)
    means["expert_load_max_by_layer"] = by_layer
    means["expert_load_max"] = by_layer.max()
  return means


def loss_fn(params, graphdef, batch, z_loss: float):
  """Mean next-token loss over scored tokens, plus z-loss (and MoE losses)."""
  total, sums = loss_sums(params, graphdef, batch, z_loss)
  return total / jnp.maximum(sums["tokens"], 1.0), _means(sums, _model_config(graphdef, params))


def split_microbatches(batch, microbatches: int):
  """[B, ...] arrays -> [microbatches, B / microbatches, ...].

  Microbatch m takes rows m, m + M, m + 2M, ...: with the batch axis sharded
  in contiguous blocks, every microbatch then spans every device evenly, so
  the split needs no communication.
  """
  def split(x):
    rows = x.shape[0] // microbatches
    return x.reshape((rows, microbatches) + x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(split, batch)


def accumulated_grads(params, graphdef, batch, z_loss: float, microbatches: int):
  """Gradient of the batch's mean loss, computed one microbatch at a time.

  Gradients and loss terms are summed over tokens in float32 across the
  microbatches (a scan, so activations of one microbatch are live at a time)
  and divided by the batch's scored-token count (`loss_mask`) at the end:
  microbatches with more padding weigh less, exactly as in the one-shot step.

  A MoE model's reported aux losses are the whole batch's (from per-expert
  totals); the gradient of its load-balancing loss is that of the
  microbatches' own balance losses weighted by their real tokens, not the
  batch's (model/moe.py's docstring says why). The router z-loss and all else
  match the one-shot step exactly (with dropless dispatch: capacity is per call).

  Returns:
    (grads, metrics) as the one-shot step's.
  """
  grad_fn = jax.grad(loss_sums, has_aux=True)

  def add(acc, microbatch):
    grads, sums = grad_fn(params, graphdef, microbatch, z_loss)
    return jax.tree.map(lambda a, g: a + g.astype(jnp.float32), acc, (grads, sums)), None

  microbatches_tree = split_microbatches(batch, microbatches)
  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  sums_shape = jax.eval_shape(lambda mb: loss_sums(params, graphdef, mb, z_loss)[1],
                              jax.tree.map(lambda x: x[0], microbatches_tree))
  zero_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), sums_shape)
  (grad_sums, sums), _ = jax.lax.scan(add, (zeros, zero_sums), microbatches_tree)
  n_tokens = jnp.maximum(sums["tokens"], 1.0)
  grads = jax.tree.map(lambda g, p: (g / n_tokens).astype(p.dtype), grad_sums, params)
  return grads, _means(sums, _model_config(graphdef, params))


# The norms a step must keep finite, and what each one is of (train.on_nonfinite).
MUST_BE_FINITE = {"loss": "loss", "grad_norm": "gradient", "update_norm": "update",
                  "param_norm": "parameters"}


def _unless_nonfinite(new: TrainState, old: TrainState, metrics) -> TrainState:
  """`new`, or `old` with only the step advanced when any of MUST_BE_FINITE is not finite.

  The optimiser state (its schedule count included) stays as it was, as
  optax.apply_if_finite leaves it; `metrics["skipped"]` says which happened.
  """
  finite = jnp.all(jnp.stack([jnp.isfinite(metrics[k]) for k in MUST_BE_FINITE]))
  metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
  keep = lambda n, o: jnp.where(finite, n, o)
  return TrainState(step=new.step, params=jax.tree.map(keep, new.params, old.params),
                    opt_state=jax.tree.map(keep, new.opt_state, old.opt_state))


def train_step(state: TrainState, batch, *, graphdef, tx, schedule, z_loss: float,
               microbatches: int = 1, skip_nonfinite: bool = False):
  """One optimiser step over the batch (in `microbatches` pieces). Returns (new state, metrics).

  With `skip_nonfinite` a step with a non-finite loss, gradient, update or
  parameter norm leaves params and optimiser state as they were.
  """
  if microbatches > 1:
    grads, metrics = accumulated_grads(state.params, graphdef, batch, z_loss, microbatches)
  else:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, graphdef, batch, z_loss)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics.update(grad_norm=optax.global_norm(grads), param_norm=optax.global_norm(params),
                 update_norm=optax.global_norm(updates),
                 lr=optim.applied_lr(schedule, state.opt_state))
  new = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
  if skip_nonfinite:
    new = _unless_nonfinite(new, state, metrics)
  return new, metrics


def all_finite(state: TrainState) -> dict[str, jax.Array]:
  """Whether every value of the params and of the optimiser state is finite (jit it):
  checked before a save, so that nothing non-finite is ever written."""
  finite = lambda tree: jnp.all(jnp.stack(
      [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
       if jnp.issubdtype(x.dtype, jnp.inexact)] or [jnp.bool_(True)]))
  return {"parameters": finite(state.params), "optimiser state": finite(state.opt_state)}


def eval_step(params, batch, *, graphdef):
  """Summed loss (nats) and count of the scored tokens (`loss_mask`) of a batch:
  callers aggregate."""
  ce, _ = token_losses(params, graphdef, batch)
  weights = loss_weights(batch)
  return {"nats": (ce * weights).sum(), "tokens": weights.sum()}


def _under_mesh(jitted, mesh: Mesh):
  """Calls (and so traces) `jitted` with `mesh` set: the model's activation
  constraints (`sharding.constrain`) need it."""
  @functools.wraps(jitted)
  def call(*args):
    with jax.set_mesh(mesh):
      return jitted(*args)
  return call


def jit_train_step(graphdef, tx, schedule, z_loss: float, mesh: Mesh,
                   shardings: TrainState, microbatches: int = 1, skip_nonfinite: bool = False):
  """The train step jitted with explicit shardings; the old state is donated."""
  batch_sharding = {k: sharding.batch_sharding(mesh) for k in MODEL_INPUTS}
  step = functools.partial(train_step, graphdef=graphdef, tx=tx, schedule=schedule,
                           z_loss=z_loss, microbatches=microbatches,
                           skip_nonfinite=skip_nonfinite)
  return _under_mesh(jax.jit(step, in_shardings=(shardings, batch_sharding),
                             out_shardings=(shardings, sharding.replicated(mesh)),
                             donate_argnums=0), mesh)


def jit_eval_step(graphdef, mesh: Mesh, params_sharding):
  batch_sharding = {k: sharding.batch_sharding(mesh) for k in MODEL_INPUTS}
  return _under_mesh(jax.jit(functools.partial(eval_step, graphdef=graphdef),
                             in_shardings=(params_sharding, batch_sharding),
                             out_shardings=sharding.replicated(mesh)), mesh)
