"""Held-out bits per byte per task of a mixture, and per capability.

Bits per byte (BPB) is the summed next-token loss in bits over the UTF-8 size
of the text, so it compares models with different tokenizers.
"""
import ml_collections
import numpy as np

from midtrain_jax.data import catalog, pipeline
from midtrain_jax.evals.scoring import LN2


def eval_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run's `data` section, reading the eval mixture's held-out splits."""
  data_cfg = ml_collections.ConfigDict(config.data.to_dict())
  data_cfg.mixture = config.eval.mixture or config.data.mixture
  return data_cfg


def heldout_bpb(eval_fn, data_cfg, *, max_batches: int = 0, batch_size: int | None = None,
                process_index: int = 0, process_count: int = 1) -> dict[str, dict]:
  """Loss and bits per byte on every task's held-out split.

  Args:
    eval_fn: host batch (numpy dict) -> {"nats", "tokens"} summed over the
      global batch (e.g. the jitted `train.step.eval_step`).
    data_cfg: `data` section whose mixture names the tasks.
    max_batches: batches per task (0 = the whole split). With several
      processes every process runs exactly this many, so they stay in step.
    batch_size: global rows per batch (default data.batch_size).
    process_index, process_count: this host and the number of hosts.

  Returns:
    {task: {loss, bpb, tokens, bytes, capability}}. When a split is cut short
    its byte count is scaled by the fraction of its tokens evaluated.
  """
  results = {}
  for task in pipeline.task_names(data_cfg):
    batches = pipeline.make_eval_iterator(data_cfg, task, batch_size=batch_size,
                                          process_index=process_index,
                                          process_count=process_count)
    nats = tokens = 0.0
    count, last = 0, None
    for batch in batches:
      if max_batches and count == max_batches:
        break
      out = eval_fn(batch)
      nats, tokens, count = nats + float(out["nats"]), tokens + float(out["tokens"]), count + 1
      last = batch
    # Hosts with fewer held-out documents run all-padding batches (segment id 0
    # counts nothing), so every host joins every global computation.
    while process_count > 1 and max_batches and last is not None and count < max_batches:
      eval_fn({k: np.zeros_like(v) if k == "segment_ids" else v for k, v in last.items()})
      count += 1
    share = min(1.0, tokens / max(1, batches.num_tokens * process_count))
    num_bytes = batches.num_bytes * process_count * share
    results[task] = dict(loss=nats / max(tokens, 1.0), bpb=nats / LN2 / max(num_bytes, 1.0),
                         tokens=tokens, bytes=num_bytes,
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
