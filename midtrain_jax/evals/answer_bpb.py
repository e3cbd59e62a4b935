"""Benchmark BPB: bits per byte of each benchmark's gold answers given their questions.

The OLMES "bpb" formulation: it moves long before a small model's accuracy does.
Each benchmark is scored on a seeded sample stratified over its subjects
(`items.sample_items`); the result keeps every item's nats and bytes, so its
uncertainty and paired comparisons come from `stats.py`.
"""
import numpy as np

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.evals import stats
from midtrain_jax.evals.scoring import LoadedModel, row_nats
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

  A row starts as the model's tokenizer starts a text (`Tokenizer.start_ids`:
  BOS only where it adds one). The context's text is cut from the left, after
  that start, which is kept, and the answer from the right, so a row fits
  `max_len + 1` tokens; the byte count is that of the answer kept. An empty
  context without BOS becomes EOS (something must predict the answer's first
  token), as `loglikelihood.encode_pair` does.
  """
  rows = []
  for item in items:
    context, answer = context_and_answer(item)
    answer_ids = tok.encode(answer)[:max_len // 2]
    kept = answer if len(answer_ids) == len(tok.encode(answer)) else tok.decode(answer_ids)
    start = tok.start_ids()
    text_ids = tok.encode(context)
    room = max_len + 1 - len(answer_ids) - len(start)
    context_ids = start + (text_ids[-room:] if room > 0 else [])
    if not context_ids:
      context_ids = [tok.eos_id]
    ids = context_ids + answer_ids
    mask = [0] * (len(context_ids) - 1) + [1] * len(answer_ids)
    rows.append((ids, mask, len(kept.encode("utf-8"))))
  return rows


def benchmark_bpb(model: LoadedModel, tok, names=benchmarks.EVAL_SUITE, *, items: int = 32,
                  seed: int = 0, max_len: int = 512, batch_size: int = 16) -> dict[str, dict]:
  """Bits per byte of each benchmark's gold answers given their questions.

  Args:
    model: the loaded checkpoint.
    tok: the tokenizer the model was trained with.
    names: benchmarks (see `items.SPECS`).
    items: sample size per benchmark (`items.sample_items`: stratified over
      subjects, at least one item per subject); 0 = every item.
    seed: which sample; the same seed and size give every model the same items.
    max_len: longest row in tokens.
    batch_size: rows per forward pass.

  Returns:
    {benchmark: result}; a result holds `bpb` (over the items' summed bytes),
    `ci95` (half-width of its 95% bootstrap interval over items), `n_items`,
    `subsets` (distinct subjects sampled), `bytes`, `per_item` ({item id:
    [nats, bytes]}, for paired comparisons and the contamination split),
    `sample` ({requested, seed}) and `items` (= n_items, for older readers).
  """
  results = {}
  for name in names:
    chosen = benchmarks.sample_items(name, items, seed)
    rows = answer_rows(chosen, tok, max_len)
    nats = []
    for start in range(0, len(rows), batch_size):
      chunk = rows[start:start + batch_size]
      width = -(-max(len(ids) - 1 for ids, _, _ in chunk) // 64) * 64
      batch = {k: np.zeros((batch_size, width), np.int32) for k in ts.MODEL_INPUTS}
      for i, (ids, answer_mask, _) in enumerate(chunk):
        n = len(ids) - 1
        batch["inputs"][i, :n] = ids[:-1]
        batch["targets"][i, :n] = ids[1:]
        batch["segment_ids"][i, :n] = 1
        batch["positions"][i, :n] = np.arange(n)
        batch["loss_mask"][i, :n] = answer_mask  # The answer's tokens; the question is context.
      row = np.asarray(row_nats(model.params, batch, batch["loss_mask"].astype(np.float32),
                                graphdef=model.graphdef))
      nats += [float(x) for x in row[:len(chunk)]]
    per_item = {it.id: [n, b] for it, n, (_, _, b) in zip(chosen, nats, rows)}
    total = stats.summary(per_item, {it.id: benchmarks.subset_of(it) for it in chosen})
    results[name] = dict(bpb=total["value"], ci95=total["ci95"], n_items=total["n_items"],
                         subsets=total["subsets"], bytes=sum(b for _, _, b in rows),
                         items=total["n_items"], sample={"requested": items, "seed": seed},
                         per_item=per_item)
  return results
