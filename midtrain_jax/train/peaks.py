"""Peak FLOP/s per device and dtype: the one denominator of every MFU figure.

MFU (model FLOPs utilisation) is, everywhere in this codebase (training logs,
the planner, `benchmarks/train_step.py`):

    MFU = tokens/s x train FLOPs per token (`metrics.flops_per_token`)
          / (devices x `peak_flops(device kind, compute dtype)`)

Accelerators use the vendor's dense (no sparsity) peak for the compute dtype
from `CHIPS`. float32 is the rate JAX's default matmul precision runs at: one
bfloat16 pass on TPU (so the bf16 peak), TF32 tensor cores on A100/H100/H200.

A CPU has no vendor table, so its peak is measured: a chain of square matmuls
inside one jitted loop, synchronised at the end of every sample, best of
several samples. bfloat16 arithmetic can always run in float32 units, so the
bf16 peak is the larger of the two measured rates. Every measurement is
checked against the theoretical limit of the host (cores x FMA pipes x vector
lanes x 2 x clock): a figure above it is a timing bug, not a fast machine.
"""
import dataclasses
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = ("bfloat16", "float32")


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
# A measured rate may exceed the limit at the reported clock by turbo boost.
# Where the OS reports only the base clock (virtual machines report no maximum),
# server parts boost up to about twice it (Xeon 6980P 2.0 -> 3.9 GHz, EPYC 9965
# 2.25 -> 3.7 GHz); where it reports the maximum clock, only rounding is allowed.
TURBO_ALLOWANCE = 2.0
MAX_CLOCK_ALLOWANCE = 1.05


def _dtype_name(dtype) -> str:
  name = jnp.dtype(dtype).name
  if name not in DTYPES:
    raise ValueError(f"No peak FLOP/s is defined for dtype {name!r}; use one of {DTYPES}.")
  return name


def chip_for(device_kind: str) -> str | None:
  """The CHIPS key of a `device_kind` string ("TPU v5 lite" -> "v5e"), or None."""
  kind = device_kind.lower()
  return next((chip for pattern, chip in _KINDS if pattern in kind), None)


@dataclasses.dataclass(frozen=True)
class CpuInfo:
  """What bounds this host's FLOP/s.

  Attributes:
    model: the CPU model name.
    cores: logical CPUs this process may run on.
    clock_hz: the highest clock the OS reports (0 when unknown).
    flags: vector-extension flags found (avx2, fma, avx512f, avx512_bf16, ...).
    clock_is_max: whether `clock_hz` is the CPU's maximum (boost) clock rather
      than a base or current clock.
  """
  model: str
  cores: int
  clock_hz: float
  flags: tuple[str, ...]
  clock_is_max: bool = False

  def f32_flops_per_cycle(self) -> int:
    """Per core: 2 FMA pipes x float32 lanes x 2 FLOPs (0 when unknown)."""
    if "avx512f" in self.flags:
      lanes = 16
    elif "avx2" in self.flags and "fma" in self.flags:
      lanes = 8
    elif "asimd" in self.flags or "neon" in self.flags or "sse2" in self.flags:
      lanes = 4
    else:
      return 0
    return 2 * lanes * 2

  def theoretical_flops(self, dtype: str = "float32") -> float:
    """The host's limit at the reported clock (0 when it cannot be derived)."""
    f32 = self.cores * self.f32_flops_per_cycle() * self.clock_hz
    # AVX512-BF16 dot products do two bf16 multiply-adds per float32 lane.
    return 2 * f32 if _dtype_name(dtype) == "bfloat16" and "avx512_bf16" in self.flags else f32

  def turbo_allowance(self) -> float:
    """How far above `theoretical_flops` a real measurement may go."""
    return MAX_CLOCK_ALLOWANCE if self.clock_is_max else TURBO_ALLOWANCE

  def describe(self) -> str:
    vector = ",".join(f for f in self.flags if f.startswith(("avx", "fma", "amx", "asimd", "sve")))
    clock = f"{self.clock_hz / 1e9:.2f} GHz" if self.clock_hz else "clock unknown"
    return f"{self.model} ({self.cores} cores, {clock}, {vector or 'no vector flags found'})"


