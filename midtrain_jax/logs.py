"""Quiet output: the commands print their own lines, libraries stay silent.

Two sources of noise are handled here, once:

* TensorFlow (pulled in by seqio and clu) writes start-up lines from C++
  (oneDNN, CUDA stubs on a CPU machine) straight to the stderr file
  descriptor. `tensorflow()` imports it with that descriptor muted and hides
  the accelerators from it: they belong to JAX, TF only reads data. Modules
  that need seqio or clu get them from `quiet_import`.
* absl INFO lines from orbax, clu and jax. `configure()` sets the level for
  absl and Python logging; commands take it from `--log_level` (cli.py).
"""
import contextlib
import importlib
import logging
import os
import sys

from absl import logging as absl_logging

LEVELS = ("debug", "info", "warning", "error")
# Python loggers of libraries that log at INFO on every checkpoint or step.
_LIBRARY_LOGGERS = ("absl", "jax", "orbax", "grain", "clu", "tensorflow", "etils",
                    "apache_beam")


@contextlib.contextmanager
def _muted_stderr_fd():
  """Sends writes to file descriptor 2 (C/C++ code) to /dev/null meanwhile."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(devnull)
    os.close(saved)


def tensorflow():
  """TensorFlow, imported without its start-up lines and without accelerators."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if "tensorflow" in sys.modules:
    return sys.modules["tensorflow"]
  # Hiding the devices probes CUDA, which logs from C++ too: keep it muted.
  with _muted_stderr_fd():
    import tensorflow as tf  # noqa: PLC0415 (imported on first use: it is slow)
    for kind in ("GPU", "TPU"):
      try:
        tf.config.set_visible_devices([], kind)
      except (RuntimeError, ValueError):
        pass  # Already initialised, or no such device type.
  return tf


def quiet_import(name: str):
  """Imports a module that pulls in TensorFlow (seqio, clu) without TF's start-up lines."""
  tensorflow()
  return importlib.import_module(name)


def configure(level: str = "warning") -> None:
  """Sets the level of absl and library logs ("info" brings them back)."""
  if level not in LEVELS:
    raise ValueError(f"Log level {level!r} is not one of {LEVELS}.")
  absl_logging.set_verbosity(level)
  absl_logging.set_stderrthreshold(level)
  for name in _LIBRARY_LOGGERS:
    logging.getLogger(name).setLevel(level.upper())
