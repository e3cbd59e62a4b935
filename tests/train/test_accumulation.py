"""Gradient accumulation (train.microbatches) equals the one-shot step."""
import jax
import numpy as np
import pytest
from flax import nnx

from midtrain_jax.parallel import sharding
from midtrain_jax.train import loop
from midtrain_jax.train import step as ts
from tests import helpers


def _uneven_batch():
  """16 rows whose microbatches (rows m, m+4, ...) hold very different token counts."""
  batch = helpers.text_batch(16, 32, docs_per_row=2)
  seg = batch["segment_ids"]
  seg[1::4, 8:] = 0   # Microbatch 1: a quarter of its tokens.
  seg[3::4, 2:] = 0   # Microbatch 3: almost nothing.
  batch["loss_mask"] = (seg > 0).astype(batch["loss_mask"].dtype)  # As packing makes it.
  return batch


def _setup(mesh_shape=(2, 2, 2)):
  cfg = helpers.tiny_model()
  s = helpers.train_setup(cfg, mesh_shape)
  return cfg, s.mesh, s.schedule, s.tx, s.graphdef, s.shardings


def test_microbatches_equal_the_one_shot_step():
  cfg, mesh, schedule, tx, graphdef, shardings = _setup()
  host = _uneven_batch()
  batch = sharding.host_batch_to_global(host, mesh)
  state = ts.init_state(cfg, tx, 0, shardings)
  with jax.set_mesh(mesh):
    grads, metrics = jax.device_get(jax.jit(
        lambda p, b: ts.accumulated_grads(p, graphdef, b, 1e-4, 4))(state.params, batch))
    (_, one_shot), ref = jax.device_get(jax.jit(jax.value_and_grad(
        lambda p, b: ts.loss_fn(p, graphdef, b, 1e-4), has_aux=True))(state.params, batch))
    ce, _ = jax.device_get(jax.jit(lambda p, b: ts.token_losses(p, graphdef, b))(
        state.params, batch))
  assert float(metrics["loss"]) == pytest.approx(float(one_shot["loss"]), rel=1e-5)
  assert float(metrics["tokens"]) == float(one_shot["tokens"])
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
  # Averaging the microbatches' mean losses would be wrong here: their token
  # counts differ, so the test can tell token weighting from a plain mean.
  weights = host["segment_ids"] > 0
  means = [ce[m::4][weights[m::4]].mean() for m in range(4)]
  assert abs(np.mean(means) - float(one_shot["loss"])) > 50 * 1e-5 * float(one_shot["loss"])

  # The jitted train step with train.microbatches: the same loss and gradient norm.
  step = ts.jit_train_step(graphdef, tx, schedule, 1e-4, mesh, shardings, microbatches=4)
  _, step_metrics = step(state, batch)
  assert float(step_metrics["loss"]) == pytest.approx(float(one_shot["loss"]), rel=1e-5)
  assert float(step_metrics["grad_norm"]) == pytest.approx(
      float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in jax.tree.leaves(ref)))),
      rel=1e-4)


def test_microbatch_sizes_are_checked_before_training(tmp_path):
  c = helpers.small_config(2)
  c.train.microbatches = 3
  with pytest.raises(ValueError, match="does not split into config.train.microbatches=3"):
    loop.run(c, str(tmp_path))
  c.train.microbatches = 4  # 8 rows -> 2 per microbatch, over 8 data shards.
  with pytest.raises(ValueError, match="microbatch of 2 rows"):
    loop.run(c, str(tmp_path))


def test_moe_reports_the_batch_aux_loss_under_microbatches():
  """The reported MoE losses with train.microbatches=4 are the whole batch's; the
  gradient is the documented one: each microbatch's load-balancing loss weighted by
  its share of the batch's tokens (its own load fractions, not the batch's)."""
  cfg = helpers.tiny_model(moe_experts=4, moe_top_k=2, moe_mlp_dim=64,
                           moe_load_balance_loss=1.0, moe_router_z_loss=0.01)
  s = helpers.train_setup(cfg, (1, 1, 1), jax.devices()[:1])
  graphdef = s.graphdef
  host = _uneven_batch()
  batch = sharding.host_batch_to_global(host, s.mesh)
  state = ts.init_state(cfg, s.tx, 0, s.shardings)

  def balance(p, b):
    model = nnx.merge(graphdef, p)
    _, aux = model.hidden_and_aux(b["inputs"], b["positions"], b["segment_ids"])
    return aux["moe_load_balance"], (b["segment_ids"] > 0).sum()

  def documented(p, b):
    """One-shot loss with the batch's balance loss swapped for the token-weighted
    mean of the microbatches' own."""
    loss, _ = ts.loss_fn(p, graphdef, b, 1e-4)
    lbs, counts = jax.lax.map(lambda mb: balance(p, mb), ts.split_microbatches(b, 4))
    per_microbatch = (lbs * counts).sum() / counts.sum()
    return loss + cfg.moe_load_balance_loss * (per_microbatch - balance(p, b)[0]), (
        per_microbatch, lbs)

  with jax.set_mesh(s.mesh):
    grads, m4 = jax.device_get(jax.jit(
        lambda p, b: ts.accumulated_grads(p, graphdef, b, 1e-4, 4))(state.params, batch))
    (_, m1), full = jax.device_get(jax.jit(jax.value_and_grad(
        lambda p, b: ts.loss_fn(p, graphdef, b, 1e-4), has_aux=True))(state.params, batch))
    (_, (mean_lb, lbs)), expected = jax.device_get(jax.jit(jax.value_and_grad(
        documented, has_aux=True))(state.params, batch))
  for key in ("moe_load_balance", "moe_router_z", "moe_loss"):
    assert float(m4[key]) == pytest.approx(float(m1[key]), rel=1e-5), key
  np.testing.assert_array_equal(m4["expert_tokens"], m1["expert_tokens"])
  # The microbatches' balance losses differ from the batch's: the token-weighted
  # mean of them is not the batch's value.
  assert abs(float(mean_lb) - float(m1["moe_load_balance"])) > 1e-3, (mean_lb, lbs)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
  # ... and so the gradient differs from the one-shot step's, by the balance term only.
  diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(grads),
                                                       jax.tree.leaves(full)))
  assert diff > 1e-5
