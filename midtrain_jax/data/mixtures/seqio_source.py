"""The seqio-to-Grain bridge: documents from a user-registered seqio Task.

A mixture-file task may name a seqio Task (or Mixture) instead of files:

  registry_modules: [my_pkg.my_tasks]      # or --config.data.registry_modules
  tasks:
    my_task: {seqio_task: my_registered_task, capability: qa, weight: 0.3}

Prepare imports the registry modules (which call `seqio.TaskRegistry.add`),
runs the Task's source and preprocessors once through `read_task`, and writes
the output as ArrayRecord shards like any other task; training then reads the
shards with Grain (staged weights, exact resume), never seqio.

Contract: after its preprocessors, each example must have a scalar string
feature named `text_field` ("text" by default) holding the whole document.
The Task needs no vocabulary or tokenising preprocessors: prepare applies the
run's tokenizer (and BOS/EOS) itself, and `sequence_length` is None, so
preprocessors that trim or pack must not be used. Examples whose text is
missing, not a string or empty are counted as malformed (`data.max_malformed`).
A seqio Mixture keeps only its Tasks' declared output features, so for one
each Task must declare the text, e.g. `output_features={"text":
seqio.Feature(seqio.PassThroughVocabulary(1), add_eos=False, dtype=tf.string,
rank=0)}`; a Task read directly may declare none.

TensorFlow and seqio are imported on first use only: preparation imports this
module inside the branch that needs it, so training never loads them.
"""
import importlib
from collections.abc import Iterable, Iterator

from midtrain_jax import logs
from midtrain_jax.documents import readers as sources


def import_modules(names: Iterable[str]) -> None:
  """Imports the modules that register the user's seqio Tasks and Mixtures.

  Args:
    names: dotted module names, e.g. ("my_pkg.my_tasks",).

  Raises:
    ImportError: naming the module that failed to import and why.
  """
  logs.quiet_import("seqio")  # TensorFlow without its start-up lines, before the user's.
  for name in names:
    try:
      importlib.import_module(name)
    except Exception as e:  # Any failure of the user's module: name it.
      raise ImportError(f"Registry module {name!r} (data.registry_modules) failed to "
                        f"import: {type(e).__name__}: {e}") from e


def read_task(task_name: str, split: str = "train",
              text_field: str = "text") -> Iterator[sources.Document | sources.Malformed]:
  """Yields the documents of a registered seqio Task or Mixture, preprocessed.

  Args:
    task_name: the name the Task or Mixture was registered under.
    split: the seqio split to read.
    text_field: the scalar string feature holding the document text.

  Yields:
    `sources.Document(text, "seqio:<task>:<index>")` per usable example,
    `sources.Malformed` (naming the task, index and field) otherwise.

  Raises:
    ValueError: when no Task or Mixture has that name (listing the known ones).
  """
  seqio = logs.quiet_import("seqio")
  try:
    task = seqio.get_mixture_or_task(task_name)
  except ValueError as e:
    known = sorted(seqio.TaskRegistry.names() | seqio.MixtureRegistry.names())
    raise ValueError(f"seqio task {task_name!r} is not registered (is its module in "
                     f"data.registry_modules?); registered: {known}") from e
  # Preprocessors run here; no sequence_length: we tokenise and pack ourselves.
  # One epoch (a Mixture repeats forever by default), seeded so that a Mixture
  # interleaves its tasks the same way when prepare resumes.
  dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1,
                             seed=0)
  for index, example in enumerate(dataset.as_numpy_iterator()):
    where = f"seqio:{task_name}:{index}"
    value = example.get(text_field) if isinstance(example, dict) else None
    if isinstance(value, bytes):
      try:
        value = value.decode("utf-8")
      except UnicodeDecodeError:
        yield sources.Malformed(where, f"invalid UTF-8 (feature {text_field!r})")
        continue
    if value is None:
      features = sorted(example) if isinstance(example, dict) else type(example).__name__
      yield sources.Malformed(where, f"missing text field (no feature {text_field!r}; "
                                     f"the example has {features})")
    elif not isinstance(value, str):
      yield sources.Malformed(where, f"missing text field (feature {text_field!r} is "
                                     f"{type(value).__name__}, not a scalar string)")
    elif not value.strip():
      yield sources.Malformed(where, f"empty document (feature {text_field!r})")
    else:
      yield sources.Document(value, where)
