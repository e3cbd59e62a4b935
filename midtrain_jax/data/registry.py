"""seqio registry: every data source is a Task, every mix a Mixture.

  python -m midtrain_jax.data.registry --list

Tasks read raw documents with the readers of `sources.py`, split them into
"train" and "validation" with the same held-out rule as prepare, (optionally)
decontaminate, tokenise and append EOS. Mixtures carry the catalog's rates.
seqio names allow no "/", so `microanneal/<task>` is registered as
`microanneal:<task>`; the config accepts the catalog spelling.

The training loop never goes through seqio (it reads prepared shards with
Grain); these registrations serve inspection, seqio-based tooling and the
task metadata (capability, counts once prepared, repetition cap, provenance).
"""
import functools
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import seqio  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from midtrain_jax.data import cache  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import catalog  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import config as config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import prepare  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import sources  # pylint: disable=g-import-not-at-top,wrong-import-position
from midtrain_jax.data import vocabulary  # pylint: disable=g-import-not-at-top,wrong-import-position

tf.config.set_visible_devices([], "GPU")


def seqio_name(name: str) -> str:
  """Returns the seqio spelling of a catalog task or mixture name."""
  return name.replace("/", ":")


def _text_dataset(split: str, shuffle_files: bool = False, seed: int | None = None, *,
                  task: str, data_cfg_json: str) -> tf.data.Dataset:
  """seqio dataset_fn: the task's documents as {"text": string}."""
  del shuffle_files, seed  # Files are read in order; prepare/Grain shuffle.
  data_cfg = config_lib.data_config()
  data_cfg.update_from_flattened_dict(json.loads(data_cfg_json))
  spec = catalog.get_task(task)
  files = sources.expand(spec.files(data_cfg))
  want_heldout = split == "validation"

  def documents():
    for item in sources.read_files(files, spec.text_fn):
      if (isinstance(item, sources.Document) and
          prepare.is_heldout(item.text, data_cfg.heldout_fraction) == want_heldout):
        yield {"text": item.text}

  return tf.data.Dataset.from_generator(
      documents, output_signature={"text": tf.TensorSpec([], tf.string)})


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


def task_metadata(name: str) -> dict:
  """Returns capability, repetition cap, provenance, licence and, once prepared
  anywhere in the cache, document/token counts of a task."""
  spec = catalog.get_task(name)
  meta = dict(capability=spec.capability, max_epochs=spec.max_epochs, fim=spec.fim,
              provenance=spec.provenance, licence=spec.licence, docs=None, tokens=None)
  for stats_path in sorted((cache.cache_root() / "prepared").glob(f"**/{name}/stats.json")):
    stats = json.loads(stats_path.read_text())
    meta.update(docs=stats["train_docs"], tokens=stats["train_tokens"])
    break
  return meta


def register_all(data_cfg=None, overwrite: bool = False) -> None:
  """Registers every catalog task and mixture with seqio.

  Args:
    data_cfg: `data` config (tokenizer, source paths, decontamination);
      defaults to `config.data_config()`.
    overwrite: replace earlier registrations (e.g. for another tokenizer).
  """
  data_cfg = data_cfg or config_lib.data_config()
  vocab = vocabulary.get_vocabulary(data_cfg.tokenizer)
  features = {"targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32)}
  flat = _flat_config(data_cfg)
  benchmarks = tuple(n.strip() for n in data_cfg.decontam.benchmarks.split(",") if n.strip())
  cleaning = []
  if benchmarks:
    from midtrain_jax.data import decontam  # pylint: disable=g-import-not-at-top
    cleaning = [functools.partial(decontam.seqio_preprocessor, benchmarks=benchmarks,
                                  mode=data_cfg.decontam.mode, text_key="text")]
  for name in catalog.TASKS:
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
  for name, mixture in catalog.MIXTURES.items():
    if seqio_name(name) in seqio.MixtureRegistry.names():
      if not overwrite:
        continue
      seqio.MixtureRegistry.remove(seqio_name(name))
    seqio.MixtureRegistry.add(seqio_name(name), [
        (seqio_name(task), rate) for task, rate in mixture.rates.items()])


def listing() -> str:
  """Returns the human-readable table printed by `--list`."""
  lines = ["TASKS", f"  {'name':34s} {'capability':12s} {'cap':>4s} {'docs':>8s} "
           f"{'tokens':>12s}  provenance"]
  for name in catalog.TASKS:
    meta = task_metadata(name)
    docs = "-" if meta["docs"] is None else f"{meta['docs']:,}"
    tokens = "-" if meta["tokens"] is None else f"{meta['tokens']:,}"
    lines.append(f"  {name:34s} {meta['capability']:12s} {meta['max_epochs']:>3d}x "
                 f"{docs:>8s} {tokens:>12s}  {meta['provenance']} [{meta['licence']}]")
  lines.append("MIXTURES (rates are token fractions)")
  for name, mixture in catalog.MIXTURES.items():
    total = sum(mixture.rates.values())
    rates = ", ".join(f"{task} {rate / total:.3f}" for task, rate in mixture.rates.items())
    capabilities = sorted({catalog.TASKS[t].capability for t in mixture.rates})
    lines.append(f"  {name} (seqio: {seqio_name(name)}; {'/'.join(capabilities)}): {rates}")
  return "\n".join(lines)


register_all()


def main(argv: list[str]) -> int:
  if "--list" not in argv[1:]:
    print("usage: python -m midtrain_jax.data.registry --list", file=sys.stderr)
    return 2
  print(listing())
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
