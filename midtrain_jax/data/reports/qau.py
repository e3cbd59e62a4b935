"""What quality-aware upsampling does to a mixture: tables for the listing and the demo.

`bucket_lines` formats `bucket_table` (the registry listing: per task,
tokens before and after QAU and the epochs of each bucket); `sampled_shares`
replays the training stream and measures the share of each bucket among the
documents actually drawn, which `share_lines` sets against the configured
shares (the demo report). Both headers give the quality scorer's held-out
accuracy (`scorer_heldout`, `accuracy_text`): how far its buckets can be trusted.

  python -m midtrain_jax.data.mixtures --list --mixture=dolmino_demo --data.qau.enabled=True
"""
import pathlib
from collections.abc import Callable

import ml_collections
import numpy as np

from midtrain_jax.data import layout
from midtrain_jax.data.load import pipeline, prepared, upsampling
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import qau_scores, quality


def _range(bucket: dict) -> str:
  lo, hi = bucket["quantiles"]
  return f"q{lo:.2f}-{hi:.2f}"


def scorer_heldout(data_dir) -> dict | None:
  """The held-out accuracy record of a prepared folder's quality scorer, or None.

  {accuracy, positive_recall, negative_recall, docs}, measured on documents the
  scorer never trained on and saved with it (quality.py).
  """
  scorer = quality.load(data_dir)
  return None if scorer is None else scorer.meta.get("heldout")


def accuracy_text(heldout: dict | None) -> str:
  """The scorer's held-out accuracy in a few words ("" when unknown)."""
  if not heldout:
    return ""
  return (f"scorer held-out accuracy {heldout['accuracy']:.3f} on {heldout['docs']:,} docs "
          f"(recall {heldout['positive_recall']:.2f} positive, "
          f"{heldout['negative_recall']:.2f} negative)")


def bucket_table(data_cfg, data_dir: str | pathlib.Path, rates: dict[str, float],
                 budget_tokens: int = 0, log: Callable[[str], None] = print) -> list[dict]:
  """Per task, its quality buckets before and after QAU.

  Args:
    data_cfg: the `data` config section (its `qau` settings are used, enabled or not).
    data_dir: the prepared folder.
    rates: {task: mixture rate} (token fractions, normalised here).
    budget_tokens: training tokens to compute the passes (and epochs) for; 0: none.
    log: progress printer.

  Returns:
    One dict per task: task, cap, tokens_before and tokens_after (per pass),
    passes (at `budget_tokens`, capped; None without a budget) and buckets:
    [{bucket, quantiles (lo, hi), docs, tokens, factor, share_before,
    share_after (of the task's tokens), repeats_at_cap, epochs (at the
    budget; None without one)}].
  """
  scored = qau_scores.ensure_scores(data_cfg, data_dir, list(rates), log)
  edges = (0.0, *data_cfg.qau.quantiles, 1.0)
  total_rate = sum(rates.values())
  rows = []
  for task, rate in rates.items():
    cap = data_cfg.max_epochs or catalog.get_task(task).max_epochs
    factors = upsampling.factors_of(data_cfg.qau, task)
    bucket = upsampling.buckets(scored[task]["scores"], data_cfg.qau.quantiles)
    tokens = np.bincount(bucket, weights=scored[task]["tokens"], minlength=len(factors))
    docs = np.bincount(bucket, minlength=len(factors))
    before, after = float(tokens.sum()), float(np.dot(tokens, factors))
    passes = None
    if budget_tokens:
      passes = min(float(cap), budget_tokens * rate / total_rate / max(after, 1.0))
    rows.append(dict(
        task=task, cap=cap, tokens_before=int(before), tokens_after=int(round(after)),
        passes=passes,
        buckets=[dict(bucket=b, quantiles=(edges[b], edges[b + 1]), docs=int(docs[b]),
                      tokens=int(tokens[b]), factor=factors[b],
                      share_before=float(tokens[b] / max(before, 1.0)),
                      share_after=float(tokens[b] * factors[b] / max(after, 1.0)),
                      repeats_at_cap=int(np.ceil(factors[b] * cap)),
                      epochs=None if passes is None else factors[b] * passes)
                 for b in range(len(factors))]))
  return rows


