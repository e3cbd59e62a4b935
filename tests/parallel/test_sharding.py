"""Sharded training equals single-device training; shardings follow the rules."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from midtrain_jax.parallel import sharding
from midtrain_jax.train import step as ts
from tests import helpers

MESHES = [(8, 1, 1), (1, 8, 1), (2, 2, 2)]


def _two_steps(mesh_shape, devices=None):
  """Loss, grads (via the update of step 1) and loss after a step on a mesh."""
  cfg = helpers.tiny_model()
  setup = helpers.train_setup(cfg, mesh_shape, devices)
  mesh, graphdef = setup.mesh, setup.graphdef
  state = ts.init_state(cfg, setup.tx, 0, setup.shardings)
  batch = sharding.host_batch_to_global(helpers.text_batch(8, 32, docs_per_row=2), mesh)
  grads = jax.jit(jax.grad(lambda p: ts.loss_fn(p, graphdef, batch, 1e-4)[0]))(state.params)
  step = ts.jit_train_step(graphdef, setup.tx, setup.schedule, 1e-4, mesh, setup.shardings)
  state, m1 = step(state, batch)
  _, m2 = step(state, batch)
  return float(m1["loss"]), float(m2["loss"]), jax.device_get(grads), state


@pytest.fixture(scope="module")
def single_device():
  return _two_steps((1, 1, 1), jax.devices()[:1])


@pytest.mark.parametrize("mesh_shape", MESHES)
def test_sharded_matches_single_device(mesh_shape, single_device):
  loss1, loss2, grads, _ = _two_steps(mesh_shape)
  ref1, ref2, ref_grads, _ = single_device
  assert abs(loss1 - ref1) < 1e-5 and abs(loss2 - ref2) < 1e-4
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, atol=2e-6, rtol=2e-4)


def test_param_shardings_follow_rules():
  *_, state = _two_steps((2, 2, 2))
  block = state.params["blocks"][0]
  assert block["mlp"]["gate"]["kernel"].sharding.spec == P("fsdp", "tensor")
  assert block["mlp"]["down"]["kernel"].sharding.spec == P("tensor", "fsdp")
  assert block["attn"]["q"]["kernel"].sharding.spec == P("fsdp", "tensor", None)
  assert block["attn"]["o"]["kernel"].sharding.spec == P("tensor", None, "fsdp")
  assert state.params["embed"]["embedding"].sharding.spec == P("tensor", "fsdp")
  assert block["attn_norm"]["scale"].sharding.spec == P(None)
  # Adam moments live where their parameters live.
  mu = state.opt_state[1][0].mu
  assert mu["blocks"][0]["mlp"]["gate"]["kernel"].sharding.spec == P("fsdp", "tensor")


def test_logical_rules_and_fit():
  assert sharding.logical_to_spec(("batch", "seq")) == P(("data", "fsdp"), None)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
  # 6 heads do not split 4 ways: that dimension is replicated instead.
  assert sharding.named_sharding(mesh, ("embed", "heads", "head_dim"), (8, 6, 4)).spec == \
      P("fsdp", None, None)


def test_mesh_shape_resolution_and_errors():
  assert sharding.mesh_shape({"data": -1, "fsdp": 2, "tensor": 1}, 8) == (4, 2, 1)
  with pytest.raises(ValueError, match="needs 12 devices but 8"):
    sharding.mesh_shape({"data": 3, "fsdp": 4, "tensor": 1}, 8)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.mesh_shape({"data": -1, "fsdp": 3, "tensor": 1}, 8)
  with pytest.raises(ValueError, match="At most one"):
    sharding.mesh_shape({"data": -1, "fsdp": -1, "tensor": 1}, 8)
