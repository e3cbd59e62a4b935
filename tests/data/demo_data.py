"""Prepared demo data shared by the data tests (built once per test session)."""
import functools
import pathlib
import tempfile

from midtrain_jax import config as config_lib
from midtrain_jax.data.prepare import tasks as preparation


@functools.cache
def prepared_dir(mixture: str = "dolmino_demo") -> str:
  """Prepares `mixture` into a fresh temporary folder once and returns it."""
  out = tempfile.mkdtemp(prefix=f"prepared_{mixture.replace('/', '_')}_")
  cfg = config_lib.data_config()
  cfg.mixture = mixture
  preparation.prepare(cfg, out, log=lambda _: None)
  return out


def data_cfg(mixture: str = "dolmino_demo", **overrides):
  """A `data` config reading the session's prepared copy of `mixture`."""
  cfg = config_lib.data_config()
  cfg.mixture = mixture
  cfg.data_dir = prepared_dir(mixture)
  cfg.prepare_if_missing = False
  for key, value in overrides.items():
    cfg[key] = value
  return cfg


def package_paragraphs() -> list[str]:
  """Real, clean text: paragraphs (> 200 chars) of the data package's modules."""
  root = pathlib.Path(preparation.__file__).parents[1]
  paragraphs = []
  for path in sorted(root.rglob("*.py")):
    paragraphs += [p for p in path.read_text(encoding="utf-8").split("\n\n") if len(p) > 200]
  return paragraphs
