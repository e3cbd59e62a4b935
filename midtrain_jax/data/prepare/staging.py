"""What a Beam worker reads besides its input, handed over through the output folder.

Workers of a remote runner (Dataflow) share no filesystem with the launcher,
but they all reach the output folder, a URL such as gs://... The launcher
copies the tokenizer's files and the decontamination index into
`<out>/_staged/`; a worker reads them from there (copied once per process to
local disk when the folder is a URL, read in place when it is local); the
launcher removes the folder when the pipeline is done. Every Beam run goes
this way, whatever its runner, so a local run takes the path a remote one
takes.
"""
import dataclasses
import pathlib

from midtrain_jax import files
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.prepare import writing

STAGED = "_staged"


@dataclasses.dataclass(frozen=True)
class Staged:
  """A run's staged files (picklable: locations only).

  Attributes:
    folder: `<out>/_staged`, a local path or a URL.
    tokenizer: the staged tokenizer file (`load_tokenizer` loads it).
    cleaner: the run's decontamination reading the staged index (None: off).
  """
  folder: str
  tokenizer: str
  cleaner: writing.Cleaner | None


def _copy(path: str, folder) -> str:
  """Copies a local file into `folder` (local or a URL); its location there."""
  folder.mkdir(parents=True, exist_ok=True)
  target = folder / pathlib.Path(path).name
  files.write_bytes(target, pathlib.Path(path).read_bytes())
  return str(target)


def stage(out, tok: tokenizer_lib.Tokenizer, cleaner: writing.Cleaner | None) -> Staged:
  """Copies the tokenizer's files and the cleaner's index into `out/_staged`."""
  folder = files.path(out) / STAGED
  remove(str(folder))
  # Named by content (the index's name holds its rules' key), as workers keep their
  # copies by location: another tokenizer or index staged here is another location.
  tokenizer = [_copy(str(path), folder / f"tokenizer-{tok.fingerprint()}")
               for path in tok.files()][0]
  staged_cleaner = None
  if cleaner is not None:
    index = _copy(cleaner.index_file(), folder / "decontam")
    staged_cleaner = writing.Cleaner(cleaner.benchmarks, cleaner.mode, cleaner.cache_dir, index)
  return Staged(str(folder), tokenizer, staged_cleaner)


def remove(folder: str) -> None:
  """Removes a staged folder (the run is done: nothing of it stays in the output)."""
  files.remove_tree(folder)


def load_tokenizer(staged: Staged) -> tokenizer_lib.Tokenizer:
  """The run's tokenizer, loaded from its staged files (on a worker)."""
  for path in files.path(staged.tokenizer).parent.iterdir():  # Its config beside it too.
    files.local_copy(str(path))
  return tokenizer_lib.load_tokenizer(files.local_copy(staged.tokenizer))
