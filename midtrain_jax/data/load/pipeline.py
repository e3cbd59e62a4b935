"""Training and evaluation input: prepared shards -> mix -> FIM -> pack -> batch.

Per task: ArrayRecord shards -> this process's slice -> shuffle (a new
permutation every epoch) -> repeat up to the task's cap -> FIM (code tasks).
With `data.qau.enabled`, each epoch holds every document as often as its
quality bucket's factor says (quality-aware upsampling, `qau.py`).
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
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import fim, packing, upsampling
from midtrain_jax.data.load import mixing as mixture_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import tasks as preparation


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


def mixed_dataset(data_cfg, *, seed: int, start_step: int = 0, shard: int = 0,
                  shards: int = 1) -> mixture_lib.StagedMixIterDataset:
  """One loader stream's documents, mixed, before packing (see `make_train_dataset`).

  Yields {"tokens", "task_id"} per document: documents shard::shards of each
  task, shuffled, repeated up to the task's cap (upsampled by quality with
  `data.qau.enabled`, qau.py), FIM'd, mixed by the staged weights.
  """
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
  factors = data_cfg.qau.enabled and upsampling.document_factors(data_cfg, data_dir, names)
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
    if factors:
      ds = upsampling.UpsampledDataset(ds, factors[name][shard::shards], epochs, seed=task_seed)
      epoch_docs.append(max(1, len(ds) // epochs))  # Passes over the upsampled task.
      ds = ds.map(_decode)
    else:
      epoch_docs.append(len(ds))
      ds = ds.shuffle(seed=task_seed).repeat(epochs).map(_decode)
    if task.fim and data_cfg.fim_rate > 0 and fim_ids:
      ds = ds.random_map(fim.FimTransform(rate=data_cfg.fim_rate,
                                          spm_rate=data_cfg.fim_spm_rate, ids=fim_ids),
                         seed=task_seed ^ 0x5F1A)
    tasks.append(ds)
  return mixture_lib.StagedMixIterDataset(
      tasks, task_names=names, stages=stages, epoch_docs=epoch_docs,
      tokens_per_step=data_cfg.batch_size // shards * data_cfg.seq_len, start_step=start_step)


def _shard_dataset(data_cfg, *, seed: int, start_step: int, shard: int,
                   shards: int) -> grain.IterDataset:
  """One loader stream: documents shard::shards of each task -> batches of its rows."""
  mixed = mixed_dataset(data_cfg, seed=seed, start_step=start_step, shard=shard, shards=shards)
  rows = data_cfg.batch_size // shards
  packed = packing.BestFitPackIterDataset(
      mixed, seq_len=data_cfg.seq_len, window_rows=data_cfg.packing_window_rows,
      pad_id=load_manifest(data_cfg)["pad_id"],
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


# Any fixed value: the held-out order must be the same in every evaluation and run.
_EVAL_ORDER_SEED = 0x4E1D0
# (data folder, task) pairs already warned about missing per-document byte counts.
_warned_bytes: set[tuple[str, str]] = set()


def eval_order(num_docs: int, task_name: str) -> np.ndarray:
  """The seeded random order of a task's held-out documents (indices into its split).

  Keyed only by the task's name and the split's size, so every evaluation of
  every run on the same prepared data uses the same order.
  """
  rng = np.random.default_rng([_EVAL_ORDER_SEED, zlib.crc32(task_name.encode())])
  return rng.permutation(num_docs)


class EvalBatches:
  """Whole held-out documents of one task in a given order, as packed batches.

  The plan (`packing.pack_in_order`) is made for the global batch on every
  process alike; process p yields rows [p * R, (p + 1) * R) of each global
  batch (R = batch_size // process_count), so processes score disjoint
  pieces, all yield `num_batches` batches (padding rows where they have no
  piece), and each knows the totals of the whole evaluation without
  communicating. A document with at most seq_len (input, target) pairs is one
  piece in one row; a longer one is split into consecutive pieces of seq_len
  pairs (`packing.split_pieces`), each scored from its own start, without the
  text before it. Every pair of an evaluated document is scored exactly once.

  Attributes:
    num_batches: batches every process yields.
    num_docs: documents evaluated: the first ones of `order`, up to the one
      that crosses the end of batch `max_batches` (all of them when 0).
    num_tokens: their (input, target) pairs, over all processes.
    num_bytes: their UTF-8 size, over all processes; bits per byte is
      `sum(token losses in nats) / ln(2) / num_bytes`.
    doc_indices: the evaluated documents, as indices into `docs`.
    split_docs: documents in the split.
  """

  def __init__(self, docs: list[np.ndarray], doc_bytes: Sequence[float], order: np.ndarray, *,
               seq_len: int, batch_size: int, pad_id: int, task_id: int, max_batches: int = 0,
               process_index: int = 0, process_count: int = 1):
    """Plans the batches.

    Args:
      docs: every document of the split (token ids).
      doc_bytes: UTF-8 size of each document.
      order: the evaluation order (a permutation of range(len(docs))).
      seq_len: row length.
      batch_size: global rows per batch; divisible by process_count.
      pad_id: padding token id.
      task_id: the task's index in `task_ids`.
      max_batches: batches to fill (0: the whole split); see
        `packing.pack_in_order` for where the sample ends.
      process_index: this process.
      process_count: number of processes.
    """
    if batch_size % process_count:
      raise ValueError(f"Eval batch size {batch_size} is not divisible by the "
                       f"{process_count} processes.")
    if len(doc_bytes) != len(docs):
      raise ValueError(f"{len(docs)} held-out documents but {len(doc_bytes)} byte counts.")
    self._plan, count = packing.pack_in_order([len(docs[i]) - 1 for i in order], seq_len,
                                              batch_size, max_batches)
    self.doc_indices = np.asarray(order[:count], np.int64)
    self.split_docs = len(docs)
    self.num_batches = len(self._plan)
    self.num_docs = count
    self.num_tokens = int(sum(len(docs[i]) - 1 for i in self.doc_indices))
    self.num_bytes = sum(doc_bytes[i] for i in self.doc_indices)
    self._docs, self._order, self._seq_len = docs, order, seq_len
    self._pad_id, self._task_id = pad_id, task_id
    rows = batch_size // process_count
    self._rows = slice(process_index * rows, (process_index + 1) * rows)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    span = self._seq_len + 1
    for batch in self._plan:
      pieces = [[(self._docs[self._order[pos]][start:start + span], self._task_id)
                 for pos, start in row] for row in batch[self._rows]]
      rows = [packing.assemble_row(p, self._seq_len, self._pad_id) for p in pieces]
      yield {k: np.stack([r[k] for r in rows]) for k in packing.ROW_KEYS}


def _heldout_doc_bytes(data_dir, task_name: str, docs: list[np.ndarray]) -> tuple[list, bool]:
  """(UTF-8 size of each held-out document, whether exact).

  Folders prepared before format 2 stored only the split's total: it is then
  shared out by (input, target) pairs, exact for the whole split but only
  approximate for a sample of it.
  """
  doc_bytes = layout.read_heldout_bytes(data_dir, task_name)
  if doc_bytes is not None:
    return doc_bytes, True
  total = layout.read_stats(data_dir, task_name)["heldout_bytes"]
  pairs = np.asarray([len(d) - 1 for d in docs], np.float64)
  return list(total * pairs / max(1.0, pairs.sum())), False


def make_eval_iterator(data_cfg, task_name: str, *, batch_size: int | None = None,
                       max_batches: int = 0, process_index: int = 0,
                       process_count: int = 1) -> EvalBatches:
  """Returns a task's held-out documents as packed batches (no FIM), whole.

  The documents come in `eval_order` (seeded, the same in every evaluation
  and run); with `max_batches` = N only the first ones are evaluated, up to
  the one that crosses the end of batch N: a uniform random sample of the
  split, in N batches or (usually) N + 1.

  Args:
    data_cfg: the `data` config section (its mixture must contain the task).
    task_name: the task whose held-out documents to load.
    batch_size: global rows per batch (default data.batch_size).
    max_batches: batches to fill (0: the whole split).
    process_index: this host's index; hosts take disjoint rows of every batch.
    process_count: number of hosts.

  Returns:
    EvalBatches with the evaluated documents' `num_bytes` and `num_tokens`.
  """
  names = task_names(data_cfg)
  if task_name not in names:
    raise ValueError(f"Task {task_name!r} is not in mixture {data_cfg.mixture!r}: {names}")
  manifest = load_manifest(data_cfg)
  data_dir = layout.resolve_dir(data_cfg)
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task_name, "heldout"))
  # Every process reads the whole split (it is small): all plan the same batches.
  docs = [_decode(source[i])["tokens"] for i in range(len(source))]
  doc_bytes, exact = _heldout_doc_bytes(data_dir, task_name, docs)
  batches = EvalBatches(docs, doc_bytes, eval_order(len(docs), task_name),
                        seq_len=data_cfg.seq_len, batch_size=batch_size or data_cfg.batch_size,
                        pad_id=manifest["pad_id"], task_id=names.index(task_name),
                        max_batches=max_batches, process_index=process_index,
                        process_count=process_count)
  key = (str(data_dir), task_name)
  if not exact and batches.num_docs < len(docs) and key not in _warned_bytes:
    _warned_bytes.add(key)
    print(f"WARNING: {data_dir}/{task_name} has no per-document held-out byte counts "
          "(prepared before format 2): the bytes of a sample of its held-out split are "
          "estimated from its token share. For exact bits per byte, delete the folder "
          f"and re-run `python -m midtrain_jax.data.prepare --mixture={data_cfg.mixture} "
          f"--out={data_dir}`.", flush=True)
  return batches