_VECTOR_FLAGS = ("sse2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "asimd",
                 "neon", "sve")


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
  """Reads the CPU model, usable cores, clock and vector flags (Linux; best effort elsewhere)."""
  model, clock, flags = platform.processor() or platform.machine(), 0.0, set()
  clock_is_max = False
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
          model = value
        elif key == "cpu MHz":
          clock = max(clock, float(value) * 1e6)
        elif key in ("flags", "Features"):
          flags.update(value.split())
  except OSError:
    pass
  try:
    with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
      clock, clock_is_max = max(clock, float(f.read()) * 1e3), True  # kHz.
  except (OSError, ValueError):
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return CpuInfo(model, cores or 1, clock, tuple(f for f in _VECTOR_FLAGS if f in flags),
                 clock_is_max)


def measure_matmul_flops(dtype="float32", n: int = 1024, chain: int = 8, samples: int = 3,
                         device=None) -> list[float]:
  """FLOP/s of `samples` timed runs of `chain` dependent n x n matmuls in one jit.

  Each sample is one call of the jitted chain, waited on before the clock
  stops, so no work is left in flight when a sample is timed.
  """
  device = device or jax.local_devices()[0]
  rng = np.random.default_rng(0)
  a = jax.device_put(jnp.asarray(rng.standard_normal((n, n)) / n, dtype), device)
  # An orthogonal matrix keeps the chained product's scale constant.
  b = jax.device_put(jnp.asarray(np.linalg.qr(rng.standard_normal((n, n)))[0], dtype), device)

  # Products accumulate and come out in float32, then round to `dtype`: how the
  # model's dense layers run (on CPU a bfloat16 GEMM is about 2x as fast so).
  def product(acc, y):
    return jax.lax.dot(acc, y, preferred_element_type=jnp.float32).astype(acc.dtype)

  @jax.jit
  def run(x, y):
    return jax.lax.fori_loop(0, chain, lambda _, acc: product(acc, y), x)

  run(a, b).block_until_ready()
  rates = []
  for _ in range(samples):
    start = time.perf_counter()
    run(a, b).block_until_ready()
    rates.append(2 * n**3 * chain / (time.perf_counter() - start))
  return rates


def check_against_limit(measured: float, dtype: str = "float32", info: CpuInfo | None = None):
  """Raises if a measured CPU rate exceeds what the host can physically do."""
  info = info or cpu_info()
  limit = info.theoretical_flops(dtype) * info.turbo_allowance()
  if limit and measured > limit:
    raise RuntimeError(
        f"Measured {measured / 1e9:.0f} GFLOP/s in {dtype}, above the {limit / 1e9:.0f} GFLOP/s "
        f"this CPU can reach ({info.describe()}, with {info.turbo_allowance()}x for turbo): "
        "the measurement is wrong.")


@functools.cache
def measured_cpu_peak(dtype: str = "float32") -> float:
  """Best measured matmul FLOP/s of this host in `dtype` (float32 units count for bf16)."""
  name = _dtype_name(dtype)
  if name == "float32":
    best = max(measure_matmul_flops("float32"))
  else:
    best = max(measured_cpu_peak("float32"), *measure_matmul_flops("bfloat16"))
  check_against_limit(best, name)
  return best


def device_peak(dtype, device=None) -> float:
  """Peak FLOP/s of one device in `dtype`: vendor table, or measured where there is none."""
  device = device or jax.local_devices()[0]
  chip = chip_for(device.device_kind)
  if chip is not None:
    return CHIPS[chip].peak_flops(dtype)
  if device.platform == "cpu":
    return measured_cpu_peak(_dtype_name(dtype))
  # An accelerator missing from the table: its own measured rate, still synchronised.
  return max(measure_matmul_flops(dtype, n=4096, device=device))


def system_peak(dtype) -> float:
  """Peak FLOP/s of all the run's devices. Fake CPU devices share one host's cores."""
  if jax.devices()[0].platform == "cpu":
    return device_peak(dtype) * jax.process_count()
  return device_peak(dtype) * jax.device_count()


def host_chip() -> Chip:
  """This CPU host as a Chip for the planner: theoretical peak, physical memory."""
  info = cpu_info()
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  flops = {d: info.theoretical_flops(d) or measured_cpu_peak(d) for d in DTYPES}
  return Chip(flops["bfloat16"], flops["float32"], memory)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float:
  """Model FLOPs utilisation: the one definition (see the module docstring)."""
  return tokens_per_s * flops_per_token / peak
