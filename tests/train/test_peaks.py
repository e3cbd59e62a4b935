"""The one FLOP-peak table and MFU definition (train/peaks.py)."""
import jax
import pytest

from configs import anneal
from midtrain_jax.kernels import native
from midtrain_jax.train import cpu_limit, peaks
from midtrain_jax.train import memory_plan as plan


def test_device_kinds_map_to_the_vendor_table():
  assert peaks.chip_for("TPU v5 lite") == "v5e"
  assert peaks.chip_for("TPU v5p") == peaks.chip_for("TPU v5") == "v5p"
  assert peaks.chip_for("TPU v6 lite") == "v6e"
  assert peaks.chip_for("NVIDIA H100 80GB HBM3") == "h100"
  assert peaks.chip_for("NVIDIA H100 PCIe") == "h100-pcie"
  assert peaks.chip_for("NVIDIA A100-SXM4-80GB") == "a100"
  assert peaks.chip_for("cpu") is None
  h100 = peaks.CHIPS["h100"]
  assert h100.peak_flops("bfloat16") == 989e12 and h100.peak_flops("float32") == 495e12
  with pytest.raises(ValueError, match="No peak FLOP/s is defined for dtype 'int8'"):
    h100.peak_flops("int8")


def test_measured_peak_is_within_the_physical_limit_of_this_host():
  limit = cpu_limit.host()
  for dtype in ("float32", "bfloat16"):
    peak = peaks.cpu_peak(dtype)
    short = "fp32" if dtype == "float32" else "bf16"
    assert peak.flops > 0 and peak.source.startswith(f"measured {short} xla")
    if limit.flops(dtype) is not None:
      assert peak.flops <= limit.flops(dtype), (dtype, peak, limit.describe(dtype))
      assert "of the physical limit" in peak.check
    else:
      assert peak.check.startswith("unchecked")
  # The MKL GEMM (the step's where model.matmul runs cpu_native) is held to it too.
  if native.status()[0] and limit.flops() is not None:
    assert max(peaks.measure_matmul_flops(kernel="cpu_native", n=512, samples=3)) <= (
        limit.flops())


@pytest.fixture
def measured(monkeypatch):
  """Replaces the timing: records each (dtype, kernel) measured; fp32 100, bf16 50 GFLOP/s."""
  calls = []

  def fake(dtype="float32", kernel="xla", **_):
    calls.append((dtype, kernel))
    return [100e9 if dtype == "float32" else 50e9]
  monkeypatch.setattr(peaks, "measure_matmul_flops", fake)
  return calls


def test_peak_is_measured_on_the_gemm_path_the_step_runs(measured):
  one = jax.devices()[:1]
  assert peaks.run_peak("float32", "xla", one).source == "measured fp32 xla"
  # MKL runs only on one device in float32: the 8 fake devices of the tests run XLA's dot.
  assert peaks.run_peak("float32", "cpu_native", jax.devices()).source == "measured fp32 xla"
  assert measured == [("float32", "xla")] * 2
  if native.status()[0]:
    mkl = peaks.run_peak("float32", "cpu_native", one)
    assert measured[-1] == ("float32", "cpu_native")
    assert mkl.describe() == "peak 100 GFLOP/s measured fp32 mkl"
  # bf16 may always run in fp32 units: its peak is never below fp32's.
  bf16 = peaks.run_peak("bfloat16", "cpu_native", one)
  assert measured[-2:] == [("float32", "xla"), ("bfloat16", "xla")]
  assert bf16.flops == 100e9 and bf16.source == "measured bf16 xla (its fp32 rate, faster)"
  # Fake CPU devices share one host's cores: one host's peak, not 8 of them.
  assert peaks.run_peak("float32", "xla", jax.devices()).flops == 100e9
  v5p = peaks.chip_peak("v5p", "bfloat16", 256)
  assert v5p.describe() == "peak 459 TFLOP/s v5p bf16 x 256" and v5p.flops == 256 * 459e12


def test_planner_uses_the_table_in_the_compute_dtype():
  config = anneal.get_config("size=7b")
  mesh = {"data": 1, "fsdp": 8, "tensor": 1}
  bf16 = plan.make_plan(config, mesh, "h100", 0.4)
  config.model.compute_dtype = "float32"
  f32 = plan.make_plan(config, mesh, "h100", 0.4)
  # Same FLOPs, half the TF32 peak: twice the step time.
  assert f32.step_time_s == pytest.approx(bf16.step_time_s * 989 / 495)
  assert "cpu" in plan.CHIPS
  tiny = anneal.get_config("size=tiny")
  host = plan.make_plan(tiny, {"data": 1, "fsdp": 1, "tensor": 1}, "cpu", 0.4)
  assert host.step_time_s > 0
  # The planner's CPU peak is the training logs' denominator, measured on the same GEMM.
  logged = peaks.run_peak(tiny.model.compute_dtype, tiny.model.matmul, jax.devices()[:1])
  assert host.peak.source == logged.source and host.peak.units == 1
  assert host.step_time_s == pytest.approx(
      host.flops_per_token * host.tokens_per_step / (host.peak.flops * 0.4))
  assert host.peak.describe() in plan.format_plan(host, tiny, "cpu", 0.4)


def test_mfu_is_one_formula_and_never_above_one():
  assert peaks.mfu(1000.0, 6e6, 12e9) == pytest.approx(0.5)
  assert peaks.mfu(2000.0, 6e6, 12e9) == pytest.approx(1.0)
  with pytest.raises(peaks.AbovePeakError, match="above the peak 12 GFLOP/s"):
    peaks.mfu(2001.0, 6e6, 12e9)
  assert peaks.mfu_field(1000.0, 6e6, 12e9) == "0.500"
  assert peaks.mfu_field(3000.0, 6e6, 12e9).startswith("error(18 GFLOP/s of model FLOPs")
