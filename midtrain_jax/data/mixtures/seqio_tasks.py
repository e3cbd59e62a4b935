"""seqio registry: every data source is a Task, every mix a Mixture.

Listing: `python -m midtrain_jax.data.mixtures --list [--mixture=mix.yaml]`
(data/reports/listing.py). A mixture file's tasks and mixtures (mixture_file.py) are
registered by `register_all` when the config's `data.mixture` names it.

Tasks read raw documents (documents.py), split them into "train" and
"validation" with the same held-out sample as the preparation, (optionally)
decontaminate, tokenise and append EOS. Mixtures carry the catalog's rates.
seqio names allow no "/", so `microanneal/<task>` is registered as
`microanneal:<task>`; the config accepts the catalog spelling.

The training loop never goes through seqio (it reads prepared shards with
Grain); these registrations serve inspection, seqio-based tooling and the
task metadata (capability, counts once prepared, repetition cap, provenance).
"""
import functools
import json

from midtrain_jax import logs
from midtrain_jax.benchmark_data import items
from midtrain_jax.data import settings as data_settings
from midtrain_jax.data.mixtures import catalog, documents, mixture_file, seqio_vocab
from midtrain_jax.decontam import seqio_preprocessor
from midtrain_jax.documents import readers as sources

tf = logs.tensorflow()
seqio = logs.quiet_import("seqio")

# seqio Task names may not contain "/", so the benchmark suite is "eval:<name>".
EVAL_TASK_PREFIX = "eval:"
# Item fields kept as scalar string features (besides the int `label` and the
# string vectors `choices` and `aliases`).
_ITEM_STRING_FIELDS = ("id", "question", "answer", "passage", "final_answer", "test",
                       "entry_point")


def seqio_name(name: str) -> str:
  """Returns the seqio spelling of a catalog task or mixture name."""
  return name.replace("/", ":")


def _text_dataset(split: str, shuffle_files: bool = False, seed: int | None = None, *,
                  task: str, data_cfg_json: str) -> tf.data.Dataset:
  """seqio dataset_fn: the task's documents as {"text": string}."""
  del shuffle_files, seed  # Files are read in order; prepare/Grain shuffle.
  data_cfg = data_settings.data_config()
  data_cfg.update_from_flattened_dict(json.loads(data_cfg_json))
  if mixture_file.is_mixture_file(data_cfg.mixture):
    catalog.load_file(data_cfg.mixture)  # Its tasks, in a process that has not read it.
  spec = catalog.get_task(task)
  want_heldout = split == "validation"

  def texts():
    # The preparation's split (documents.HeldoutSample): training gets what the
    # sample returns as the source is read, validation what it holds at the end.
    sample = documents.HeldoutSample(data_cfg.heldout_fraction, data_cfg.heldout_max_docs)
    for item in documents.read_documents(spec, data_cfg)[1]:
      if isinstance(item, sources.Document):
        train = sample.offer(item.text)
        if train is not None and not want_heldout:
          yield {"text": train}
    if want_heldout:
      yield from ({"text": text} for text in sample.documents())

  return tf.data.Dataset.from_generator(
      texts, output_signature={"text": tf.TensorSpec([], tf.string)})


def _flat_config(data_cfg) -> str:
  flat = {}

  def walk(prefix, node):
    for key, value in node.items():
      if hasattr(value, "items"):
        walk(f"{prefix}{key}.", value)
      else:
        flat[f"{prefix}{key}"] = value
  walk("", data_cfg)
  return json.dumps(flat)


