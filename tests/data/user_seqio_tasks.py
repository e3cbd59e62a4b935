"""A user's registry module: a seqio Task with its own source and preprocessor.

Imported through `data.registry_modules` by tests/data/mixtures/test_seqio_bridge.py.
The preprocessor joins two features into the `text` the bridge reads, so the
prepared text proves it ran.
"""
from midtrain_jax import logs
from tests.data import demo_data

tf = logs.tensorflow()
seqio = logs.quiet_import("seqio")

TASK = "user_test_titled_paragraphs"
SPLITS = ("train", "validation")


def titled_paragraphs() -> list[tuple[str, str]]:
  """(title, body) pairs of real text: the source's raw examples."""
  return [(f"Paragraph {i}", body) for i, body in enumerate(demo_data.package_paragraphs())]


def preprocessed_text(title: str, body: str) -> str:
  """What `join_title` makes of one example (the test's expected text)."""
  return f"TITLE: {title.upper()}\n\n{body}"


def _dataset(split: str, shuffle_files: bool = False, seed=None) -> tf.data.Dataset:
  del split, shuffle_files, seed  # One split of real text is enough here.
  titles, bodies = zip(*titled_paragraphs())
  return tf.data.Dataset.from_tensor_slices({"title": list(titles), "body": list(bodies)})


@seqio.map_over_dataset
def join_title(example: dict) -> dict:
  """The user's preprocessor: `text` = upper-cased title + body."""
  text = tf.strings.join(["TITLE: ", tf.strings.upper(example["title"]), "\n\n",
                          example["body"]])
  return {"text": text}


if TASK not in seqio.TaskRegistry.names():
  seqio.TaskRegistry.add(
      TASK, source=seqio.FunctionDataSource(_dataset, splits=SPLITS),
      preprocessors=[join_title], output_features={})
