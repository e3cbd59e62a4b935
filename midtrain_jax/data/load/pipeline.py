"""Training input: prepared shards -> mix -> FIM -> pack -> batch.

Per task: ArrayRecord shards -> this process's slice -> shuffle (a new
permutation every epoch) -> repeat up to the task's cap -> FIM (code tasks).
With `data.qau.enabled`, each epoch holds every document as often as its
quality bucket's factor says (quality-aware upsampling, `upsampling.py`).
Then the tasks are mixed by staged token weights (`mixing.py`), packed
best-fit into rows (`packing.py`) and batched. Every batch is a dict of int32
numpy arrays of shape [batch_size // process_count, seq_len]:

  inputs       token ids
  targets      next-token ids (per document, so never across documents)
  segment_ids  1, 2, ... per packed document in the row; 0 = padding
  positions    position inside the document piece, from 0
  task_ids     index into `prepared.task_names(data_cfg)`; -1 = padding
  loss_mask    1 where the target is scored: every real token of a text
               task (segment_ids > 0); of a chat task, the targets its
               stored mask marks (response tokens, data/chat.py), each
               packed document keeping its own; held-out windows score only
               their new targets

The mixture must be prepared (prepared.py opens it once per iterator); held-out
batches for evaluation are built by heldout_batches.py. No TensorFlow or seqio
here: this module runs on the training hot path.
"""
import zlib
from typing import Any

import grain
import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data.load import fim, packing, prepared, upsampling
from midtrain_jax.data.load import mixing as mixture_lib


def _decode(record: bytes | tuple[bytes, bytes]) -> dict[str, np.ndarray]:
  if isinstance(record, tuple):  # A chat task's (document, loss mask) records.
    return {"tokens": layout.decode_record(record[0]),
            "loss_mask": layout.decode_mask(record[1])}
  return {"tokens": layout.decode_record(record)}


class _WithMasks(grain.sources.RandomAccessDataSource):
  """A chat task's documents and their loss masks, record by record, as pairs."""

  def __init__(self, files: list[str]):
    self._docs = grain.sources.ArrayRecordDataSource(files)
    self._masks = grain.sources.ArrayRecordDataSource(layout.mask_files(files))
    if len(self._docs) != len(self._masks):
      raise ValueError(f"{files}: {len(self._docs)} documents but {len(self._masks)} "
                       "loss masks; re-prepare the task.")

  def __len__(self) -> int:
    return len(self._docs)

  def __getitem__(self, index: int) -> tuple[bytes, bytes]:
    return self._docs[index], self._masks[index]


def task_source(data_dir, task: str, split: str) -> grain.sources.RandomAccessDataSource:
  """A prepared task's records of `split`: documents, with their masks for chat tasks."""
  files = layout.shard_files(data_dir, task, split)
  if layout.has_masks(data_dir, task):
    return _WithMasks(files)
  return grain.sources.ArrayRecordDataSource(files)


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
                       process_index: int = 0, process_count: int = 1,
                       mixture: prepared.PreparedMixture | None = None) -> grain.IterDataset:
  """Builds the Grain IterDataset behind `make_train_iterator` (same args).

  The process reads loader shards [i * S / P, (i + 1) * S / P) of S, each a
  full pipeline (shuffle, repeat, mix, FIM, pack) over its slice of documents.
  `mixture` is the opened prepared mixture (opened here when None).
  """
  if data_cfg.seq_len <= 0 or data_cfg.batch_size <= 0:
    raise ValueError("data.seq_len and data.batch_size must be positive.")
  shards = loader_shards(data_cfg, process_count)
  per_process = shards // process_count
  mixture = mixture or prepared.open_prepared(data_cfg)
  streams = [_shard_dataset(data_cfg, mixture, seed=seed, start_step=start_step, shard=s,
                            shards=shards)
             for s in range(process_index * per_process, (process_index + 1) * per_process)]
  return streams[0] if len(streams) == 1 else _ConcatRowsIterDataset(streams)


