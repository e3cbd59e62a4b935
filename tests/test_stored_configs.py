"""Configs saved by earlier runs still load on top of today's defaults."""
import ml_collections

from midtrain_jax import config as config_lib


def test_old_comma_benchmark_lists_become_tuples_and_new_keys_keep_defaults():
  stored = config_lib.base_config("tiny").to_dict()
  stored["eval"]["benchmarks"] = "gsm8k,math"  # How runs before tuples stored it.
  stored["data"]["decontam"]["benchmarks"] = ""
  stored["optim"]["lr"] = 1.25e-3
  del stored["train"]["log_every_steps"]  # A key an older version did not have.
  stored["removed_key"] = 1  # A key this version no longer has.
  stored["model"]["qk_norm"] = True  # A bool before the QK-norm kinds.
  merged = config_lib.from_json(config_lib.to_json(ml_collections.ConfigDict(stored)))
  assert merged.eval.benchmarks == ("gsm8k", "math")
  assert merged.data.decontam.benchmarks == ()
  assert merged.optim.lr == 1.25e-3 and merged.train.log_every_steps == 10
  assert "removed_key" not in merged and merged.model.qk_norm == "head"
  config_lib.validate(merged)
