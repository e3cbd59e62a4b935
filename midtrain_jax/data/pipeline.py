"""Training and evaluation input: prepared shards -> mix -> FIM -> pack -> batch.

Per task: ArrayRecord shards -> this process's slice -> shuffle (a new
permutation every epoch) -> repeat up to the task's cap -> FIM (code tasks).
Then the tasks are mixed by staged token weights (`mixture.py`), packed
best-fit into rows (`packing.py`) and batched. Every batch is a dict of int32
numpy arrays of shape [batch_size // process_count, seq_len]:

  inputs       token ids
  targets      next-token ids (per document, so never across documents)
  segment_ids  1, 2, ... per packed document in the row; 0 = padding
  positions    position inside the document piece, from 0
  task_ids     index into `task_names(data_cfg)`; -1 = padding

No TensorFlow or seqio here: this module runs on the training hot path.
"""
import zlib
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from midtrain_jax.data import catalog, fim, layout, packing, preparation
from midtrain_jax.data import mixture as mixture_lib
from midtrain_jax.data import tokenizer as tokenizer_lib


def load_manifest(data_cfg) -> dict:
  """Returns the manifest of the prepared mixture, preparing it if allowed.

  Args:
    data_cfg: the `data` config section.

  Returns:
    The manifest dict written by prepare.

  Raises:
    FileNotFoundError: when shards are missing and `prepare_if_missing` is off.
    ValueError: when the shards were made with another tokenizer.
  """
  catalog.get_mixture(data_cfg.mixture)  # Unknown mixture: fail first, clearly.
  data_dir = layout.resolve_dir(data_cfg)
  manifest = layout.read_manifest(data_dir)
  if manifest is None:
    if not data_cfg.prepare_if_missing:
      raise FileNotFoundError(
          f"No prepared data in {data_dir} (missing {layout.MANIFEST}). Run `python -m "
          f"midtrain_jax.data.prepare --mixture={data_cfg.mixture} --out={data_dir}` "
          "or set data.prepare_if_missing=True.")
    print(f"[data] {data_dir} has no prepared data; preparing {data_cfg.mixture} now",
          flush=True)
    manifest = preparation.prepare(data_cfg, data_dir)
  if manifest["tokenizer"] != data_cfg.tokenizer:
    raise ValueError(f"{data_dir} was prepared with tokenizer {manifest['tokenizer']!r}"
                     f" but data.tokenizer is {data_cfg.tokenizer!r}; set "
                     "data.data_dir to another folder or re-prepare.")
  return manifest


def task_names(data_cfg) -> list[str]:
  """Returns the task names that `task_ids` index, in order."""
  return list(catalog.get_mixture(data_cfg.mixture).rates)


def vocab_size(data_cfg) -> int:
  """Returns the tokenizer's vocabulary size (for checking the model's)."""
  return tokenizer_lib.vocab_size(data_cfg.tokenizer)


def undecontaminated(data_cfg, suite) -> dict[str, list[str]]:
  """{task: benchmarks of `suite` its prepared data was not checked against}, gaps only."""
  return layout.missing_benchmarks(layout.resolve_dir(data_cfg), task_names(data_cfg),
                                   tuple(suite))


def _decode(record: bytes) -> dict[str, np.ndarray]:
  return {"tokens": layout.decode_record(record)}


def _task_seed(seed: int, shuffle_seed: int, task: str) -> int:
  # Keyed by the task's name, so adding a task does not reshuffle the others.
  sequence = np.random.SeedSequence([seed, shuffle_seed, zlib.crc32(task.encode())])
  return int(sequence.generate_state(1)[0])


class TrainIterator(grain.DatasetIterator):
  """The training batch iterator: `next()`, `get_state()`, `set_state()`.

  Attributes:
    task_names: names that `task_ids` index.
    local_shards: loader shards this process reads. Its state is the shard's
      state when 1, else {"shards": [one state per shard]}.
  """

  def __init__(self, inner: grain.DatasetIterator, mixes: list[mixture_lib.MixIterator],
               names: list[str], local_shards: int):
    super().__init__(inner)
    self._mixes = mixes
    self.task_names = names
    self.local_shards = local_shards

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._parent)

  def get_state(self) -> dict[str, Any]:
    return self._parent.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state)

  def counters(self) -> dict[str, dict[str, float]]:
    """Per task: docs and tokens the loader has drawn and epochs started.

    Summed over this process's loader shards (epochs: their mean). Empty with
    `data.num_workers > 0`: the mixer then lives in the prefetch thread.
    """
    total: dict[str, dict[str, float]] = {}
    for mix in self._mixes:
      for task, counts in mix.counters().items():
        into = total.setdefault(task, dict.fromkeys(counts, 0.0))
        for key, value in counts.items():
          into[key] += value / len(self._mixes) if key == "epochs" else value
    return total


