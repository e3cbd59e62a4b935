"""Peak FLOP/s of a run's devices: the one denominator of every MFU figure.

MFU (model FLOPs utilisation) is, everywhere in this codebase (training logs,
the planner's CPU entry, `benchmarks/train_step.py`):

    MFU = tokens/s x train FLOPs per token (`metrics.flops_per_token`)
          / `run_peak(compute dtype, model.matmul, devices)`

Accelerators use the vendor's dense (no sparsity) peak for the compute dtype
from `CHIPS`. float32 is the rate JAX's default matmul precision runs at: one
bfloat16 pass on TPU (so the bf16 peak), TF32 tensor cores on A100/H100/H200.

A CPU has no vendor table, so its peak is measured on the GEMM path the train
step runs (`kernels/select.py`, as `layers.dot_2d` calls it: MKL's sgemm where
`model.matmul` runs `cpu_native`, else XLA's dot with a float32 result): a
chain of square matmuls inside one jitted loop, synchronised at the end of
every sample, best of several samples. bfloat16 arithmetic can always run in
float32 units, so a bf16 peak is the larger of the two measured rates. Every
measured peak is checked against the host's physical limit (cpu_limit.py): a
rate above it is a timing bug, not a fast machine; where the limit is
unknown the peak says it is unchecked.

The measured peak moves with the host's load, so a run measures it before its
data pipeline and restore start. A rate above the peak is an error of one
measurement or the other, never an MFU above 100% (`mfu` raises).
"""
import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from midtrain_jax.kernels import cpu_gemm, native, select
from midtrain_jax.train import cpu_limit

DTYPES = ("bfloat16", "float32")
_SHORT = {"bfloat16": "bf16", "float32": "fp32"}
# The GEMM kernels of `select.MATMUL` as a peak's source names them.
_KERNEL_NAMES = {"cpu_native": "mkl", "xla": "xla"}


@dataclasses.dataclass(frozen=True)
class Chip:
  """One device's dense peak FLOP/s per compute dtype and its memory."""
  bf16_flops: float
  f32_flops: float
  hbm_bytes: float

  def peak_flops(self, dtype: str) -> float:
    return self.bf16_flops if _dtype_name(dtype) == "bfloat16" else self.f32_flops


# Vendor datasheet figures per chip (TPU) or GPU, dense.
CHIPS = {
    "v4": Chip(275e12, 275e12, 32e9),
    "v5e": Chip(197e12, 197e12, 16e9),
    "v5p": Chip(459e12, 459e12, 95e9),
    "v6e": Chip(918e12, 918e12, 32e9),
    "a100": Chip(312e12, 156e12, 80e9),
    "h100": Chip(989e12, 495e12, 80e9),
    "h100-pcie": Chip(756e12, 378e12, 80e9),
    "h200": Chip(989e12, 495e12, 141e9),
}
# `jax.Device.device_kind` substrings (lower case) -> CHIPS key; first match wins.
_KINDS = (("v6 lite", "v6e"), ("v6e", "v6e"), ("v5 lite", "v5e"), ("v5e", "v5e"),
          ("v5p", "v5p"), ("tpu v5", "v5p"), ("tpu v4", "v4"), ("h200", "h200"),
          ("h100 pcie", "h100-pcie"), ("h100", "h100"), ("a100", "a100"))


def _dtype_name(dtype) -> str:
  name = jnp.dtype(dtype).name
  if name not in DTYPES:
    raise ValueError(f"No peak FLOP/s is defined for dtype {name!r}; use one of {DTYPES}.")
  return name


def chip_for(device_kind: str) -> str | None:
  """The CHIPS key of a `device_kind` string ("TPU v5 lite" -> "v5e"), or None."""
  kind = device_kind.lower()
  return next((chip for pattern, chip in _KINDS if pattern in kind), None)


def format_rate(flops: float) -> str:
  """FLOP/s as GFLOP/s below a TFLOP/s, else TFLOP/s; three digits below 10 of either."""
  value, unit = (flops / 1e12, "TFLOP/s") if flops >= 1e12 else (flops / 1e9, "GFLOP/s")
  return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.3g} {unit}"


