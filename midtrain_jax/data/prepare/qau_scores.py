"""The preparation's quality step: a scorer trained and every train document scored.

Quality-aware upsampling (data/load/upsampling.py) repeats documents by the
quality bucket of their score; this step makes those scores. It trains the
prepared folder's quality scorer (quality.py) when it has none for the
`data.qau` settings and scores every task whose saved scores are missing or
stale, storing both in the folder (data/layout.py).
"""
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data import settings as data_settings
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import quality

_SCORE_CHUNK = 4096


def train_documents(data_dir: pathlib.Path, task: str):
  """Yields chunks of a task's stored train documents, in record order."""
  source = grain.sources.ArrayRecordDataSource(layout.shard_files(data_dir, task, "train"))
  for start in range(0, len(source), _SCORE_CHUNK):
    yield [layout.decode_record(source[i])
           for i in range(start, min(len(source), start + _SCORE_CHUNK))]


def scorer_for(data_cfg, data_dir: str | pathlib.Path, tok,
               log: Callable[[str], None] = print) -> tuple[quality.Scorer, str]:
  """(scorer, its fingerprint): the folder's scorer for the `data.qau` settings,
  trained and saved when it has none (or a stale one)."""
  data_settings.check_qau(data_cfg.qau)
  catalog.check_tasks(data_cfg.qau.task_factors, "data.qau.task_factors")
  wanted = quality.fingerprint(data_cfg.qau, tok.fingerprint())
  scorer = quality.load(data_dir)
  if scorer is None or scorer.meta.get("fingerprint") != wanted:
    scorer = quality.train_for(data_cfg, tok, log)
    quality.save(scorer, data_dir)
  return scorer, wanted


def score_documents(scorer: quality.Scorer, docs, with_bos: bool) -> np.ndarray:
  """The float32 score of stored documents (each scored alone: any batching agrees)."""
  if not len(docs):
    return np.zeros(0, np.float32)
  return scorer.score([layout.document_body(d, with_bos) for d in docs]).astype(np.float32)


def ensure_scores(data_cfg, data_dir: str | pathlib.Path, tasks: Sequence[str],
                  log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
  """The quality scores of `tasks` in a prepared folder, made and saved if missing.

  Trains the folder's scorer when it has none for these `data.qau` settings,
  and scores every task whose saved scores are missing or stale (another
  scorer, or the task re-prepared). The Beam preparation scores its documents
  in the pipeline with the same scorer, so this finds them made.

  Args:
    data_cfg: the `data` config section.
    data_dir: the prepared folder.
    tasks: the tasks to score.
    log: progress printer.

  Returns:
    {task: {"scores", "tokens"}}: per train document, in record order.
  """
  data_dir = files.path(data_dir)
  manifest = layout.read_manifest(data_dir)
  if manifest is None:
    raise FileNotFoundError(f"{data_dir} is not a prepared data folder (no {layout.MANIFEST}).")
  scorer, wanted = scorer_for(data_cfg, data_dir,
                              tokenizer_lib.load_tokenizer(manifest["tokenizer"]), log)
  found = {}
  for task in tasks:
    stats = layout.read_stats(data_dir, task)
    saved = layout.read_quality_scores(data_dir, task)
    if (saved is None or saved["scorer"] != wanted or saved["task"] != stats["fingerprint"]
        or len(saved["scores"]) != stats["train_docs"]):
      scores, tokens = [], []
      with_bos = layout.starts_with_bos(manifest)
      for docs in train_documents(data_dir, task):
        scores.append(score_documents(scorer, docs, with_bos))
        tokens.append([len(d) for d in docs])
      # Float32 as stored: a run that scored and one that reads the file bucket alike.
      saved = {"scores": np.concatenate(scores or [[]]).astype(np.float32),
               "tokens": np.concatenate(tokens or [[]]).astype(np.int64)}
      layout.write_quality_scores(data_dir, task, saved["scores"], saved["tokens"],
                                  scorer=wanted, task_fingerprint=stats["fingerprint"])
    found[task] = {"scores": saved["scores"], "tokens": saved["tokens"]}
  return found