def register_all(data_cfg=None, overwrite: bool = False) -> None:
  """Registers every catalog task and mixture with seqio.

  When `data_cfg.mixture` names a mixture file, its tasks, its mixture and
  its microanneal mixtures are registered too, by the same code.

  Args:
    data_cfg: `data` config (mixture, tokenizer, source paths, decontamination);
      defaults to `config.data_config()`.
    overwrite: replace earlier registrations (e.g. for another tokenizer).
  """
  data_cfg = data_cfg or data_settings.data_config()
  vocab = seqio_vocab.get_vocabulary(data_cfg.tokenizer)
  features = {"targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32)}
  flat = _flat_config(data_cfg)
  benchmarks = tuple(data_cfg.decontam.benchmarks)
  cleaning = []
  if benchmarks:
    cleaning = [functools.partial(seqio_preprocessor.decontaminate, benchmarks=benchmarks,
                                  mode=data_cfg.decontam.mode, text_key="text")]
  task_names, mixtures = list(catalog.TASKS), dict(catalog.MIXTURES)
  if mixture_file.is_mixture_file(data_cfg.mixture):
    file_tasks, file_mixtures = catalog.load_file(data_cfg.mixture)
    task_names += list(file_tasks)
    mixtures.update(file_mixtures)
  for name in task_names:
    if seqio_name(name) in seqio.TaskRegistry.names():
      if not overwrite:
        continue
      seqio.TaskRegistry.remove(seqio_name(name))
    seqio.TaskRegistry.add(
        seqio_name(name),
        source=seqio.FunctionDataSource(
            functools.partial(_text_dataset, task=name, data_cfg_json=flat),
            splits=("train", "validation")),
        preprocessors=cleaning + [
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            seqio.preprocessors.append_eos],
        output_features=features)
  for name, mixture in mixtures.items():
    if seqio_name(name) in seqio.MixtureRegistry.names():
      if not overwrite:
        continue
      seqio.MixtureRegistry.remove(seqio_name(name))
    seqio.MixtureRegistry.add(seqio_name(name), [
        (seqio_name(task), rate) for task, rate in mixture.rates.items()])


def mixture_records(name: str, split: str = "train", text_key: str = "text",
                    id_key: str = "id") -> list[tuple[str, object]]:
  """(task name, iterator of (doc id, record)) for each task of a registered mixture or task.

  Raises:
    ValueError: naming the unknown mixture and the registered ones.
  """
  try:
    provider = seqio.get_mixture_or_task(seqio_name(name))
  except ValueError as e:
    known = sorted(seqio.MixtureRegistry.names()) + sorted(seqio.TaskRegistry.names())
    raise ValueError(f"Mixture or task {name!r} is not registered; known: {known}") from e

  def records(task):
    ds = task.source.get_dataset(split=split, shuffle=False)
    for i, ex in enumerate(ds.as_numpy_iterator()):
      text = ex[text_key].decode("utf-8", errors="replace")
      doc_id = ex[id_key].decode() if id_key in ex else f"{task.name}:{i}"
      yield doc_id, {"id": doc_id, "text": text}

  return [(task.name, records(task)) for task in getattr(provider, "tasks", [provider])]


def eval_task_name(benchmark: str) -> str:
  """The seqio Task name of a benchmark, e.g. "eval:gsm8k"."""
  return EVAL_TASK_PREFIX + benchmark


def _item_dataset(name: str, split: str, shuffle_files: bool, seed=None):
  """seqio dataset_fn: the items of one benchmark as a tf.data.Dataset."""
  del shuffle_files, seed  # One small file; order is the benchmark's order.
  if split != items.get_spec(name).split:
    raise ValueError(f"Benchmark {name!r} has only split "
                     f"{items.get_spec(name).split!r}, not {split!r}")
  loaded = items.load_items(name)
  columns = {f: [getattr(it, f) for it in loaded] for f in _ITEM_STRING_FIELDS}
  columns["label"] = [it.label for it in loaded]
  for field in ("choices", "aliases"):
    columns[field] = [list(getattr(it, field)) for it in loaded]

  def generate():
    for i in range(len(loaded)):
      yield {k: v[i] for k, v in columns.items()}

  signature = {f: tf.TensorSpec((), tf.string) for f in _ITEM_STRING_FIELDS}
  signature["label"] = tf.TensorSpec((), tf.int32)
  signature["choices"] = tf.TensorSpec((None,), tf.string)
  signature["aliases"] = tf.TensorSpec((None,), tf.string)
  return tf.data.Dataset.from_generator(generate, output_signature=signature)


def register_eval_tasks(names=items.DEFAULT_SUITE) -> list[str]:
  """Registers `eval:<name>` seqio Tasks of the benchmark items (idempotent).

  Each example has string features id, question, answer, passage,
  final_answer, test, entry_point, an int32 `label`, and string vectors
  `choices` and `aliases`. No vocabulary is attached: consumers tokenise as
  they need.

  Returns:
    The registered Task names.
  """
  def feature(dtype, rank):
    return seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=dtype,
                         rank=rank)

  features = {f: feature(tf.string, 0) for f in _ITEM_STRING_FIELDS}
  features["choices"] = feature(tf.string, 1)
  features["aliases"] = feature(tf.string, 1)
  features["label"] = feature(tf.int32, 0)
  registered = []
  for name in names:
    full = eval_task_name(name)
    if full not in seqio.TaskRegistry.names():
      seqio.TaskRegistry.add(
          full,
          source=seqio.FunctionDataSource(dataset_fn=functools.partial(_item_dataset, name),
                                          splits=(items.get_spec(name).split,)),
          preprocessors=[],
          output_features=features)
    registered.append(full)
  return registered


register_all()