def bucket_lines(rows: list[dict], budget_tokens: int = 0,
                 heldout: dict | None = None) -> list[str]:
  """The listing's QAU table: a line per task, then one per bucket.

  Args:
    rows: `bucket_table` rows.
    budget_tokens: the budget the rows' epochs were computed for (0: none).
    heldout: the scorer's held-out accuracy record (`scorer_heldout`), shown in the header.

  Returns:
    Text lines.
  """
  at = f"at {budget_tokens:,} tokens" if budget_tokens else "per pass"
  scorer = f"; {accuracy_text(heldout)}" if heldout else ""
  lines = ["QUALITY-AWARE UPSAMPLING (data.qau): buckets by score quantile within each task; "
           f"factor = copies of a document per pass{scorer}",
           f"  {'task / bucket':28s} {'docs':>7s} {'tokens':>12s} {'after QAU':>12s} "
           f"{'factor':>6s} {'share before->after':>20s} {'max repeats':>11s} "
           f"{'epochs ' + at:>22s}"]
  for row in rows:
    passes = "-" if row["passes"] is None else f"{row['passes']:.2f} passes"
    lines.append(f"  {row['task']:28s} {sum(b['docs'] for b in row['buckets']):>7,d} "
                 f"{row['tokens_before']:>12,d} {row['tokens_after']:>12,d} {'':>6s} "
                 f"{'':>20s} {'cap ' + str(row['cap']) + 'x':>11s} {passes:>22s}")
    for b in row["buckets"]:
      epochs = b["factor"] if b["epochs"] is None else b["epochs"]
      lines.append(f"    {_range(b):26s} {b['docs']:>7,d} {b['tokens']:>12,d} "
                   f"{int(round(b['tokens'] * b['factor'])):>12,d} {b['factor']:>5.2g}x "
                   f"{b['share_before']:>9.3f} -> {b['share_after']:.3f}  "
                   f"{b['repeats_at_cap']:>10d}x {epochs:>22.2f}")
  return lines


def listing_lines(data_cfg, data_dir, rates: dict[str, float], budget_tokens: int = 0
                  ) -> list[str]:
  """The registry listing's QAU section for a mixture's prepared folder.

  Args:
    data_cfg: the `data` config section (its `qau` settings).
    data_dir: the prepared folder (scored first if needed).
    rates: the mixture's {task: rate}.
    budget_tokens: training tokens to compute epochs for (0: per pass).

  Returns:
    Text lines; one saying so when the folder is not prepared yet.
  """
  if layout.read_manifest(data_dir) is None:
    return ["QUALITY-AWARE UPSAMPLING: the mixture is not prepared yet (no buckets to show)"]
  rows = bucket_table(data_cfg, data_dir, rates, budget_tokens)  # Trains the scorer if needed.
  return bucket_lines(rows, budget_tokens, scorer_heldout(data_dir))


