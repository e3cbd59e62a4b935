"""Which kernels run: the one choice the model makes and the memory planner plans.

Two config keys (recorded in a run's config.json) request the kernels:

  model.attention  auto | xla | cudnn | splash | cpu_native | reference
  model.matmul     auto | xla | cpu_native

  xla         XLA's own ops only, on every platform.
  cudnn       cuDNN flash attention (GPU).
  splash      Pallas splash attention (TPU; anywhere inside `splash_interpret()`).
  cpu_native  the native CPU kernels (kernels/native.py; `pip install -e ".[cpu]"`):
              fused attention (float32 or bfloat16 inputs) and MKL's float32 GEMM,
              on the CPU backend with one device (XLA cannot partition a custom call).
  reference   plain float32 softmax attention (the ground truth of tests).
  auto        the best kernel that applies: cpu_native attention on one CPU
              device where the native kernels are built, MKL's GEMM there too on
              Intel CPUs only (elsewhere MKL runs about half XLA's GEMM rate;
              kernels/native.py), XLA's ops otherwise (TPU and GPU included).

A requested kernel that cannot run (wrong platform, dtype or device count, the
native kernels not installed or not built) falls back to `xla` with one
warning naming the request, the reason and what runs instead; `auto` falls
back silently. `choose` decides from its arguments alone, so the planner asks
it about a chip and mesh it does not have; `here` asks it about the backend
and mesh being traced, as the model does.
"""
import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
from absl import logging

from midtrain_jax.kernels import native

ATTENTION = ("auto", "xla", "cudnn", "splash", "cpu_native", "reference")
MATMUL = ("auto", "xla", "cpu_native")
# Platforms (jax.default_backend()) each accelerator kernel runs on.
_PLATFORMS = {"cudnn": ("gpu", "cuda"), "splash": ("tpu",)}
# Input dtypes of the native kernels: the attention attends in float32 either way.
_NATIVE_DTYPES = {"attention": ("float32", "bfloat16"), "matmul": ("float32",)}

# Set by `splash_interpret()`: splash runs in the Pallas interpreter everywhere.
_splash_interpret = False


@dataclasses.dataclass(frozen=True)
class Choice:
  """The kernels that run, and why a requested one does not (empty when all run)."""
  attention: str  # xla | cudnn | splash | cpu_native | reference
  matmul: str     # xla | cpu_native
  notes: tuple[str, ...] = ()


@contextlib.contextmanager
def splash_interpret():
  """Runs `splash` in Pallas interpret mode on any backend (for tests on CPU).

  Inside the context a request for splash chooses splash on every platform and
  the kernel is built with `interpret=True`. It is read when a function is
  traced: a jitted function keeps the kernel it was first traced with.
  Interpret mode is slow (seconds for a 256-token sequence); not for training.
  """
  global _splash_interpret
  previous = _splash_interpret
  _splash_interpret = True
  try:
    yield
  finally:
    _splash_interpret = previous


def splash_interpreted() -> bool:
  """Whether splash runs in the Pallas interpreter (inside `splash_interpret()`)."""
  return _splash_interpret


def choose(attention: str = "auto", matmul: str = "auto", *, platform: str,
           device_count: int, dtype) -> Choice:
  """The kernels that run for the requested ones.

  Args:
    attention: the `model.attention` setting.
    matmul: the `model.matmul` setting.
    platform: a jax backend name ("cpu", "gpu", "cuda", "tpu").
    device_count: devices the program is partitioned over.
    dtype: the model's compute dtype (the GEMMs' and attention's operands).

  Returns:
    The Choice. A request that cannot run is warned about once.
  """
  dtype = jnp.dtype(dtype).name
  attention_kernel, attention_note = _attention(attention, platform, device_count, dtype,
                                                _splash_interpret)
  matmul_kernel, matmul_note = _matmul(matmul, platform, device_count, dtype)
  return Choice(attention_kernel, matmul_kernel,
                tuple(n for n in (attention_note, matmul_note) if n))


def traced_device_count() -> int:
  """Devices of the mesh set with `jax.set_mesh` (all of JAX's devices without one)."""
  mesh = jax.sharding.get_abstract_mesh()
  return jax.device_count() if mesh.empty else mesh.size


def here(attention: str = "xla", matmul: str = "xla", *, dtype) -> Choice:
  """`choose` for the default backend and the mesh being traced (read at trace time)."""
  return choose(attention, matmul, platform=jax.default_backend(),
                device_count=traced_device_count(), dtype=dtype)


def _fallback(key: str, requested: str, platform: str, why: str,
              warn: bool) -> tuple[str, str]:
  """("xla", a note saying why `requested` does not run), the note logged as a warning
  when `warn`."""
  if requested == "auto":
    note = f"model.{key}='auto' runs 'xla' on {platform}: {why}."
  else:
    note = (f"model.{key}={requested!r} is not available on {platform}: {why}; "
            "falling back to 'xla'.")
  if warn:
    logging.warning("%s", note)
  return "xla", note


def _native_blocker(op: str, platform: str, device_count: int, dtype: str) -> tuple[str, bool]:
  """(why the native kernel of `op` cannot run here, "" when it can; whether
  only a failed build of installed kernels stops it)."""
  if platform != "cpu":
    return "the native CPU kernels run on the cpu backend only", False
  if device_count != 1:
    return (f"the native CPU kernels run on one device, not {device_count} (XLA cannot "
            "partition a custom call)"), False
  if dtype not in _NATIVE_DTYPES[op]:
    return f"the native {op} kernel takes {' or '.join(_NATIVE_DTYPES[op])}, not {dtype}", False
  ready, why = native.status()
  return ("", False) if ready else (why, native.installed())


@functools.cache
def _attention(requested: str, platform: str, device_count: int, dtype: str,
               interpret: bool) -> tuple[str, str]:
  if requested not in ATTENTION:
    raise ValueError(f"model.attention={requested!r} is not one of {ATTENTION}.")
  if requested in ("xla", "reference"):
    return requested, ""
  if requested == "splash" and interpret:
    return requested, ""
  if requested in _PLATFORMS:
    if platform not in _PLATFORMS[requested]:
      needs = " or ".join(_PLATFORMS[requested])
      return _fallback("attention", requested, platform, f"it needs {needs}", True)
    if requested == "splash" and not _splash_importable():
      return _fallback("attention", requested, platform,
                       "the Pallas splash kernel cannot be imported", True)
    return requested, ""
  why, broken = _native_blocker("attention", platform, device_count, dtype)
  if not why:
    return "cpu_native", ""
  # `auto` warns only where the native kernels are installed but would not build.
  return _fallback("attention", requested, platform, why, requested == "cpu_native" or broken)


@functools.cache
def _matmul(requested: str, platform: str, device_count: int, dtype: str) -> tuple[str, str]:
  if requested not in MATMUL:
    raise ValueError(f"model.matmul={requested!r} is not one of {MATMUL}.")
  if requested == "xla":
    return "xla", ""
  why, _ = _native_blocker("matmul", platform, device_count, dtype)
  if requested == "auto" and not why and native.cpu_vendor() != "GenuineIntel":
    why = "MKL's GEMM outruns XLA's on Intel CPUs only"
  if not why:
    return "cpu_native", ""
  return _fallback("matmul", requested, platform, why, requested == "cpu_native")


def _splash_importable() -> bool:
  try:
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel  # noqa: F401
  except ImportError:
    return False
  return True


def clear_cache() -> None:
  """Forgets earlier answers (tests that change what is installed or built)."""
  _attention.cache_clear()
  _matmul.cache_clear()
