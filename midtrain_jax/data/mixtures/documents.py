"""A task's raw documents and its held-out rule, as every stage reads them.

`read_documents` streams a task's documents from its files or from the seqio
Task it names; `is_heldout` decides by a hash of the text which documents form
the held-out split, so the preparation and the seqio Tasks split alike.
"""
import hashlib
from collections.abc import Iterator

from midtrain_jax.data.mixtures import specs
from midtrain_jax.documents import readers as sources


def is_heldout(text: str, fraction: float) -> bool:
  """True for documents of the held-out split (a hash of the text, so the
  split survives re-ordering and is the same in seqio and prepare)."""
  digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little") % 1_000_000 < fraction * 1_000_000


def read_documents(spec: specs.TaskSpec, data_cfg
                   ) -> tuple[list[str], Iterator[sources.Document | sources.Malformed]]:
  """(source files, stream of documents) of a task: its files, or its seqio Task.

  Args:
    spec: the task.
    data_cfg: the `data` config section (source paths, registry modules).

  Returns:
    The files read ([] for a seqio task) and the lazy document stream.
  """
  if not spec.seqio_task:
    files = sources.expand(spec.files(data_cfg))
    return files, sources.read_files(files, spec.text_fn)
  # Imported here only: it brings TensorFlow and seqio, and the training path
  # imports this module (test_training_path_does_not_import_tensorflow_or_seqio).
  from midtrain_jax.data.mixtures import seqio_source  # noqa: PLC0415
  modules = dict.fromkeys([*data_cfg.registry_modules, *spec.registry_modules])
  seqio_source.import_modules(modules)
  return [], seqio_source.read_task(spec.seqio_task, spec.seqio_split, spec.seqio_text_field)