def _find_mixes(it: grain.DatasetIterator) -> list[mixture_lib.MixIterator]:
  found, stack = [], [it]
  while stack:
    node = stack.pop()
    if isinstance(node, mixture_lib.MixIterator):
      found.append(node)
    stack.extend(getattr(node, "_parents", ()))
  return found


class _ConcatRowsIterator(grain.DatasetIterator):
  """Next batch of every loader shard, rows concatenated in shard order."""

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(parent) for parent in self._parents]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

  def get_state(self) -> dict[str, Any]:
    return {"shards": [parent.get_state() for parent in self._parents]}

  def set_state(self, state: dict[str, Any]) -> None:
    for parent, shard_state in zip(self._parents, state["shards"], strict=True):
      parent.set_state(shard_state)


class _ConcatRowsIterDataset(grain.IterDataset):
  def __iter__(self) -> _ConcatRowsIterator:
    return _ConcatRowsIterator([parent.__iter__() for parent in self._parents])


def loader_shards(data_cfg, process_count: int) -> int:
  """Number of logical loader streams (see `data.loader_shards`), validated."""
  shards = data_cfg.loader_shards or process_count
  if shards % process_count:
    raise ValueError(f"data.loader_shards={shards} is not divisible by the "
                     f"{process_count} processes.")
  if data_cfg.batch_size % shards:
    raise ValueError(f"data.batch_size={data_cfg.batch_size} is not divisible by "
                     f"{shards} loader shards.")
  return shards


def make_train_dataset(data_cfg, *, seed: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1
                       ) -> grain.IterDataset:
  """Builds the Grain IterDataset behind `make_train_iterator` (same args).

  The process reads loader shards [i * S / P, (i + 1) * S / P) of S, each a
  full pipeline (shuffle, repeat, mix, FIM, pack) over its slice of documents.
  """
  if data_cfg.seq_len <= 0 or data_cfg.batch_size <= 0:
    raise ValueError("data.seq_len and data.batch_size must be positive.")
  shards = loader_shards(data_cfg, process_count)
  per_process = shards // process_count
  streams = [_shard_dataset(data_cfg, seed=seed, start_step=start_step, shard=s, shards=shards)
             for s in range(process_index * per_process, (process_index + 1) * per_process)]
  return streams[0] if len(streams) == 1 else _ConcatRowsIterDataset(streams)


def _shard_dataset(data_cfg, *, seed: int, start_step: int, shard: int,
                   shards: int) -> grain.IterDataset:
  """One loader stream: documents shard::shards of each task -> batches of its rows."""
  spec = catalog.get_mixture(data_cfg.mixture)
  weights = data_cfg.weights.to_dict()
  # A mixture file's own stages apply unless the config sets weights or stages.
  weight_stages = data_cfg.weight_stages or (() if weights else spec.stages)
  names, stages = mixture_lib.resolve_stages(spec.rates, weights, weight_stages)
  manifest = load_manifest(data_cfg)
  data_dir = layout.resolve_dir(data_cfg)
  # A model's own vocabulary may have no FIM sentinels: code is then left whole.
  fim_ids = manifest["fim_ids"] and fim.FimIds(
      **{k: manifest["fim_ids"][k] for k in ("prefix", "middle", "suffix")})
  tasks, epoch_docs = [], []
  for name in names:
    task = catalog.get_task(name)
    files = layout.shard_files(data_dir, name, "train")
    ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(files))
    ds = ds[shard::shards]
    if len(ds) == 0:
      raise ValueError(f"Task {name} has no training documents for loader shard "
                       f"{shard} of {shards}.")
    epochs = data_cfg.max_epochs or task.max_epochs
    task_seed = _task_seed(seed, data_cfg.shuffle_seed, name)
    epoch_docs.append(len(ds))
    ds = ds.shuffle(seed=task_seed).repeat(epochs).map(_decode)
    if task.fim and data_cfg.fim_rate > 0 and fim_ids:
      ds = ds.random_map(fim.FimTransform(rate=data_cfg.fim_rate,
                                          spm_rate=data_cfg.fim_spm_rate, ids=fim_ids),
                         seed=task_seed ^ 0x5F1A)
    tasks.append(ds)
  rows = data_cfg.batch_size // shards
  mixed = mixture_lib.StagedMixIterDataset(
      tasks, task_names=names, stages=stages, epoch_docs=epoch_docs,
      tokens_per_step=rows * data_cfg.seq_len, start_step=start_step)
  packed = packing.BestFitPackIterDataset(
      mixed, seq_len=data_cfg.seq_len, window_rows=data_cfg.packing_window_rows,
      pad_id=manifest["pad_id"], seed=_task_seed(seed, data_cfg.shuffle_seed, "pack"))
  return packed.batch(rows, drop_remainder=True)


