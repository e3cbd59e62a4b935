"""Mixture-of-experts layers: every dispatch path equals a loop over experts."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from midtrain_jax import config as config_lib
from midtrain_jax.model import layer_stack, moe
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.parallel import sharding
from midtrain_jax.train import metrics
from midtrain_jax.train import step as ts
from tests import helpers

N, D, F, E, K = 96, 32, 48, 8, 2


def _weights(seed=0):
  ks = jax.random.split(jax.random.key(seed), 5)
  x = jax.random.normal(ks[0], (N, D))
  router = jax.random.normal(ks[1], (D, E))
  experts = tuple(0.2 * jax.random.normal(k, s) for k, s in
                  zip(ks[2:], [(E, D, F), (E, D, F), (E, F, D)]))
  return x, router, experts


def _reference(x, router, experts, k=K, kept=None):
  """A loop over experts: each one runs on every token, weighted by its gate (0 if unchosen)."""
  gate, up, down = experts
  probs = jax.nn.softmax(x @ router, axis=-1)
  top_p, top_e = jax.lax.top_k(probs, k)
  gates = top_p / top_p.sum(-1, keepdims=True)
  if kept is not None:
    gates = gates * kept
  out = 0
  for e in range(gate.shape[0]):
    y = (jax.nn.silu(x @ gate[e]) * (x @ up[e])) @ down[e]
    out = out + (gates * (top_e == e)).sum(-1)[:, None] * y
  return out


def _layer(dispatch, capacity_factor=1.25):
  def run(x, router, experts):
    _, _, chosen, gates = moe.route(x, router, K)
    if dispatch == "capacity":
      return moe.capacity(x, chosen, gates, experts, capacity_factor)
    return moe.dropless(x, chosen, gates, experts)
  return run


@pytest.mark.parametrize("dispatch", ["dropless", "capacity"])
def test_dispatch_equals_loop_over_experts_with_gradients(dispatch):
  x, router, experts = _weights()
  # A capacity large enough that nothing is dropped.
  run = _layer(dispatch, capacity_factor=float(E))
  np.testing.assert_allclose(run(x, router, experts), _reference(x, router, experts),
                             atol=1e-5, rtol=1e-5)
  probe = jax.random.normal(jax.random.key(9), (N, D))
  grads = jax.grad(lambda *a: (run(*a) * probe).sum(), argnums=(0, 1, 2))(x, router, experts)
  ref = jax.grad(lambda *a: (_reference(*a) * probe).sum(), argnums=(0, 1, 2))(
      x, router, experts)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def _kept(chosen, slots, real=None):
  """Which (token, choice) assignments capacity dispatch keeps: first choices of all
  real tokens claim slots before any second choice, then by position; padding
  claims none and is never kept."""
  real = np.ones(len(chosen), bool) if real is None else real
  kept, used = np.zeros(chosen.shape, bool), np.zeros(E, int)
  for j in range(K):
    for n in np.flatnonzero(real):
      e = chosen[n, j]
      kept[n, j] = used[e] < slots
      used[e] += 1
  return kept


def test_capacity_drops_exactly_the_assignments_past_each_experts_capacity():
  x, router, experts = _weights(1)
  factor = 0.5
  slots = int(np.ceil(factor * N * K / E))
  _, _, chosen, _ = moe.route(x, router, K)
  kept = _kept(np.asarray(chosen), slots)
  assert 0 < (~kept).sum() < N * K  # Some, not all, assignments dropped.
  out = _layer("capacity", factor)(x, router, experts)
  np.testing.assert_allclose(out, _reference(x, router, experts, kept=jnp.asarray(kept)),
                             atol=1e-5, rtol=1e-5)


def _padded_rows():
  """Two rows of N / 2 tokens: the first half real then padding, the second all real."""
  real = np.ones(N, bool)
  real[N // 4:N // 2] = False
  return real


def test_capacity_gives_padding_no_slot_and_real_tokens_ignore_its_content():
  x, router, experts = _weights(5)
  real = _padded_rows()
  factor = 0.5
  slots = int(np.ceil(factor * N * K / E))

  def run(x):
    _, _, chosen, gates = moe.route(x, router, K)
    return moe.capacity(x, chosen, gates, experts, factor, real_N=jnp.asarray(real)), chosen
  out, chosen = run(x)
  kept = _kept(np.asarray(chosen), slots, real)
  # Capacity is tight: real tokens lose assignments to each other, never to padding.
  assert 0 < (~kept[real]).sum() < real.sum() * K
  np.testing.assert_allclose(out, _reference(x, router, experts, kept=jnp.asarray(kept)),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(out[~real], 0)
  other = x.at[~real].set(jax.random.normal(jax.random.key(6), (int((~real).sum()), D)))
  np.testing.assert_array_equal(run(other)[0][real], out[real])


def test_dropless_gives_padding_no_expert_output():
  x, router, experts = _weights(7)
  real = _padded_rows()
  _, _, chosen, gates = moe.route(x, router, K)
  out = moe.dropless(x, chosen, gates, experts, real_N=jnp.asarray(real))
  np.testing.assert_allclose(out[real], _reference(x, router, experts)[real], atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_array_equal(out[~real], 0)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_padding_content_never_changes_real_tokens_under_tight_capacity(scan_layers):
  """Packed rows: row 0 ends in padding, row 1 is real text. Changing the padding's
  ids must change nothing for the real tokens (outputs, router statistics)."""
  cfg = _moe_model(moe_dispatch="capacity", moe_capacity_factor=0.5, n_layers=4,
                   scan_layers=scan_layers)
  batch = helpers.text_batch(2, 32)
  batch["segment_ids"][0, 16:] = 0
  batch["positions"][0, 16:] = 0
  other = {**batch, "inputs": batch["inputs"].copy()}
  other["inputs"][0, 16:] = (other["inputs"][0, 16:] * 7 + 101) % cfg.vocab_size
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  run = jax.jit(lambda p, b: nnx.merge(graphdef, p).hidden_and_aux(
      b["inputs"], b["positions"], b["segment_ids"]))
  (x, aux), (x_other, aux_other) = run(params, batch), run(params, other)
  real = batch["segment_ids"] > 0
  np.testing.assert_array_equal(x_other[real], x[real])
  for key in ("moe_load_balance", "moe_router_z", "expert_tokens"):
    np.testing.assert_array_equal(aux_other[key], aux[key])


def test_megablox_kernel_in_interpret_mode_equals_ragged_dot():
  x, router, experts = _weights(2)
  run = _layer("dropless")
  expected = run(x, router, experts)
  probe = jax.random.normal(jax.random.key(3), (N, D))
  expected_grad = jax.grad(lambda x: (run(x, router, experts) * probe).sum())(x)
  with moe.megablox_interpret():
    got = run(x, router, experts)
    got_grad = jax.grad(lambda x: (run(x, router, experts) * probe).sum())(x)
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(got_grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_aux_losses_follow_their_formulas_over_real_tokens_only():
  x, router, _ = _weights(3)
  logits, probs, chosen, _ = moe.route(x, router, K)
  segment_ids = np.ones(N, np.int32)
  segment_ids[-20:] = 0  # Padding: must not count.
  aux = moe.aux_stats(logits, probs, chosen, jnp.asarray(segment_ids))
  real = segment_ids > 0
  p, c, lg = np.asarray(probs)[real], np.asarray(chosen)[real], np.asarray(logits)[real]
  counts = np.array([(c == e).sum() for e in range(E)], np.float64)
  share = counts / counts.sum()
  np.testing.assert_allclose(aux["expert_tokens"], counts)
  np.testing.assert_allclose(aux["moe_load_balance"], E * (share * p.mean(0)).sum(), rtol=1e-5)
  log_z = np.log(np.exp(lg.astype(np.float64)).sum(-1))
  np.testing.assert_allclose(aux["moe_router_z"], (log_z ** 2).mean(), rtol=1e-5)


def _moe_model(**changes):
  return dataclasses.replace(helpers.tiny_model(),
                             **{"moe_experts": 4, "moe_top_k": 2, "moe_mlp_dim": 64, **changes})


def test_moe_every_second_layer_scans_like_the_loop():
  # Pattern (8, 0), MoE on odd layers, 5 layers: 2 scanned groups + a dense tail.
  cfg = _moe_model(n_layers=5, moe_every=2, moe_shared_experts=1)
  scanned = dataclasses.replace(cfg, scan_layers=True)
  assert [k[1] for k in cfg.layer_kinds()] == [False, True, False, True, False]
  assert layer_stack.groups(cfg) == layer_stack.Groups(period=2, n_groups=2, n_tail=1)
  params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))))
  assert params["blocks"][1]["mlp"]["gate"].shape == (4, 64, 64)
  assert "kernel" in params["blocks"][0]["mlp"]["gate"]  # Dense layer.
  batch = helpers.text_batch(2, 32, docs_per_row=2)

  def loss_and_grads(c, p):
    graphdef, _, _ = ts.abstract_model(c)
    return jax.jit(jax.value_and_grad(lambda p: ts.loss_fn(p, graphdef, batch, 1e-4),
                                      has_aux=True))(p)
  (loss, m), grads = loss_and_grads(cfg, params)
  (s_loss, s_m), s_grads = loss_and_grads(scanned, layer_stack.scan_tree(params, scanned))
  np.testing.assert_allclose(s_loss, loss, rtol=1e-6)
  np.testing.assert_allclose(s_m["expert_tokens"], m["expert_tokens"])
  np.testing.assert_allclose(s_m["expert_load_max_by_layer"], m["expert_load_max_by_layer"])
  # Every real token is assigned top_k times in each of the 2 MoE layers.
  assert float(m["expert_tokens"].sum()) == 2 * 2 * float(m["tokens"])
  assert m["expert_load_max_by_layer"].shape == (2,)
  # Per-layer rows come out in layer order: layer 1's own counts first.
  graphdef = ts.abstract_model(cfg)[0]

  @jax.jit  # One compiled program, not an eager dispatch per op.
  def model_and_two_layers_aux(p):
    model = nnx.merge(graphdef, p)
    _, aux = model.hidden_and_aux(batch["inputs"], batch["positions"], batch["segment_ids"])
    x = model.embed(batch["inputs"], jnp.float32)
    for block in model.blocks[:2]:
      x, _, layer_aux = block(x, batch["positions"], batch["segment_ids"],
                              aux=moe.zero_aux(cfg))
    return aux, layer_aux
  aux, layer_aux = model_and_two_layers_aux(params)
  np.testing.assert_allclose(aux["expert_tokens"][0], layer_aux["expert_tokens"][-1])
  assert not np.allclose(aux["expert_tokens"][0], aux["expert_tokens"][1])
  assert float(m["moe_loss"]) > 0
  for a, b in zip(jax.tree.leaves(layer_stack.unscan_tree(s_grads, scanned)),
                  jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, atol=1e-7, rtol=1e-5)


def _two_steps(cfg, mesh_shape, devices=None):
  setup = helpers.train_setup(cfg, mesh_shape, devices)
  mesh, graphdef = setup.mesh, setup.graphdef
  state = ts.init_state(cfg, setup.tx, 0, setup.shardings)
  batch = sharding.host_batch_to_global(helpers.text_batch(8, 32, docs_per_row=2), mesh)
  with jax.set_mesh(mesh):
    grads = jax.jit(jax.grad(lambda p: ts.loss_fn(p, graphdef, batch, 1e-4)[0]))(state.params)
  step = ts.jit_train_step(graphdef, setup.tx, setup.schedule, 1e-4, mesh, setup.shardings)
  state, m1 = step(state, batch)
  state, m2 = step(state, batch)
  return jax.device_get((m1, m2, grads)), state


@pytest.mark.parametrize("dispatch", ["dropless", "capacity"])
def test_sharded_moe_steps_equal_single_device(dispatch):
  cfg = _moe_model(moe_experts=8, moe_dispatch=dispatch)
  (r1, r2, ref_grads), _ = _two_steps(cfg, (1, 1, 1), jax.devices()[:1])
  (m1, m2, grads), state = _two_steps(cfg, (2, 2, 2))
  assert state.params["blocks"][0]["mlp"]["gate"].sharding.spec == jax.sharding.PartitionSpec(
      "fsdp", None, "tensor")
  for key in ("loss", "moe_load_balance", "moe_router_z", "grad_norm"):
    np.testing.assert_allclose(m1[key], r1[key], rtol=2e-5)
    np.testing.assert_allclose(m2[key], r2[key], rtol=2e-4)
  np.testing.assert_array_equal(m2["expert_tokens"], r2["expert_tokens"])
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, atol=2e-6, rtol=2e-4)


def test_flops_count_active_experts_only():
  moe_cfg = config_lib.model_config(config_lib.base_config("tiny_moe").model)
  dense_cfg = config_lib.model_config(config_lib.base_config("tiny").model)
  count = lambda c: metrics.param_count(ts.abstract_model(c)[1])
  router = moe_cfg.n_layers * moe_cfg.d_model * moe_cfg.moe_experts
  # 8 experts of 512 (top-2) = the dense 1024-wide MLP per token, plus the router.
  assert metrics.flops_per_token(moe_cfg, count(moe_cfg), 256) == pytest.approx(
      metrics.flops_per_token(dense_cfg, count(dense_cfg), 256) + 6 * router)
  per_layer = 8 * 3 * 256 * 512 - 3 * 256 * 1024  # Eight half-width experts for one MLP.
  assert count(moe_cfg) == count(dense_cfg) + moe_cfg.n_layers * per_layer + router


@pytest.mark.parametrize("change, message", [
    (dict(experts=4, top_k=5), "top_k=5"), (dict(experts=4, dispatch="sorted"), "dispatch"),
    (dict(experts=4, every=0), "every=0")])
def test_bad_moe_config_names_the_key(change, message):
  c = config_lib.base_config("tiny")
  c.model.moe.update(change)
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c)


def test_cpu_blocked_grouped_matmul_equals_ragged_dot_with_empty_groups():
  ks = jax.random.split(jax.random.key(4), 3)
  lhs, rhs = jax.random.normal(ks[0], (300, 16)), jax.random.normal(ks[1], (5, 16, 24))
  sizes = jnp.array([0, 130, 7, 0, 163], jnp.int32)
  probe = jax.random.normal(ks[2], (300, 24))
  for block in (32, 64):
    run = lambda a, b, blk=block: moe.blocked_grouped_matmul(a, b, sizes, block=blk)
    np.testing.assert_allclose(run(lhs, rhs), jax.lax.ragged_dot(lhs, rhs, sizes),
                               atol=1e-5, rtol=1e-5)
    grads = jax.grad(lambda a, b, f=run: (f(a, b) * probe).sum(), argnums=(0, 1))(lhs, rhs)
    ref = jax.grad(lambda a, b: (jax.lax.ragged_dot(a, b, sizes) * probe).sum(),
                   argnums=(0, 1))(lhs, rhs)
    for a, b in zip(grads, ref):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