@dataclasses.dataclass(frozen=True)
class Peak:
  """The peak FLOP/s of a run's devices and where it comes from.

  Attributes:
    each: one unit's peak (a device; a CPU host, whose fake devices share it).
    source: "measured fp32 xla", "measured fp32 mkl", "v5p bf16", ...
    units: devices (accelerators) or hosts (CPU) the run spans.
    check: how the figure was checked against the host's physical limit.
  """
  each: float
  source: str
  units: int = 1
  check: str = ""

  @property
  def flops(self) -> float:
    """The run's peak: all its units together."""
    return self.each * self.units

  def describe(self) -> str:
    """`peak 412 GFLOP/s measured fp32` or `peak 459 TFLOP/s v5p bf16 x 256`."""
    return f"peak {format_rate(self.each)} {self.source}" + (
        f" x {self.units}" if self.units > 1 else "")


def chip_peak(chip: str, dtype, devices: int = 1) -> Peak:
  """The vendor's dense peak of `devices` of `chip` (a CHIPS key) in `dtype`."""
  name = _dtype_name(dtype)
  return Peak(CHIPS[chip].peak_flops(name), f"{chip} {_SHORT[name]}", devices,
              "vendor datasheet, dense")


def step_kernel(matmul: str, dtype, platform: str, device_count: int) -> str:
  """The GEMM kernel ("cpu_native" or "xla") a train step runs for `model.matmul`."""
  return select.choose("xla", matmul, platform=platform, device_count=device_count,
                       dtype=_dtype_name(dtype)).matmul


def _product(kernel: str, platform: str):
  """(a, b) -> a @ b in float32, as `layers.dot_2d` runs it with `kernel`."""
  if kernel == "cpu_native":
    ready, why = native.status()  # Registers the kernels with XLA (built once).
    if not ready:
      raise RuntimeError(f"MKL's GEMM cannot be measured: {why}.")
    return cpu_gemm.matmul
  if platform == "cpu":
    return lambda a, b: (cpu_gemm.bf16_matmul if a.dtype == jnp.bfloat16
                         else cpu_gemm.xla_matmul)(a, b)
  return lambda a, b: jax.lax.dot(a, b, preferred_element_type=jnp.float32)


@functools.partial(jax.jit, static_argnames=("chain", "kernel", "platform"))
def _chain(x, y, chain: int, kernel: str, platform: str):
  """x @ y @ y ... (`chain` products) through `kernel`'s GEMM on `platform`, each
  rounded to x's dtype."""
  product = _product(kernel, platform)
  return jax.lax.fori_loop(0, chain, lambda _, acc: product(acc, y).astype(acc.dtype), x)


def measure_matmul_flops(dtype="float32", n: int = 1024, chain: int = 8, samples: int = 5,
                         device=None, kernel: str = "xla") -> list[float]:
  """FLOP/s of `samples` timed runs of `chain` dependent n x n matmuls in one jit.

  Each product runs through `kernel`'s GEMM with a float32 result rounded
  back to `dtype`, as the model's dense layers run. Each sample is one call
  of the jitted chain, waited on before the clock stops, so no work is left
  in flight when a sample is timed.
  """
  device = device or jax.local_devices()[0]
  rng = np.random.default_rng(0)
  a = jax.device_put(jnp.asarray(rng.standard_normal((n, n)) / n, dtype), device)
  # Entries of variance 1/n keep the chained product's scale (E|xb|^2 = |x|^2), no
  # overflow or subnormals; cheaper than an orthogonal matrix (a QR took seconds).
  b = jax.device_put(jnp.asarray(rng.standard_normal((n, n)) / np.sqrt(n), dtype), device)
  run = functools.partial(_chain, chain=chain, kernel=kernel, platform=device.platform)
  run(a, b).block_until_ready()  # Compiled once per shape, kernel and device.
  rates = []
  for _ in range(samples):
    start = time.perf_counter()
    run(a, b).block_until_ready()
    rates.append(2 * n**3 * chain / (time.perf_counter() - start))
  return rates


class AboveLimitError(RuntimeError):
  """A measured rate above the host's physical limit: the measurement (or the limit) is wrong."""


