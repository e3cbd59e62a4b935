"""Benchmark BPB: bits per byte of each benchmark's gold answers given their questions.

The OLMES "bpb" formulation: it moves long before a small model's accuracy does.
"""
import numpy as np

from midtrain_jax.evals import items as benchmarks
from midtrain_jax.evals.scoring import LN2, LoadedModel, row_nats
from midtrain_jax.train import step as ts


def context_and_answer(item: benchmarks.BenchmarkItem) -> tuple[str, str]:
  """The conditioning text and the gold continuation of a benchmark item."""
  if item.benchmark == "humaneval":
    return item.question, item.answer
  if item.benchmark == "mbpp":
    return f'"""{item.question}"""\n', item.answer
  context = f"{item.passage}\n" if item.passage else ""
  return f"{context}Question: {item.question}\nAnswer:", " " + item.answer


def answer_rows(items, tok, max_len: int):
  """Tokenises items into (tokens, answer mask, answer bytes) rows.

  The context is cut from the left and the answer from the right so a row
  fits `max_len + 1` tokens; the byte count is that of the answer kept.
  """
  rows = []
  for item in items:
    context, answer = context_and_answer(item)
    answer_ids = tok.encode(answer)[:max_len // 2]
    kept = answer if len(answer_ids) == len(tok.encode(answer)) else tok.decode(answer_ids)
    context_ids = [tok.bos_id] + tok.encode(context)
    context_ids = context_ids[-(max_len + 1 - len(answer_ids)):]
    ids = context_ids + answer_ids
    mask = [0] * (len(context_ids) - 1) + [1] * len(answer_ids)
    rows.append((ids, mask, len(kept.encode("utf-8"))))
  return rows


def benchmark_bpb(model: LoadedModel, tok, names=benchmarks.EVAL_SUITE, *, items: int = 32,
                  max_len: int = 512, batch_size: int = 16) -> dict[str, dict]:
  """Bits per byte of each benchmark's gold answers given their questions.

  Args:
    model: the loaded checkpoint.
    tok: the tokenizer the model was trained with.
    names: benchmarks (see `items.SPECS`).
    items: the first this many items of each benchmark (0 = all).
    max_len: longest row in tokens.
    batch_size: rows per forward pass.

  Returns:
    {benchmark: {bpb, items, bytes}}.
  """
  results = {}
  for name in names:
    chosen = benchmarks.load_items(name)
    chosen = chosen[:items] if items else chosen
    rows = answer_rows(chosen, tok, max_len)
    nats = 0.0
    for start in range(0, len(rows), batch_size):
      chunk = rows[start:start + batch_size]
      width = -(-max(len(ids) - 1 for ids, _, _ in chunk) // 64) * 64
      batch = {k: np.zeros((batch_size, width), np.int32) for k in ts.MODEL_INPUTS}
      mask = np.zeros((batch_size, width), np.float32)
      for i, (ids, answer_mask, _) in enumerate(chunk):
        n = len(ids) - 1
        batch["inputs"][i, :n] = ids[:-1]
        batch["targets"][i, :n] = ids[1:]
        batch["segment_ids"][i, :n] = 1
        batch["positions"][i, :n] = np.arange(n)
        mask[i, :n] = answer_mask
      nats += float(row_nats(model.params, batch, mask, graphdef=model.graphdef).sum())
    total_bytes = sum(b for _, _, b in rows)
    results[name] = dict(bpb=nats / LN2 / max(total_bytes, 1), items=len(rows),
                         bytes=total_bytes)
  return results
