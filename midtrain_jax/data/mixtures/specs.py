"""The plain records that describe tasks and mixtures (no behaviour, no imports of ours).

`catalog.py` holds the built-in ones and `mixture_file.py` builds them from a
user's YAML/JSON file; both share these types, so neither imports the other's
internals.
"""
import dataclasses
from collections.abc import Callable

from midtrain_jax.documents import readers as sources

CAPABILITIES = ("web", "math", "code", "qa", "instruction", "thinking")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """A data source and what the pipeline needs to know about it.

  Attributes:
    name: task name (a valid file-name component).
    capability: one of CAPABILITIES.
    files: data_cfg -> file paths or patterns (may build the demo corpus).
    text_fn: record -> document text; its `__name__` is part of the prepared
      data's fingerprint, so it must change whenever the text it makes does.
    max_epochs: how many times the pipeline may repeat the task's documents.
    provenance: where the text comes from.
    licence: the licence of the text.
    fim: apply fill-in-the-middle (code tasks).
    olmo3_tokens_b: size in the OLMo 3 Dolmino mix (billions of tokens), for
      the tasks of `dolmino_olmo3`.
    seqio_task: when set, the documents are the examples of this registered
      seqio Task or Mixture (after its preprocessors) instead of `files`; see
      seqio_source.py.
    seqio_split: the seqio split read.
    seqio_text_field: the (scalar string) feature holding the text.
    registry_modules: modules to import first, that register `seqio_task`.
    chat: the records are conversations (`messages`, or `prompt` and
      `response`; data/chat.py): stored with a loss mask on the responses,
      for supervised fine-tuning.
    token_files: when set, the documents are already token ids: these files
      (paths or patterns) as OLMo-core publishes them (documents/token_files.py),
      read without tokenising; `files` and `text_fn` are then unused.
    token_dtype: the id width of `token_files` (a key of token_files.DTYPES).
    tokenizer: the tokenizer `token_files` were made with, as `data.tokenizer`
      names one (or its fingerprint); preparing them with another fails.
  """
  name: str
  capability: str
  files: Callable[..., list[str]]
  text_fn: sources.TextFn
  max_epochs: int
  provenance: str
  licence: str
  fim: bool = False
  olmo3_tokens_b: float = 0.0
  seqio_task: str = ""
  seqio_split: str = "train"
  seqio_text_field: str = "text"
  registry_modules: tuple[str, ...] = ()
  chat: bool = False
  token_files: tuple[str, ...] = ()
  token_dtype: str = "uint32"
  tokenizer: str = ""


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
  """A named mixture: {task: rate}, rates being relative token fractions.

  `stages` has the shape of `data.weight_stages` ((start_step, {task: weight}),
  ...) and is used when the config sets neither weights nor stages.
  """
  name: str
  rates: dict[str, float]
  description: str
  stages: tuple = ()
