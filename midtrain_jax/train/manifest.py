"""A checkpoint's file manifest: every file's size (and CRC32), written last.

Orbax publishes a step directory in one rename once every process has
written its part. Just before that rename (orbax's post-finalisation hook,
in the temporary directory) the manifest is written: each file's relative
path, size in bytes and, with `ckpt.checksums`, its CRC32. So a published
step directory carries its manifest, and a file truncated, removed or
overwritten later (a disk that filled, a copy cut off, a bad block) is found
by `problems()` before anything is loaded, with the file's path.

Orbax rewrites two small records at the step's root after the rename (the
commit timestamp in `_CHECKPOINT_METADATA`, `commit_success.txt`): they are
left out, and `_CHECKPOINT_METADATA`, which restoring reads, is checked to
parse instead.
"""
import json
import zlib

from etils import epath

from midtrain_jax import files

NAME = "files_manifest.json"
_FORMAT = 1
# Written by orbax after the rename, so their sizes differ from the manifest's.
_ROOT_RECORDS = ("_CHECKPOINT_METADATA", "commit_success.txt")
_CHUNK = 8 << 20


def _walk(root: epath.Path, prefix: str = ""):
  """(relative path, path) of every file under `root` (epath has no recursive glob on gs://)."""
  for path in sorted(root.iterdir(), key=lambda p: p.name):
    if path.is_dir():
      yield from _walk(path, f"{prefix}{path.name}/")
    else:
      yield f"{prefix}{path.name}", path


def _crc32(path: epath.Path) -> str:
  crc = 0
  with path.open("rb") as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return f"{crc:08x}"


def _covered(name: str) -> bool:
  return name != NAME and name not in _ROOT_RECORDS


def write(step_dir: str | epath.Path, checksums: bool) -> dict:
  """Lists every file under `step_dir` in its manifest (written atomically, last).

  Args:
    step_dir: a complete checkpoint step directory (or its temporary twin).
    checksums: also record each file's CRC32 (reads every file once).

  Returns:
    The manifest written.
  """
  step_dir = epath.Path(step_dir)
  listing = {}
  for name, path in _walk(step_dir):
    if _covered(name):
      entry = {"size": path.stat().length}
      if checksums:
        entry["crc32"] = _crc32(path)
      listing[name] = entry
  manifest = {"format": _FORMAT, "files": listing,
              "bytes": sum(e["size"] for e in listing.values())}
  files.write_json(step_dir / NAME, manifest)
  return manifest


def read(step_dir: str | epath.Path) -> dict | None:
  """The manifest of `step_dir`, or None when it has none (written before manifests)."""
  path = epath.Path(step_dir) / NAME
  if not path.exists():
    return None
  return json.loads(path.read_text())


def problems(step_dir: str | epath.Path, manifest: dict) -> list[str]:
  """What is wrong with `step_dir` against its manifest: one line per file, naming it.

  Returns:
    [] when every listed file is there with its size (and CRC32).
  """
  step_dir = epath.Path(step_dir)
  found = []
  for name, entry in sorted(manifest["files"].items()):
    path = step_dir / name
    if not path.exists():
      found.append(f"{path}: missing")
      continue
    size = path.stat().length
    if size != entry["size"]:
      found.append(f"{path}: {size} bytes, {entry['size']} when saved (truncated or "
                   "overwritten)")
    elif "crc32" in entry and (crc := _crc32(path)) != entry["crc32"]:
      found.append(f"{path}: content differs from when saved (CRC32 {crc}, saved "
                   f"{entry['crc32']})")
  metadata = step_dir / "_CHECKPOINT_METADATA"
  if metadata.exists():
    try:
      json.loads(metadata.read_text())
    except ValueError:
      found.append(f"{metadata}: not valid JSON (truncated?)")
  return found
