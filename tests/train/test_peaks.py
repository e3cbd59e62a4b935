"""The one FLOP-peak table and MFU definition (train/peaks.py)."""
import dataclasses

import pytest

from configs import anneal
from midtrain_jax.train import memory_plan as plan
from midtrain_jax.train import peaks


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


def test_theoretical_limit_from_cores_vectors_and_clock():
  avx2 = peaks.CpuInfo("x", cores=2, clock_hz=3.45e9, flags=("fma", "avx2"))
  # 2 cores x 2 FMA pipes x 8 fp32 lanes x 2 FLOPs x 3.45 GHz.
  assert avx2.theoretical_flops() == pytest.approx(220.8e9)
  assert avx2.theoretical_flops("bfloat16") == avx2.theoretical_flops()
  avx512 = peaks.CpuInfo("x", cores=2, clock_hz=3.45e9, flags=("fma", "avx2", "avx512f",
                                                               "avx512_bf16"))
  assert avx512.theoretical_flops() == 2 * avx2.theoretical_flops()
  assert avx512.theoretical_flops("bfloat16") == 2 * avx512.theoretical_flops()
  # The old unsynchronised measurement (486 GFLOP/s on the AVX2 host) is refused.
  with pytest.raises(RuntimeError, match="the measurement is wrong"):
    peaks.check_against_limit(486e9, info=avx2)
  peaks.check_against_limit(223e9, info=avx2)  # Torch's synchronised figure: plausible.
  # Zen 5 in a VM reports its 2.6 GHz base clock and boosts to about 3.8 GHz under a GEMM.
  zen5 = peaks.CpuInfo("x", cores=2, clock_hz=2.6e9, flags=("fma", "avx2", "avx512f"))
  peaks.check_against_limit(490e9, info=zen5)
  # Where the OS reports the maximum clock, nothing above it (but rounding) is real.
  at_max = dataclasses.replace(zen5, clock_is_max=True)
  with pytest.raises(RuntimeError, match="with 1.05x for turbo"):
    peaks.check_against_limit(490e9, info=at_max)


def test_measured_cpu_peak_is_physically_possible():
  rates = peaks.measure_matmul_flops("float32", n=512, chain=4, samples=3)
  assert len(rates) == 3 and min(rates) > 0
  info = peaks.cpu_info()
  if info.theoretical_flops():
    assert max(rates) <= info.theoretical_flops() * info.turbo_allowance()
  # bf16 may always run in fp32 units, so its peak is never below fp32's.
  assert peaks.measured_cpu_peak("bfloat16") >= peaks.measured_cpu_peak("float32")


def test_planner_uses_the_table_in_the_compute_dtype():
  config = anneal.get_config("size=7b")
  mesh = {"data": 1, "fsdp": 8, "tensor": 1}
  bf16 = plan.make_plan(config, mesh, "h100", 0.4)
  config.model.compute_dtype = "float32"
  f32 = plan.make_plan(config, mesh, "h100", 0.4)
  # Same FLOPs, half the TF32 peak: twice the step time.
  assert f32.step_time_s == pytest.approx(bf16.step_time_s * 989 / 495)
  assert "cpu" in plan.CHIPS
  host = plan.make_plan(anneal.get_config("size=tiny"), {"data": 1, "fsdp": 1, "tensor": 1},
                        "cpu", 0.4)
  assert host.step_time_s > 0


def test_mfu_is_one_formula():
  assert peaks.mfu(1000.0, 6e6, 12e9) == pytest.approx(0.5)
