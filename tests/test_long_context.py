"""The long-context config: YaRN on full-attention layers, longer packed rows, runs on CPU."""
import numpy as np
import pytest

from configs import long_context
from midtrain_jax import config as config_lib
from midtrain_jax.model import rope
from midtrain_jax.model.config import FULL_ATTENTION
from midtrain_jax.train import loop
from midtrain_jax.train import memory_plan as plan


def test_config_values():
  c = long_context.get_config("size=7b")
  m = c.model
  assert (m.yarn_factor, m.yarn_beta_fast, m.yarn_beta_slow, m.yarn_original_max_len) == (
      8.0, 32.0, 1.0, 8192)
  assert m.yarn_full_layers_only and c.data.seq_len == 65_536
  assert c.data.seq_len * c.data.batch_size == 2**21
  assert config_lib.model_config(m).layer_windows()[-1] == FULL_ATTENTION
  tiny = config_lib.model_config(long_context.get_config().model)
  # The scaled frequencies differ from plain RoPE only where YaRN interpolates.
  plain = rope.inverse_frequencies(tiny.head_dim, tiny.rope_theta)
  yarn = rope.inverse_frequencies(tiny.head_dim, tiny.rope_theta, yarn_factor=8.0,
                                  beta_fast=32.0, beta_slow=1.0, original_len=256)
  assert np.all(np.asarray(yarn) <= np.asarray(plain) + 1e-12)
  assert np.any(np.asarray(yarn) < np.asarray(plain))


def test_7b_plan_fits_on_v5p_256_with_full_remat():
  c = long_context.get_config("size=7b")
  got = plan.make_plan(c, {"data": 1, "fsdp": 32, "tensor": 8}, "v5p", 0.4)
  assert "WARNING" not in plan.format_plan(got, c, "v5p", 0.4)


@pytest.mark.slow
def test_tiny_long_context_trains_from_a_checkpoint(tmp_path):
  def small(c):
    c.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128,
                   window_pattern=(16, 0))
    c.train.update(steps=2, log_every_steps=1)
    c.ckpt.update(every_steps=2, async_save=False)
    return c
  base = small(long_context.get_config())
  base.model.yarn_factor = 1.0
  base.data.seq_len = 256
  loop.run(base, str(tmp_path / "base"))
  c = small(long_context.get_config())
  c.train.init_from = str(tmp_path / "base")
  result = loop.run(c, str(tmp_path / "long"))
  assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
