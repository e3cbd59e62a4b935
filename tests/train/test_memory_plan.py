"""The planner's per-device state agrees with the real sharded train state, and its
estimate with the compiled train step's memory analysis."""
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import anneal
from midtrain_jax import config as config_lib
from midtrain_jax.parallel import sharding
from midtrain_jax.train import memory_plan as plan
from midtrain_jax.train import optim
from midtrain_jax.train import step as ts


def _real_per_device_bytes(config, mesh_sizes):
  """Bytes per device of params and optimiser state as `init_state` lays them out."""
  mesh = sharding.make_mesh(mesh_sizes)
  cfg = config_lib.model_config(config.model)
  tx = optim.make_optimizer(config.optim, optim.make_schedule(config.optim, 10, start_lr=1.0))
  _, abstract, axes = ts.abstract_model(cfg)
  shardings = ts.state_shardings(tx, abstract, ts.param_shardings(abstract, axes, mesh), mesh)
  def init(key):  # What ts.init_state jits, with the same out_shardings.
    params = ts.init_params(cfg, key)
    return ts.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  state = jax.jit(init, out_shardings=shardings).eval_shape(jax.random.key(0))

  def per_device(tree):
    total = 0
    for x in jax.tree.leaves(tree):
      shard = x.sharding.shard_shape(x.shape)
      # Every device holds a shard of this shape (uneven splits are replicated instead).
      assert all(len(d) == len(x.shape) for d in x.sharding.devices_indices_map(x.shape).values())
      total += int(np.prod(shard)) * x.dtype.itemsize
    return total
  return per_device(state.params), per_device(state.opt_state)


@pytest.mark.parametrize("size", ["tiny", "150m", "tiny_moe"])
@pytest.mark.parametrize("mesh", [(1, 8, 1), (2, 2, 2), (8, 1, 1)])
def test_state_bytes_match_eval_shape_of_sharded_state(size, mesh):
  config = anneal.get_config(f"size={size}")
  mesh_sizes = dict(zip(sharding.MESH_AXES, mesh))
  config.data.batch_size = 16
  got = plan.make_plan(config, mesh_sizes, "v5p", 0.4)
  params, opt_state = _real_per_device_bytes(config, mesh_sizes)
  assert got.params_bytes == params and got.grads_bytes == params
  assert got.opt_state_bytes == opt_state
  # AdamW keeps two moments per parameter: about twice the params (plus a counter).
  assert 2 * params <= opt_state <= 2 * params + 64
  full = got.n_params * 4
  if mesh == (8, 1, 1):
    assert params == full  # Pure data parallelism replicates everything.
  else:
    assert params < full / 3


def test_plan_figures_for_7b_on_v5p():
  config = anneal.get_config("size=7b")
  got = plan.make_plan(config, {"data": 1, "fsdp": 256, "tensor": 1}, "v5p", 0.4)
  assert 7.2e9 < got.n_params < 7.4e9  # OLMo 3 7B.
  # fsdp shards every parameter with an `embed` axis 256 ways; the norm scales
  # (QK-norm over the whole projection: 8192 per layer) are replicated.
  cfg = config_lib.model_config(config.model)
  _, abstract, axes = ts.abstract_model(cfg)
  expected = sum(np.prod(p.shape) * 4 / (256 if "embed" in a else 1)
                 for p, a in zip(jax.tree.leaves(abstract), jax.tree.leaves(
                     axes, is_leaf=lambda x: isinstance(x, tuple))))
  assert got.params_bytes == pytest.approx(expected, rel=1e-6)
  # Remat trades memory for compute: none > save_dots > full.
  acts = got.activation_bytes
  assert acts["none"] > acts["save_dots"] > acts["full"] > 0
  assert got.tokens_per_step == 256 * 8192
  # Step time = FLOPs / (devices * peak * MFU).
  expected = got.flops_per_token * got.tokens_per_step / (256 * 459e12 * 0.4)
  assert got.step_time_s == pytest.approx(expected)
  assert got.tokens_per_day == pytest.approx(got.tokens_per_step / expected * 86400)
  # The xla kernel keeps [heads, 8192, 8192] float32 scores per row and layer,
  # for a whole rebuilt group of 4 layers: too much for one v5p.
  assert "WARNING: remat=save_dots needs" in plan.format_plan(got, config, "v5p", 0.4)
  config.model.attention = "splash"  # What a TPU run uses: per-row statistics only.
  got = plan.make_plan(config, {"data": 1, "fsdp": 256, "tensor": 1}, "v5p", 0.4)
  text = plan.format_plan(got, config, "v5p", 0.4)
  assert "remat=save_dots" in text and "WARNING" not in text
  assert got.activation_bytes["save_dots"] < acts["save_dots"] / 3
  small = plan.make_plan(config, {"data": 1, "fsdp": 8, "tensor": 1}, "v5e", 0.4)
  assert "WARNING: remat=save_dots needs" in plan.format_plan(small, config, "v5e", 0.4)