def sampled_shares(data_cfg, *, seed: int, tokens: int) -> dict[str, dict[str, np.ndarray]]:
  """Per task, the tokens and documents of each quality bucket among those drawn first.

  Replays the training stream of process 0 of 1 (every loader shard), up to
  `tokens` tokens of documents in all, and finds each drawn document's bucket
  by its content. FIM is switched off for the replay: it rewrites code
  documents but does not change which ones are drawn.

  Args:
    data_cfg: the `data` config section, `qau` enabled or not.
    seed: the run's seed.
    tokens: tokens of documents to draw (e.g. steps * batch_size * seq_len).

  Returns:
    {task: {"tokens": tokens drawn per bucket, "docs": documents drawn per bucket}}.
  """
  cfg = ml_collections.ConfigDict(data_cfg.to_dict())
  cfg.fim_rate = 0.0
  data_dir = layout.resolve_dir(cfg)
  names = prepared.task_names(cfg)
  scored = qau_scores.ensure_scores(cfg, data_dir, names)
  where = {}
  for t, name in enumerate(names):
    bucket = upsampling.buckets(scored[name]["scores"], cfg.qau.quantiles)
    index = 0
    for docs in qau_scores.train_documents(data_dir, name):
      for doc in docs:
        where[(t, hash(doc.tobytes()))] = int(bucket[index])
        index += 1
  counts = np.zeros((len(names), len(cfg.qau.quantiles) + 1))
  docs = np.zeros_like(counts)
  shards = pipeline.loader_shards(cfg, 1)
  mixture = prepared.open_prepared(cfg)  # Once for every loader shard.
  for shard in range(shards):
    drawn = 0
    for doc in pipeline.mixed_dataset(cfg, mixture, seed=seed, shard=shard, shards=shards):
      task = int(doc["task_id"])
      bucket = where[(task, hash(doc["tokens"].tobytes()))]
      counts[task, bucket] += len(doc["tokens"])
      docs[task, bucket] += 1
      drawn += len(doc["tokens"])
      if drawn >= tokens / shards:
        break
  return {name: {"tokens": counts[t], "docs": docs[t]} for t, name in enumerate(names)}


def share_lines(rows: list[dict], sampled: dict[str, np.ndarray]) -> list[str]:
  """Per task and bucket: factor, share before QAU, configured share, sampled share.

  Args:
    rows: `bucket_table` rows.
    sampled: `sampled_shares` of the same config.

  Returns:
    Text lines.
  """
  lines = [f"  {'task':24s} {'bucket':12s} {'factor':>6s} {'before':>7s} {'configured':>10s} "
           f"{'sampled':>8s}"]
  for row in rows:
    for b in row["buckets"]:
      drawn = sampled[row["task"]]["tokens"]
      lines.append(f"  {row['task']:24s} {_range(b):12s} {b['factor']:>5.2g}x "
                   f"{b['share_before']:>7.3f} {b['share_after']:>10.3f} "
                   f"{drawn[b['bucket']] / max(drawn.sum(), 1.0):>8.3f}")
  return lines


def mixture_lines(rows: list[dict], rates: dict[str, float],
                  sampled: dict[str, dict[str, dict[str, np.ndarray]]]) -> list[str]:
  """Each bucket's share of the whole mixture's tokens: before QAU, configured, sampled.

  Before and configured are the tasks' shares weighted by the mixture rates;
  a sampled column counts the tokens of the documents actually drawn.

  Args:
    rows: `bucket_table` rows.
    rates: the mixture's {task: rate}.
    sampled: {column label: `sampled_shares` of the same config (arrays or lists)}.

  Returns:
    Text lines: a header, one line per bucket, and what each column drew.
  """
  total = sum(rates[row["task"]] for row in rows)
  drawn = {label: sum(np.asarray(s[row["task"]]["tokens"]) for row in rows)
           for label, s in sampled.items()}
  lines = [f"  {'bucket':12s} {'factors':>12s} {'before':>7s} {'configured':>10s} " +
           " ".join(f"{label:>12s}" for label in sampled)]
  for b, bucket in enumerate(rows[0]["buckets"]):
    factors = sorted({row["buckets"][b]["factor"] for row in rows})
    shown = "/".join(f"{f:.2g}" for f in factors) + "x"
    before, after = (sum(rates[row["task"]] * row["buckets"][b][key] for row in rows) / total
                     for key in ("share_before", "share_after"))
    lines.append(f"  {_range(bucket):12s} {shown:>12s} {before:>7.3f} {after:>10.3f} " +
                 " ".join(f"{d[b] / max(d.sum(), 1.0):>12.3f}" for d in drawn.values()))
  for label, s in sampled.items():
    docs = int(sum(np.sum(s[row["task"]]["docs"]) for row in rows))
    lines.append(f"  {label}: {docs:,} documents, {int(drawn[label].sum()):,} tokens drawn")
  return lines
