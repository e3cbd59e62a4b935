"""Held-out bits per byte per task of a mixture, and per capability.

Bits per byte (BPB) is the summed next-token loss in bits over the UTF-8 size
of the text, so it compares models with different tokenizers. A chat task
(supervised fine-tuning data) is scored on its responses only, over their
UTF-8 size: held-out response BPB (data/load/heldout_batches.py).
"""
import ml_collections

from midtrain_jax.data.load import heldout_batches, prepared
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.evals.scoring import LN2


def eval_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's `data` section, reading the eval mixture's held-out splits."""
  data_cfg = ml_collections.ConfigDict(config.data.to_dict())
  data_cfg.mixture = config.eval.mixture or config.data.mixture
  return data_cfg


def heldout_bpb(eval_fn, data_cfg, *, max_batches: int = 0, batch_size: int | None = None,
                stride: int = 0, process_index: int = 0, process_count: int = 1,
                tasks=None) -> dict[str, dict]:
  """Loss and bits per byte on every task's held-out split, or a sample of it.

  What is counted: whole documents, in a seeded random order that is the same
  in every evaluation and run (`heldout_batches.eval_order`). With `max_batches` =
  N > 0 they are the first documents of that order up to the one that
  crosses the end of batch N, a uniform random sample of the split (ending
  after a fixed amount of text, not before a likely long document, keeps it
  nearly unbiased; that last document usually takes one batch more); with 0,
  all of them. Every (input, target) pair of those documents is scored
  exactly once and nothing else is. A document longer than data.seq_len is
  scored in overlapping windows of seq_len pairs (`packing.eval_windows`):
  each window scores the `stride` targets after the previous one's, the
  pairs before them being context (`loss_mask` 0), so every target sees at
  least seq_len - stride tokens of its own document before it (all of them
  near its start). So the figure does not depend on where seq_len cuts a
  document, only on how much context a window holds; the price is about
  seq_len / stride rows per seq_len tokens of a long document (2 at the
  default stride). BPB is their summed loss in bits over their exact UTF-8
  size (the sum of their per-document byte counts), so a sample estimates
  the full split's BPB without the bias of scaling the split's bytes by
  token share.

  Args:
    eval_fn: host batch (numpy dict) -> {"nats", "tokens"} summed over the
      global batch's scored targets (`loss_mask`; e.g. the jitted
      `train.step.eval_step`).
    data_cfg: `data` section whose mixture names the tasks; its seq_len is
      the window length.
    max_batches: batches per task to fill (0 = the whole split).
    batch_size: global rows per batch (default data.batch_size).
    stride: targets scored per window after a long document's first (the
      `eval.heldout_stride` setting; 0 = seq_len // 2).
    process_index, process_count: this host and the number of hosts. Every
      host plans the same global batches and feeds its rows of each, so all
      run the same number (padding rows where a host has nothing left) and
      all know the byte count of the whole sample.
    tasks: the mixture's tasks to score (default: all of them).

  Returns:
    {task: {loss, bpb, tokens, bytes, docs, capability}}: loss in nats per
    token, tokens and bytes of the documents scored and their number.
  """
  results = {}
  for task in prepared.task_names(data_cfg) if tasks is None else tasks:
    batches = heldout_batches.make_eval_iterator(data_cfg, task, batch_size=batch_size,
                                                 max_batches=max_batches, stride=stride,
                                                 process_index=process_index,
                                                 process_count=process_count)
    nats = tokens = 0.0
    for batch in batches:
      out = eval_fn(batch)
      nats, tokens = nats + float(out["nats"]), tokens + float(out["tokens"])
    num_bytes = float(batches.num_bytes)
    results[task] = dict(loss=nats / max(tokens, 1.0), bpb=nats / LN2 / max(num_bytes, 1.0),
                         tokens=tokens, bytes=num_bytes, docs=batches.num_docs,
                         capability=catalog.get_task(task).capability)
  return results


def capability_bpb(heldout: dict[str, dict]) -> dict[str, float]:
  """Byte-weighted BPB per capability from `heldout_bpb` results."""
  nats, nbytes = {}, {}
  for r in heldout.values():
    cap = r["capability"]
    nats[cap] = nats.get(cap, 0.0) + r["loss"] * r["tokens"]
    nbytes[cap] = nbytes.get(cap, 0.0) + r["bytes"]
  return {cap: nats[cap] / LN2 / max(nbytes[cap], 1.0) for cap in nats}