def make_train_iterator(data_cfg, *, seed: int, start_step: int = 0,
                        process_index: int = 0, process_count: int = 1
                        ) -> TrainIterator:
  """Returns this process's checkpointable iterator of training batches.

  Args:
    data_cfg: the `data` config section.
    seed: run seed; combined with `data.shuffle_seed` for the data order.
    start_step: training step of the first batch; weight stages are read on
      this clock (the data order itself does not skip anything).
    process_index: this host's index.
    process_count: number of hosts; each gets batch_size // process_count rows.

  Returns:
    A TrainIterator; `get_state()` is JSON-serialisable, and `set_state()` on a
    fresh iterator built with the same arguments continues exactly.
  """
  ds = make_train_dataset(data_cfg, seed=seed, start_step=start_step,
                          process_index=process_index, process_count=process_count)
  if data_cfg.num_workers > 0:
    # A thread, not processes: mixing and packing are one ordered stream, and
    # one core already packs millions of tokens/s (benchmarks/data_pipeline.py).
    ds = grain.experimental.ThreadPrefetchIterDataset(
        ds, prefetch_buffer_size=data_cfg.num_workers)
  inner = ds.__iter__()
  local_shards = loader_shards(data_cfg, process_count) // process_count
  return TrainIterator(inner, _find_mixes(inner), task_names(data_cfg), local_shards)


class EvalBatches:
  """Held-out documents of one task as packed batches, plus their byte count.

  Iterate for batches (same keys as training; the last batch is padded with
  empty rows). `num_bytes` is the UTF-8 size of the held-out texts and
  `num_tokens` the number of predicted tokens, so bits per byte is
  `sum(token losses in nats) / ln(2) / num_bytes`.
  """

  def __init__(self, docs: list[np.ndarray], stats: dict, *, seq_len: int,
               batch_size: int, pad_id: int, task_id: int):
    self.num_docs = len(docs)
    self.num_bytes = int(stats["heldout_bytes"])
    self.num_tokens = int(sum(len(d) - 1 for d in docs))
    self._docs, self._seq_len, self._batch_size = docs, seq_len, batch_size
    self._pad_id, self._task_id = pad_id, task_id

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    pieces = [(p, self._task_id) for d in self._docs
              for p in packing.split_pieces(d, self._seq_len)]
    bins = packing.best_fit_decreasing([len(p) - 1 for p, _ in pieces], self._seq_len)
    rows = [packing.assemble_row([pieces[i] for i in b], self._seq_len, self._pad_id)
            for b in bins]
    empty = packing.assemble_row([], self._seq_len, self._pad_id)
    for start in range(0, len(rows), self._batch_size):
      chunk = rows[start:start + self._batch_size]
      chunk += [empty] * (self._batch_size - len(chunk))
      yield {k: np.stack([r[k] for r in chunk]) for k in packing.ROW_KEYS}


def make_eval_iterator(data_cfg, task_name: str, *, batch_size: int | None = None,
                       process_index: int = 0, process_count: int = 1) -> EvalBatches:
  """Returns the held-out split of a task as packed batches (no FIM, no shuffle).

  Args:
    data_cfg: the `data` config section (its mixture must contain the task).
    task_name: the task whose held-out documents to load.
    batch_size: global rows per batch (default data.batch_size).
    process_index: this host's index; hosts take interleaved documents.
    process_count: number of hosts.

  Returns:
    EvalBatches with `num_bytes` for bits-per-byte.
  """
  names = task_names(data_cfg)
  if task_name not in names:
    raise ValueError(f"Task {task_name!r} is not in mixture {data_cfg.mixture!r}: {names}")
  manifest = load_manifest(data_cfg)
  data_dir = layout.resolve_dir(data_cfg)
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task_name, "heldout"))
  docs = [_decode(source[i])["tokens"] for i in range(process_index, len(source), process_count)]
  stats = layout.read_stats(data_dir, task_name)
  if process_count > 1:  # Bytes are only known per split; share them evenly.
    stats = dict(stats, heldout_bytes=stats["heldout_bytes"] * len(docs) // max(1, len(source)))
  return EvalBatches(docs, stats, seq_len=data_cfg.seq_len,
                     batch_size=(batch_size or data_cfg.batch_size) // process_count,
                     pad_id=manifest["pad_id"], task_id=names.index(task_name))
