"""A task's raw documents and its held-out rule, as every stage reads them.

`read_documents` streams a task's documents from its files or from the seqio
Task it names. The held-out split is a bottom-k sample over a hash of the
text (`HeldoutSample`): a document is a candidate when its hash falls under
`data.heldout_fraction` of the hash range (`is_heldout`), and of the
candidates the `data.heldout_max_docs` with the smallest hashes are held out.
So the split is a uniform sample of the whole source, the same whatever order
the source is read in, and the preparation and the seqio Tasks split alike.
"""
import hashlib
import heapq
from collections.abc import Iterator

from midtrain_jax.data.mixtures import specs
from midtrain_jax.documents import readers as sources

# The candidate rule's resolution: a fraction is applied in millionths.
_BUCKETS = 1_000_000


def _digest(text: str | bytes) -> int:
  # Bytes are hashed as they are: documents that are token ids already
  # (data/prepare/pretokenized.py) are split by the same rule.
  data = text if isinstance(text, bytes) else text.encode("utf-8")
  return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _key(digest: int) -> int:
  return (digest % _BUCKETS) << 64 | digest


def heldout_key(text: str) -> int:
  """The document's place in the held-out sample's order: its hash bucket
  (what `is_heldout` compares), ties broken by the whole 64-bit hash, so
  different texts practically never tie and the sample never depends on the
  order the source is read in."""
  return _key(_digest(text))


def _candidate(digest: int, fraction: float) -> bool:
  return digest % _BUCKETS < fraction * _BUCKETS


def is_heldout(text: str, fraction: float) -> bool:
  """True for a held-out candidate: its hash falls under `fraction` of the range.

  Every candidate is held out while a task has at most `data.heldout_max_docs`
  of them (the split prepared before format 3 then has the same documents);
  beyond that `HeldoutSample` keeps those with the smallest `heldout_key`.
  """
  return _candidate(_digest(text), fraction)


class HeldoutSample:
  """The held-out split of one source, built while the source is read.

  A bottom-k sample: of the candidates (`is_heldout`), the `max_docs` with the
  smallest hash keys, which is a uniform sample of the whole source and
  independent of its read order; memory holds at most `max_docs` documents.
  Candidates that end up not held out go to training: `offer` returns them
  when they are pushed out, so every document goes to exactly one split.

  Attributes:
    candidates: candidates offered so far.
  """

  def __init__(self, fraction: float, max_docs: int):
    self._fraction, self._max_docs = fraction, max_docs
    self._heap: list[tuple[int, str]] = []  # (-key, text): the largest key on top.
    self.candidates = 0

  def offer(self, text: str | bytes) -> str | bytes | None:
    """Offers the next document; returns the document that goes to training, if any.

    A document is its text, or the bytes of its token ids where it has no text.

    That is `text` itself when it is not held out, a candidate it pushed out
    of the sample (a larger key), or None when nothing leaves the sample.
    """
    digest = _digest(text)
    if not _candidate(digest, self._fraction):
      return text
    key = _key(digest)
    self.candidates += 1
    if len(self._heap) < self._max_docs:
      heapq.heappush(self._heap, (-key, text))
      return None
    if not self._heap or (-key, text) <= self._heap[0]:
      return text  # Not smaller than the largest key kept (or nothing is kept).
    return heapq.heappushpop(self._heap, (-key, text))[1]

  def documents(self) -> list[str | bytes]:
    """The held-out documents, by increasing key (not read order)."""
    return [text for _, text in sorted(self._heap, reverse=True)]


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
