"""Config files: presets, overrides, validation."""
import subprocess
import sys

import pytest

from configs import anneal, pretrain
from midtrain_jax import config as config_lib


def test_presets():
  c = anneal.get_config("size=7b")
  m = config_lib.model_config(c.model)
  shape = (m.n_layers, m.d_model, m.n_heads, m.mlp_dim, m.vocab_size)
  assert shape == (32, 4096, 32, 11008, 100278)
  assert m.layer_windows()[:4] == (4096, 4096, 4096, 0) and m.layer_windows()[-1] == 0
  assert m.rope_theta == 5e5 and m.qk_norm == "projection" and m.norm == "reordered"
  tiny = config_lib.model_config(pretrain.get_config("size=tiny").model)
  assert (tiny.vocab_size, tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.mlp_dim) == \
      (8192, 256, 4, 4, 1024)
  assert config_lib.model_config(anneal.get_config("size=32b").model).n_kv_heads == 8
  assert pretrain.get_config().data.mixture == "web_only"
  assert anneal.get_config("size=tiny").data.mixture == "dolmino_demo"
  assert anneal.get_config("size=tiny").workflow == "train"
  # The embedded default: the demo workflow on the demo mixture, decontaminated.
  demo = anneal.get_config()
  assert demo.workflow == "demo" and demo.data.mixture == "dolmino_demo"
  assert "gsm8k" in demo.data.decontam.benchmarks


def test_config_is_locked_and_typed():
  c = anneal.get_config()
  with pytest.raises(AttributeError, match="no_such_key"):
    c.train.no_such_key = 1
  with pytest.raises(TypeError):
    c.train.steps = "many"


def test_bad_arguments_and_combinations():
  with pytest.raises(ValueError, match="size"):
    anneal.get_config("size=3t")
  with pytest.raises(ValueError, match="Unknown config argument"):
    anneal.get_config("sise=7b")
  c = config_lib.base_config("tiny")
  c.model.n_kv_heads = 3
  with pytest.raises(ValueError, match="n_heads=4 is not divisible by config.model.n_kv_heads=3"):
    config_lib.validate(c)
  c = config_lib.base_config("tiny")
  c.model.remat = "sometimes"
  with pytest.raises(ValueError, match="model.remat"):
    config_lib.validate(c)
  c = anneal.get_config()
  c.train.init_from = "runs/base"
  with pytest.raises(ValueError, match="demo workflow trains its own base"):
    config_lib.validate(c)
  c = config_lib.base_config("tiny")
  c.optim.schedule, c.optim.anneal_start = "anneal", "from_checkpoint"
  with pytest.raises(ValueError, match="init_from"):
    config_lib.validate(c)


def test_command_line_rejects_unknown_key():
  out = subprocess.run([sys.executable, "-m", "midtrain_jax.main", "--config=configs/anneal.py",
                        "--config.train.stepz=3", "--workdir=/nonexistent"],
                       capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert "stepz" in out.stderr
