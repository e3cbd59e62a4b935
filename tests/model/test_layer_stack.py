"""Scanned layer groups (model.scan_layers) compute what the layer loop computes."""
import dataclasses

import jax
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from midtrain_jax.model import layer_stack
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.parallel import sharding
from midtrain_jax.train import step as ts
from tests import helpers


def _configs(**changes):
  # 5 layers of pattern (8, 0), last full: two scanned groups and a 1-layer tail.
  cfg = dataclasses.replace(helpers.tiny_model(), n_layers=5, **changes)
  return cfg, dataclasses.replace(cfg, scan_layers=True)


def _loss_and_grads(cfg, params, batch):
  graphdef, _, _ = ts.abstract_model(cfg)
  return jax.jit(jax.value_and_grad(lambda p: ts.loss_fn(p, graphdef, batch, 1e-4)[0]))(params)


def test_scanned_equals_unscanned_logits_and_gradients():
  cfg, scanned_cfg = _configs(remat="full")
  assert layer_stack.groups(cfg) == layer_stack.Groups(period=2, n_groups=2, n_tail=1)
  params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))))
  stacked = layer_stack.scan_tree(params, scanned_cfg)
  assert set(stacked) == {"embed", "layers", "tail", "final_norm", "lm_head"}
  assert stacked["layers"]["blocks"][1]["mlp"]["up"]["kernel"].shape[0] == 2
  batch = helpers.text_batch(2, 32, docs_per_row=2)
  loss, grads = _loss_and_grads(cfg, params, batch)
  scanned_loss, scanned_grads = _loss_and_grads(scanned_cfg, stacked, batch)
  np.testing.assert_allclose(scanned_loss, loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(layer_stack.unscan_tree(scanned_grads, scanned_cfg)),
                  jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, atol=1e-7, rtol=1e-5)
  # The layouts convert both ways without loss.
  back = layer_stack.unscan_tree(stacked, scanned_cfg)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_scanned_params_shard_with_a_layers_axis():
  _, scanned_cfg = _configs()
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  _, abstract, axes = ts.abstract_model(scanned_cfg)
  assert axes["layers"]["blocks"][0]["attn"]["q"]["kernel"] == (
      "layers", "embed", "heads", "head_dim")
  shardings = ts.param_shardings(abstract, axes, mesh)
  assert shardings["layers"]["blocks"][0]["attn"]["q"]["kernel"].spec == P(
      None, "fsdp", "tensor", None)
  assert shardings["tail"][0]["mlp"]["down"]["kernel"].spec == P("tensor", "fsdp")