def check_against_limit(measured: float, dtype: str = "float32",
                        limit: cpu_limit.CpuLimit | None = None) -> str:
  """Raises AboveLimitError if a measured CPU rate exceeds what the host can
  physically do.

  Returns:
    How it was checked: the limit it is within, or that the limit is unknown.
  """
  limit = limit or cpu_limit.host()
  name = _dtype_name(dtype)
  bound = limit.flops(name)
  if bound is None:
    return f"unchecked: physical limit unknown ({limit.describe(name)})"
  if measured > bound:
    raise AboveLimitError(
        f"Measured {format_rate(measured)} in {name}, above this CPU's physical limit of "
        f"{limit.describe(name)}: the measurement is wrong.")
  return f"{measured / bound:.0%} of the physical limit {format_rate(bound)} {_SHORT[name]}"


def measured_cpu_peak(dtype: str = "float32", kernel: str = "xla") -> tuple[float, str]:
  """(best measured matmul FLOP/s of this host in `dtype` on `kernel`, the source).

  Measured at every call (about a second): the rate moves with the host's
  load, so each run takes its own at its start.
  """
  name = _dtype_name(dtype)
  source = f"measured {_SHORT[name]} {_KERNEL_NAMES[kernel]}"
  cpu = jax.local_devices(backend="cpu")[0]  # Also where an accelerator is the default.
  if name == "float32":
    return max(measure_matmul_flops("float32", device=cpu, kernel=kernel)), source
  f32, _ = measured_cpu_peak("float32", kernel)
  bf16 = max(measure_matmul_flops("bfloat16", device=cpu, kernel=kernel))
  return (bf16, source) if bf16 >= f32 else (f32, source + " (its fp32 rate, faster)")


def cpu_peak(dtype, kernel: str = "xla", hosts: int = 1) -> Peak:
  """The measured peak of this CPU host on the step's GEMM `kernel`, checked
  against the physical limit (AboveLimitError above it)."""
  name = _dtype_name(dtype)
  flops, source = measured_cpu_peak(name, kernel)
  return Peak(flops, source, hosts, check_against_limit(flops, name))


def run_peak(dtype, matmul: str = "auto", devices=None) -> Peak:
  """The peak of a run of the train step on `devices` (default: all of JAX's).

  Args:
    dtype: the model's compute dtype.
    matmul: the `model.matmul` setting (which GEMM a CPU step runs).
    devices: the run's devices (its mesh's).
  """
  devices = list(devices if devices is not None else jax.devices())
  device, name = devices[0], _dtype_name(dtype)
  chip = chip_for(device.device_kind)
  if chip is not None:
    return chip_peak(chip, name, len(devices))
  if device.platform == "cpu":
    # Fake CPU devices share one host's cores: one peak per process's host.
    hosts = len({d.process_index for d in devices})
    return cpu_peak(name, step_kernel(matmul, name, "cpu", len(devices)), hosts)
  # An accelerator missing from the table: its own measured rate, still synchronised.
  rate = max(measure_matmul_flops(name, n=4096, device=device))
  return Peak(rate, f"measured {_SHORT[name]} {device.device_kind}", len(devices),
              "not in the vendor table")


class AbovePeakError(ValueError):
  """A rate above the peak: the peak or the step time was mismeasured."""


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float:
  """Model FLOPs utilisation: the one definition (see the module docstring).

  Raises:
    AbovePeakError: the rate is above `peak` (an MFU above 1 is a measurement error).
  """
  achieved = tokens_per_s * flops_per_token
  if achieved > peak:
    raise AbovePeakError(
        f"{format_rate(achieved)} of model FLOPs, above the peak {format_rate(peak)}: the "
        "peak or the step time was mismeasured")
  return achieved / peak


def mfu_field(tokens_per_s: float, flops_per_token: float, peak: float) -> str:
  """MFU as `0.412`, or `error(...)` where the rate is above the peak."""
  try:
    return f"{mfu(tokens_per_s, flops_per_token, peak):.3f}"
  except AbovePeakError as e:
    return f"error({e})"
