"""Builds and registers the native CPU kernels (cpu_gemm.cc, cpu_attention.cc) with XLA.

The kernels are XLA FFI custom calls on MKL's sgemm (the GEMM and the fused
attention's score and output products alike), an optional extra: `pip install
-e ".[cpu]"` installs the MKL runtime (x86-64 Linux). They are compiled on
first use with the system's C++ compiler against the XLA FFI headers jaxlib
ships and the MKL runtime of the `mkl` wheel, for this CPU (-march=native), and
cached per source, compiler flags, jax and jaxlib versions, MKL path and CPU
under $XDG_CACHE_HOME/midtrain_jax/kernels (default ~/.cache).

Which kernels run is chosen by the `model.attention` and `model.matmul` config
keys (kernels/select.py). Under `auto` the GEMM runs on MKL only on Intel
CPUs: MKL takes its AVX-512 code paths only there, and on other x86 CPUs its
AVX2 paths run at about half XLA's own GEMM (one [4096, 768] x [768, 3072]
GEMM on a 2-core AMD EPYC Zen 5: MKL 184 GFLOP/s, XLA 394; on a 2-core Xeon:
MKL 309, XLA 235).
"""
import ctypes
import functools
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import jax
import jaxlib

_SOURCES = [os.path.join(os.path.dirname(__file__), name)
            for name in ("cpu_gemm.cc", "cpu_attention.cc")]
# Included by the sources: part of the cache key, not of the command line.
_HEADERS = [os.path.join(os.path.dirname(__file__), "kernel_support.h")]
# FFI target name -> exported handler symbol.
TARGETS = {
    "midtrain_cpu_gemm": "MidtrainCpuGemm",
    "midtrain_cpu_attention_fwd": "MidtrainCpuAttentionForward",
    "midtrain_cpu_attention_bwd": "MidtrainCpuAttentionBackward",
}


def mkl_runtime() -> str | None:
  """Path of MKL's single dynamic library (libmkl_rt), or None."""
  for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
    found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), key=len)
    if found:
      return found[0]
  return None


@functools.cache
def _cpuinfo_lines() -> tuple[str, ...]:
  """The lines of /proc/cpuinfo (none where there is no such file)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      return tuple(f)
  except OSError:
    return ()


def cpu_vendor() -> str:
  """The x86 vendor string of /proc/cpuinfo (GenuineIntel, AuthenticAMD), or ""."""
  return next((line.partition(":")[2].strip() for line in _cpuinfo_lines()
               if line.startswith("vendor_id")), "")


def _cpu_signature() -> bytes:
  """This CPU's model and flags: the library is built for it (-march=native)."""
  lines = [x for x in _cpuinfo_lines() if x.startswith(("flags", "model name"))][:2]
  return (platform.machine() + "".join(lines)).encode()


def _cache_dir() -> str:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "midtrain_jax", "kernels")


# The softmax loops (exp, sums, maxima) vectorise with `omp simd` and no FP traps
# or errno: no OpenMP runtime, no fast-math (results keep IEEE rounding).
_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno",
          "-std=c++17", "-shared", "-fPIC"]


def build(runtime: str) -> str:
  """Compiles the kernels against `runtime` (once per version); the library's path."""
  digest = hashlib.sha256("\0".join([jax.__version__, jaxlib.__version__, runtime,
                                     *_FLAGS]).encode() +
                          _cpu_signature())
  for source in _SOURCES + _HEADERS:
    with open(source, "rb") as f:
      digest.update(f.read())
  out_dir = _cache_dir()
  target = os.path.join(out_dir, f"libmidtrain_cpu-{digest.hexdigest()[:16]}.so")
  if os.path.exists(target):
    return target
  compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
  if compiler is None:
    raise RuntimeError("no C++ compiler (g++, c++ or $CXX) on PATH")
  os.makedirs(out_dir, exist_ok=True)
  # Built under a temporary name and renamed: processes building at once
  # (test workers) never load a half-written library.
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
  os.close(fd)
  lib_dir, lib_name = os.path.split(runtime)
  cmd = [compiler, *_FLAGS, "-isystem", jax.ffi.include_dir(), *_SOURCES, "-o", tmp,
         f"-L{lib_dir}", f"-l:{lib_name}", f"-Wl,-rpath,{lib_dir}"]
  try:
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    os.replace(tmp, target)
  except subprocess.CalledProcessError as e:
    raise RuntimeError(f"compiling {', '.join(_SOURCES)} failed:\n{e.stderr[-2000:]}") from e
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return target


def installed() -> bool:
  """Whether the `cpu` extra (the MKL runtime the kernels link) is installed."""
  return mkl_runtime() is not None


@functools.cache
def status() -> tuple[bool, str]:
  """(whether the kernels are registered with XLA, why not when they are not); built once."""
  runtime = mkl_runtime()
  if runtime is None:
    return False, 'MKL is not installed (pip install -e ".[cpu]")'
  try:
    library = ctypes.cdll.LoadLibrary(build(runtime))
  except (OSError, RuntimeError) as e:
    return False, f"the native CPU kernels could not be built or loaded: {e}"
  for target, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")
  return True, ""
