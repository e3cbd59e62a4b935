"""Drop-upcycling: r = 0 reproduces the dense model; r > 0 re-initialises what it says."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from midtrain_jax import config as config_lib
from midtrain_jax.interop import upcycle
from midtrain_jax.model import layer_stack
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts
from tests import helpers


def _dense_run(tmp_path, scan_layers: bool):
  """A randomly initialised 4-layer dense model written as a run directory."""
  c = config_lib.base_config("tiny")
  c.model.update(vocab_size=512, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2, mlp_dim=128,
                 window_pattern=(8, 0), scan_layers=scan_layers, init_std=0.05)
  cfg = config_lib.model_config(c.model)
  params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(3))))
  checkpoint.write_params(str(tmp_path / "dense"), params, c)
  return str(tmp_path / "dense"), cfg


def _logits(cfg, params, batch):
  model = nnx.merge(ts.abstract_model(cfg)[0], params)
  return np.asarray(model(batch["inputs"], batch["positions"], batch["segment_ids"])[0])


@pytest.mark.parametrize("scan_layers", [False, True])
def test_plain_upcycling_equals_the_dense_model_for_any_router(tmp_path, scan_layers):
  src, dense_cfg = _dense_run(tmp_path, scan_layers)
  upcycle.upcycle(src, str(tmp_path / "moe"), experts=4, top_k=2, drop_ratio=0.0,
                  log=lambda _: None)
  config = checkpoint.load_config(str(tmp_path / "moe"))
  moe_cfg = config_lib.model_config(config.model)
  assert (moe_cfg.moe_experts, moe_cfg.moe_top_k, moe_cfg.scan_layers) == (4, 2, scan_layers)
  assert not config.train.init_optimizer
  moe_params, _, _ = checkpoint.load_params(str(tmp_path / "moe"),
                                            ts.abstract_model(moe_cfg)[1])
  dense_params, _, _ = checkpoint.load_params(src, ts.abstract_model(dense_cfg)[1])
  batch = helpers.text_batch(2, 32, docs_per_row=2)
  dense = _logits(dense_cfg, dense_params, batch)
  # Any router: a large random one makes every token pick different experts.
  flat = layer_stack.unscan_tree(moe_params, moe_cfg)
  rng = np.random.default_rng(0)
  for block in flat["blocks"].values():
    block["mlp"]["router"] = rng.normal(0, 3.0, block["mlp"]["router"].shape).astype(np.float32)
  moe = _logits(moe_cfg, layer_stack.to_layout(flat, moe_cfg), batch)
  np.testing.assert_allclose(moe, dense, atol=2e-5, rtol=1e-5)


def test_drop_upcycling_reinitialises_exactly_the_chosen_dimensions():
  rng = np.random.default_rng(1)
  d, f, experts, ratio = 96, 200, 6, 0.5
  dense = {"gate": {"kernel": rng.normal(0.01, 0.05, (d, f)).astype(np.float32)},
           "up": {"kernel": rng.normal(-0.02, 0.03, (d, f)).astype(np.float32)},
           "down": {"kernel": rng.normal(0.0, 0.01, (f, d)).astype(np.float32)}}
  out, dropped = upcycle.upcycle_mlp(dense, experts, ratio, np.random.default_rng(7), d)
  assert out["gate"].shape == (experts, d, f) and out["down"].shape == (experts, f, d)
  assert out["router"].shape == (d, experts) and np.abs(out["router"]).max() < 0.2
  subsets = {tuple(dims) for dims in dropped}
  assert len(subsets) == experts  # A different subset per expert.
  for e, dims in enumerate(dropped):
    assert len(dims) == round(ratio * f) == len(set(dims))
    kept = np.setdiff1d(np.arange(f), dims)
    np.testing.assert_array_equal(out["gate"][e][:, kept], dense["gate"]["kernel"][:, kept])
    np.testing.assert_array_equal(out["up"][e][:, kept], dense["up"]["kernel"][:, kept])
    np.testing.assert_array_equal(out["down"][e][kept, :], dense["down"]["kernel"][kept, :])
    for name, new in (("gate", out["gate"][e][:, dims]), ("up", out["up"][e][:, dims]),
                      ("down", out["down"][e][dims, :])):
      w = dense[name]["kernel"]
      assert not np.any(new == (w[:, dims] if name != "down" else w[dims, :]))
      # The new values follow the dense matrix's own mean and std.
      assert abs(new.mean() - w.mean()) < 4 * w.std() / np.sqrt(new.size)
      assert abs(new.std() / w.std() - 1) < 0.05


def test_upcycling_refuses_bad_input(tmp_path):
  src, _ = _dense_run(tmp_path, False)
  with pytest.raises(ValueError, match="drop_ratio=1.5"):
    upcycle.upcycle(src, str(tmp_path / "a"), experts=4, top_k=2, drop_ratio=1.5)
  with pytest.raises(ValueError, match="top_k=5"):
    upcycle.upcycle(src, str(tmp_path / "b"), experts=4, top_k=5, drop_ratio=0.5)
  upcycle.upcycle(src, str(tmp_path / "moe"), experts=4, top_k=2, drop_ratio=0.5,
                  log=lambda _: None)
  with pytest.raises(ValueError, match="already a MoE model"):
    upcycle.upcycle(str(tmp_path / "moe"), str(tmp_path / "c"), experts=4, top_k=2,
                    drop_ratio=0.5)
  with pytest.raises(FileExistsError):
    upcycle.upcycle(src, str(tmp_path / "moe"), experts=4, top_k=2, drop_ratio=0.5)


def test_upcycled_expert_width_follows_the_dense_model():
  cfg = dataclasses.replace(helpers.tiny_model(), moe_experts=4)
  assert cfg.expert_mlp_dim == cfg.mlp_dim
  params = ts.abstract_model(cfg)[1]
  assert params["blocks"][0]["mlp"]["up"].shape == (4, cfg.d_model, cfg.mlp_dim)
  assert jax.tree.leaves(params)