def test_bad_plan_input_is_named():
  with pytest.raises(ValueError, match="does not give a size for \\['tensor'\\]"):
    plan.parse_mesh("data:1,fsdp:8")
  with pytest.raises(ValueError, match="'fsdp:x' is not AXIS:SIZE"):
    plan.parse_mesh("data:1,fsdp:x,tensor:1")
  config = anneal.get_config("size=tiny")
  with pytest.raises(ValueError, match="Unknown --chip='tpu9'"):
    plan.make_plan(config, {"data": 1, "fsdp": 1, "tensor": 1}, "tpu9", 0.4)
  with pytest.raises(ValueError, match="batch_size=16 does not split"):
    plan.make_plan(config, {"data": 32, "fsdp": 1, "tensor": 1}, "v5p", 0.4)


def test_command_line_prints_the_plan():
  proc = subprocess.run([sys.executable, "-m", "midtrain_jax.plan",
                         "--config=configs/anneal.py:size=150m",
                         "--mesh=data:2,fsdp:4,tensor:1", "--chip=h100", "--mfu=0.5"],
                        capture_output=True, text=True, timeout=120, check=True)
  assert "params" in proc.stdout and "8 x h100" in proc.stdout
  assert "at MFU 50%" in proc.stdout and "tokens/day" in proc.stdout


# Planned over compiled temporaries stay within this factor either way for
# scanned layers (any remat) and for remat=none; measured 0.86-1.30 on the
# presets (midtrain_jax/train/memory_plan.py).
FACTOR = 1.5


def test_estimate_is_within_the_factor_of_the_compiled_step():
  # Scanned (two groups of four layers), remat rebuilding a group, tensor parallel.
  config = anneal.get_config("size=tiny")
  config.model.update(n_layers=8, scan_layers=True, remat="save_dots")
  mesh_sizes = {"data": 1, "fsdp": 4, "tensor": 2}
  got = plan.make_plan(config, mesh_sizes, "v5p", 0.4)
  compiled = plan.compile_train_step(config, mesh_sizes)  # The 8 fake devices of conftest.
  est = plan.estimate_for(compiled, got, config)
  # Arguments are the exact state plus the batch; the state is donated.
  assert compiled.argument_bytes == pytest.approx(est["arguments"], rel=1e-3)
  assert compiled.alias_bytes == pytest.approx(got.params_bytes + got.opt_state_bytes, rel=1e-3)
  assert 1 / FACTOR < est["temporaries"] / compiled.temp_bytes < FACTOR
  assert compiled.peak_bytes > compiled.argument_bytes + compiled.temp_bytes
  assert compiled.compile_s > 0 and compiled.attention == "xla"


def test_compile_flag_compiles_on_fake_devices_of_its_own():
  # Without the test's 8 fake devices: the command must start them itself.
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  proc = subprocess.run([sys.executable, "-m", "midtrain_jax.plan",
                         "--config=configs/anneal.py:size=tiny",
                         "--mesh=data:1,fsdp:8,tensor:1", "--compile"],
                        capture_output=True, text=True, timeout=300, check=True, env=env)
  out = proc.stdout
  assert "remat=none" in out  # The plan comes first, as without --compile.
  assert re.search(r"compiled train step on 8 cpu devices: lowered in [\d.]+ s, "
                   r"compiled in [\d.]+ s", out), out
  for row in ("arguments", "outputs", "temporaries", "generated code", "peak"):
    assert re.search(rf"^  {row} +[\d.]+ [MG]iB", out, re.MULTILINE), (row, out)
  ratio = float(re.search(r"temporaries planned / compiled: ([\d.]+)", out).group(1))
  assert 1 / FACTOR < ratio < FACTOR