def mixed_dataset(data_cfg, mixture: prepared.PreparedMixture | None = None, *, seed: int,
                  start_step: int = 0, shard: int = 0,
                  shards: int = 1) -> mixture_lib.StagedMixIterDataset:
  """One loader stream's documents, mixed, before packing (see `make_train_dataset`).

  `mixture` is the opened prepared mixture (opened here when None).

  Yields {"tokens", "task_id"} per document: documents shard::shards of each
  task, shuffled, repeated up to the task's cap (upsampled by quality with
  `data.qau.enabled`, upsampling.py), FIM'd, mixed by the staged weights.
  """
  mixture = mixture or prepared.open_prepared(data_cfg)
  spec, manifest, data_dir = mixture.spec, mixture.manifest, mixture.directory
  weights = data_cfg.weights.to_dict()
  # A mixture file's own stages apply unless the config sets weights or stages.
  weight_stages = data_cfg.weight_stages or (() if weights else spec.stages)
  names, stages = mixture_lib.resolve_stages(spec.rates, weights, weight_stages)
  # A model's own vocabulary may have no FIM sentinels: code is then left whole.
  fim_ids = manifest["fim_ids"] and fim.FimIds(
      **{k: manifest["fim_ids"][k] for k in ("prefix", "middle", "suffix")})
  factors = data_cfg.qau.enabled and upsampling.document_factors(data_cfg, data_dir, names)
  tasks, epoch_docs = [], []
  for name in names:
    task = mixture.tasks[name]
    ds = grain.MapDataset.source(task_source(data_dir, name, "train"))
    ds = ds[shard::shards]
    if len(ds) == 0:
      raise ValueError(f"Task {name} has no training documents for loader shard "
                       f"{shard} of {shards}.")
    epochs = data_cfg.max_epochs or task.max_epochs
    task_seed = _task_seed(seed, data_cfg.shuffle_seed, name)
    if factors:
      ds = upsampling.UpsampledDataset(ds, factors[name][shard::shards], epochs, seed=task_seed)
      epoch_docs.append(max(1, len(ds) // epochs))  # Passes over the upsampled task.
      ds = ds.map(_decode)
    else:
      epoch_docs.append(len(ds))
      ds = ds.shuffle(seed=task_seed).repeat(epochs).map(_decode)
    # A chat document's mask is aligned with its tokens: FIM would rearrange only the tokens.
    if task.fim and not task.chat and data_cfg.fim_rate > 0 and fim_ids:
      ds = ds.random_map(fim.FimTransform(rate=data_cfg.fim_rate,
                                          spm_rate=data_cfg.fim_spm_rate, ids=fim_ids,
                                          with_bos=mixture.starts_with_bos),
                         seed=task_seed ^ 0x5F1A)
    tasks.append(ds)
  return mixture_lib.StagedMixIterDataset(
      tasks, task_names=names, stages=stages, epoch_docs=epoch_docs,
      tokens_per_step=data_cfg.batch_size // shards * data_cfg.seq_len, start_step=start_step)


def _shard_dataset(data_cfg, mixture: prepared.PreparedMixture, *, seed: int, start_step: int,
                   shard: int, shards: int) -> grain.IterDataset:
  """One loader stream: documents shard::shards of each task -> batches of its rows."""
  mixed = mixed_dataset(data_cfg, mixture, seed=seed, start_step=start_step, shard=shard,
                        shards=shards)
  rows = data_cfg.batch_size // shards
  packed = packing.BestFitPackIterDataset(
      mixed, seq_len=data_cfg.seq_len, window_rows=data_cfg.packing_window_rows,
      pad_id=mixture.manifest["pad_id"],
      seed=_task_seed(seed, data_cfg.shuffle_seed, "pack"))
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
  mixture = prepared.open_prepared(data_cfg)
  ds = make_train_dataset(data_cfg, seed=seed, start_step=start_step,
                          process_index=process_index, process_count=process_count,
                          mixture=mixture)
  if data_cfg.num_workers > 0:
    # A thread, not processes: mixing and packing are one ordered stream, and
    # one core already packs millions of tokens/s (benchmarks/data_pipeline.py).
    ds = grain.experimental.ThreadPrefetchIterDataset(
        ds, prefetch_buffer_size=data_cfg.num_workers)
  inner = ds.__iter__()
  local_shards = loader_shards(data_cfg, process_count) // process_count
  return TrainIterator(inner, _find_mixes(inner), mixture.task_names, local_shards)
