"""Every setting is declared once; defaults, validation and help come from the declarations."""
import ast
import dataclasses
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax import settings
from midtrain_jax.data import settings as data_settings
from midtrain_jax.dedup import params as dedup_params
from midtrain_jax.model import config as model_config

PACKAGE = pathlib.Path(config_lib.__file__).parent
# The modules that declare settings: they import only settings, each other and
# the benchmark names.
LEAVES = {"model.config", "data.settings", "dedup.params", "train.settings", "evals.settings",
          "parallel.settings", "workflows.settings"}


def _flat(d, prefix=""):
  """Dotted keys of a ConfigDict's settings (open dict settings are one key)."""
  out = {}
  for name, value in d.items():
    open_dict = isinstance(value, ml_collections.ConfigDict) and (
        prefix + name in {"data.weights", "data.source_paths", "data.qau.task_factors"})
    if isinstance(value, ml_collections.ConfigDict) and not open_dict:
      out.update(_flat(value, f"{prefix}{name}."))
    else:
      out[prefix + name] = value.to_dict() if open_dict else value
  return out


def test_defaults_are_the_declared_ones_and_each_key_is_declared_once():
  declared = list(settings.walk(config_lib.ROOT))
  keys = [k for k, _ in declared]
  assert len(keys) == len(set(keys))
  # tiny's preset is the model section's declared default.
  built = _flat(config_lib.base_config("tiny"))
  assert set(built) == set(keys)
  for key, setting in declared:
    default = dict(setting.default) if setting.kind is dict else setting.default
    assert built[key] == default, key
  # The model section is ModelConfig's fields (moe_* under model.moe) plus `size`.
  fields = {f.name for f in dataclasses.fields(model_config.ModelConfig)}
  model_keys = {k[len("model."):].replace("moe.", "moe_") for k in keys
                if k.startswith("model.")}
  assert model_keys == fields | {"size"}
  # data.dedup takes DedupParams' declarations themselves (levels with its own default).
  for name, setting in dedup_params.PARAMS.entries.items():
    if name not in ("seed", "levels"):
      assert data_settings.DEDUP.entries[name] is setting


def test_a_bad_choice_type_range_or_key_names_the_key():
  c = config_lib.base_config("tiny")
  c.model.attention = "flash"
  with pytest.raises(ValueError, match=r"config\.model\.attention='flash' is not one of"):
    config_lib.validate(c)
  c = config_lib.base_config("tiny")
  c.eval.benchmarks = ("gsm8k", "gsm9k")
  with pytest.raises(ValueError, match=r"config\.eval\.benchmarks=.*unknown value.*gsm9k"):
    config_lib.validate(c)
  c = config_lib.base_config("tiny")
  c.optim.b2 = 1.5
  with pytest.raises(ValueError, match=r"config\.optim\.b2=1\.5 must be in \[0, 1\]"):
    config_lib.validate(c)
  c = config_lib.base_config("tiny")
  c.train.stepz = 3  # Unlocked: added, but not a setting.
  with pytest.raises(ValueError, match=r"config\.train\.stepz is not a setting"):
    config_lib.validate(c)
  with pytest.raises(ValueError, match=r"config\.train\.steps='many' must be an int"):
    settings.validate(config_lib.ROOT.entries["train"],
                      {**config_lib.base_config("tiny").train.to_dict(), "steps": "many"},
                      "config.train")
  with pytest.raises(ValueError, match=r"config\.data\.seq_len=0 must be positive"):
    settings.check_value(data_settings.SECTION.entries["seq_len"], 0, "config.data.seq_len")


def test_help_lists_every_key_with_its_default_and_choices():
  text = "\n".join(config_lib.help_lines())
  for key, _ in settings.walk(config_lib.ROOT):
    assert f"--config.{key}  (" in text, key
  assert ("--config.model.attention  (str; default 'auto'; one of auto, xla, cudnn, splash, "
          "cpu_native, reference)") in text
  out = subprocess.run([sys.executable, "-m", "midtrain_jax.main", "--help_config"],
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "--config.model.matmul  (str; default 'auto'; one of auto, xla, cpu_native)" in out.stdout
  assert "MKL's GEMM" in out.stdout and "--config.data.dedup.jaccard" in out.stdout


def test_stored_model_sections_of_earlier_versions_load():
  stored = config_lib.base_config("7b").to_dict()
  stored["model"]["attention"] = "xla"
  del stored["model"]["matmul"]  # Written before the attention / matmul kernels.
  merged = config_lib.from_json(config_lib.to_json(ml_collections.ConfigDict(stored)))
  assert merged.model.attention == "auto" and merged.model.matmul == "auto"
  stored["model"]["matmul"] = "xla"  # Chosen after the kernels: kept.
  merged = config_lib.from_json(config_lib.to_json(ml_collections.ConfigDict(stored)))
  assert merged.model.attention == "xla" and merged.model.scan_layers
  del stored["model"]["scan_layers"]
  assert not config_lib.from_json(config_lib.to_json(
      ml_collections.ConfigDict(stored))).model.scan_layers


def _imports(module: str) -> set[str]:
  path = PACKAGE / f"{module.replace('.', '/')}.py"
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module.startswith("midtrain_jax"):
      base = node.module.removeprefix("midtrain_jax").lstrip(".")
      found |= {f"{base}.{a.name}".lstrip(".") if not base or not (
          PACKAGE / f"{base.replace('.', '/')}.py").exists() else base for a in node.names}
    elif isinstance(node, ast.Import):
      found |= {a.name.removeprefix("midtrain_jax.") for a in node.names
                if a.name.startswith("midtrain_jax")}
  return found


def test_configuration_sits_below_what_it_configures():
  assert not _imports("settings")
  assert _imports("config") <= LEAVES | {"settings"}
  for leaf in LEAVES:
    # Benchmark names are checked against the lowest layer's lists.
    assert _imports(leaf) <= LEAVES | {"settings", "benchmark_data.items",
                                       "benchmark_data.olmes"}, leaf
