"""The kernel choice: one function for the model and the planner, from config keys only."""
import json

import jax
import jax.numpy as jnp
import pytest
from absl import logging
from flax import nnx

from configs import anneal
from midtrain_jax import config as config_lib
from midtrain_jax.kernels import native, select
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.parallel import sharding
from midtrain_jax.train import memory_plan
from tests import helpers


@pytest.fixture
def warnings(monkeypatch):
  """The warnings logged meanwhile (answers cached before are forgotten)."""
  logged = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: logged.append(msg % args))
  select.clear_cache()
  yield logged
  select.clear_cache()


def _built() -> bool:
  return native.status()[0]


# (attention, matmul requested, platform, devices, dtype) -> (attention, matmul) that run,
# on a host whose native kernels are built, CPU vendor AMD.
CASES = [
    (("auto", "auto", "tpu", 8, "bfloat16"), ("xla", "xla")),
    (("auto", "auto", "gpu", 1, "float32"), ("xla", "xla")),
    (("splash", "auto", "tpu", 256, "bfloat16"), ("splash", "xla")),
    (("cudnn", "xla", "cuda", 8, "bfloat16"), ("cudnn", "xla")),
    (("reference", "auto", "cpu", 8, "float32"), ("reference", "xla")),
    (("auto", "auto", "cpu", 1, "float32"), ("cpu_native", "xla")),
    (("auto", "auto", "cpu", 1, "bfloat16"), ("cpu_native", "xla")),
    (("auto", "auto", "cpu", 8, "float32"), ("xla", "xla")),
    (("xla", "xla", "cpu", 1, "float32"), ("xla", "xla")),
    (("cpu_native", "cpu_native", "cpu", 1, "float32"), ("cpu_native", "cpu_native")),
]


@pytest.mark.parametrize("request_,expected", CASES)
def test_choice_per_platform_dtype_and_devices(request_, expected, monkeypatch, warnings):
  if not _built():
    pytest.skip("native CPU kernels not built: " + native.status()[1])
  monkeypatch.setattr(native, "cpu_vendor", lambda: "AuthenticAMD")
  attention, matmul, platform, devices, dtype = request_
  got = select.choose(attention, matmul, platform=platform, device_count=devices, dtype=dtype)
  assert (got.attention, got.matmul) == expected
  assert warnings == []  # What was asked runs, or `auto` chose.


def test_auto_gemm_on_intel_float32_only(monkeypatch, warnings):
  if not _built():
    pytest.skip("native CPU kernels not built")
  monkeypatch.setattr(native, "cpu_vendor", lambda: "GenuineIntel")
  pick = lambda dtype, devices=1: select.choose(  # noqa: E731
      matmul="auto", platform="cpu", device_count=devices, dtype=dtype).matmul
  assert (pick("float32"), pick("bfloat16"), pick("float32", 2)) == ("cpu_native", "xla", "xla")
  assert warnings == []


def test_cpu_native_on_two_devices_runs_xla_with_one_warning(warnings):
  for _ in range(3):
    got = select.choose("cpu_native", "cpu_native", platform="cpu", device_count=2,
                        dtype="float32")
    assert (got.attention, got.matmul) == ("xla", "xla")
  # One warning per requested kernel, naming it, the reason and what runs instead.
  assert len(warnings) == 2, warnings
  for key, text in zip(("attention", "matmul"), warnings):
    assert f"model.{key}='cpu_native'" in text
    assert "one device, not 2" in text and "falling back to 'xla'" in text
  assert len(got.notes) == 2


def test_cpu_native_gemm_refuses_bfloat16_and_accelerators(warnings):
  got = select.choose("xla", "cpu_native", platform="cpu", device_count=1, dtype="bfloat16")
  assert got.matmul == "xla" and "takes float32, not bfloat16" in warnings[0]
  got = select.choose("cpu_native", "xla", platform="tpu", device_count=1, dtype="float32")
  assert got.attention == "xla" and "cpu backend only" in warnings[1]
  assert len(warnings) == 2


def _forward_hlo(cfg, devices: int) -> str:
  """HLO text of a forward pass of `cfg` on a (devices, 1, 1) mesh."""
  mesh = sharding.make_mesh({"data": devices, "fsdp": 1, "tensor": 1},
                            jax.devices()[:devices])
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  batch = helpers.text_batch(8, 32, vocab=cfg.vocab_size, docs_per_row=2)

  def forward(params, tokens, positions, segments):
    return nnx.merge(graphdef, params)(tokens, positions, segments)[0]
  with jax.set_mesh(mesh):
    args = [jnp.asarray(batch[k]) for k in ("inputs", "positions", "segment_ids")]
    return jax.jit(forward).lower(params, *args).as_text()


def test_explicit_xla_has_no_custom_call():
  hlo = _forward_hlo(helpers.tiny_model(attention="xla", matmul="xla"), 1)
  assert "custom_call" not in hlo and "midtrain_cpu" not in hlo


@pytest.mark.parametrize("devices", [1, 8])
@pytest.mark.parametrize("kernels", ["auto", "cpu_native", "xla"])
def test_planner_plans_the_kernels_the_model_runs(devices, kernels, monkeypatch):
  if not _built():
    pytest.skip("native CPU kernels not built")
  monkeypatch.setattr(native, "cpu_vendor", lambda: "GenuineIntel")
  select.clear_cache()
  config = anneal.get_config("size=tiny")
  config.model.update(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_dim=128,
                      attention=kernels, matmul=kernels)
  config.data.update(seq_len=32, batch_size=8)
  mesh = {"data": devices, "fsdp": 1, "tensor": 1}
  plan = memory_plan.make_plan(config, mesh, "cpu", 0.4)
  hlo = _forward_hlo(config_lib.model_config(config.model), devices)
  native_expected = devices == 1 and kernels != "xla"
  assert plan.attention == ("cpu_native" if native_expected else "xla")
  assert plan.matmul == ("cpu_native" if native_expected else "xla")
  assert ("midtrain_cpu_attention_fwd" in hlo) == (plan.attention == "cpu_native")
  assert ("midtrain_cpu_gemm" in hlo) == (plan.matmul == "cpu_native")
  select.clear_cache()


def test_config_json_records_the_kernel_keys():
  stored = json.loads(config_lib.to_json(anneal.get_config("size=tiny")))["model"]
  assert (stored["attention"], stored["matmul"]) == ("auto", "auto")
  again = config_lib.from_json(config_lib.to_json(anneal.get_config("size=tiny")))
  assert (again.model.attention, again.model.matmul) == ("auto", "auto")


def test_from_json_migrates_a_config_without_matmul():
  stored = json.loads(config_lib.to_json(anneal.get_config("size=tiny")))
  del stored["model"]["matmul"]
  # Before model.matmul, "xla" meant XLA's ops plus the native CPU kernels: now "auto".
  for old, new in (("xla", "auto"), ("splash", "splash"), ("reference", "reference")):
    stored["model"]["attention"] = old
    config = config_lib.from_json(json.dumps(stored))
    assert (config.model.attention, config.model.matmul) == (new, "auto")
  # A config that records both keys keeps an explicit "xla".
  stored["model"].update(attention="xla", matmul="xla")
  config = config_lib.from_json(json.dumps(stored))
  assert (config.model.attention, config.model.matmul) == ("xla", "xla")
