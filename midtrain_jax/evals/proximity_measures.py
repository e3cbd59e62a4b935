"""How close a data source is to a target distribution, relative to general data.

Midtraining is argued to help post-training most where its data moves the
model toward the target distribution: its *proximity advantage* over the
general pretraining data. Two measures, each reported for a source and for
the general data, and their difference (the advantage, positive = the source
is closer to the target than the general data is):

* Model-free: the Jensen-Shannon divergence (bits, in [0, 1]) between the
  token distributions of the source and the target: unigrams, and bigrams of
  adjacent tokens within a document hashed into `bigram_buckets` bins (a
  bounded table whatever the vocabulary; collisions only merge bins, which
  can lower a divergence, never raise it). The source is read from its
  training split, the target from its held-out split, at most `max_tokens`
  tokens each (the first documents of each shard, in stored order). A source
  mixing several tasks is the weighted mixture of their distributions.
  advantage = JS(general, target) - JS(source, target).
* Model-based, the loss gap: from the base checkpoint, `steps` steps of
  training on the source at the constant LR `lr` (fresh AdamW moments), then
  the target's held-out loss per token after minus before (nats/token;
  negative = the exposure brought the model closer to the target). The same
  exposure on the general data is the reference:
  advantage = gap(general) - gap(source).

A source is written `task` or `task+task+...` (equal token shares).
"""
import dataclasses

import grain
import numpy as np

from midtrain_jax import settings
from midtrain_jax.data import layout
from midtrain_jax.data.load import heldout_batches, prepared
from midtrain_jax.data.mixtures import catalog

# Multiplier of the first token of a bigram in its hash (a prime well above any
# vocabulary, so (a, b) and (a', b') collide only by the modulus).
_BIGRAM_PRIME = 1_000_003


@dataclasses.dataclass(frozen=True)
class ProximityOptions:
  """The proximity measures' settings (the commands' flags of the same names)."""
  steps: int = settings.field(20, "Steps of the short exposure to each source (loss gap).",
                              check=settings.POSITIVE)
  lr: float = settings.field(3e-4, "Constant LR of the exposure (fresh AdamW moments).",
                             check=settings.POSITIVE)
  max_tokens: int = settings.field(200_000, "Tokens read per task for the token "
                                   "distributions (JS divergence).", check=settings.POSITIVE)
  bigram_buckets: int = settings.field(1 << 16, "Hash bins of the bigram distribution.",
                                       check=settings.POSITIVE)
  max_batches: int = settings.field(4, "Target held-out batches scored before and after "
                                    "an exposure (0 = the whole split).",
                                    check=settings.NON_NEGATIVE)


SETTINGS = settings.Section(settings.dataclass_settings(ProximityOptions),
                            help="the proximity measures (evals/proximity_measures.py).")


def check_options(options: ProximityOptions) -> None:
  """Fails naming the option whose value is out of range."""
  values = {k: getattr(options, k) for k in settings.dataclass_settings(ProximityOptions)}
  settings.validate(SETTINGS, values, "proximity")


def parse_source(text: str) -> dict[str, float]:
  """`task` or `a+b+...` -> {task: equal share}, every task checked to exist."""
  names = [name.strip() for name in text.split("+")]
  if not all(names):
    raise ValueError(f"Source {text!r}: expected task or task+task+... (no empty names).")
  if len(set(names)) != len(names):
    raise ValueError(f"Source {text!r} names a task twice.")
  for name in names:
    try:
      catalog.get_task(name)
    except ValueError as e:
      raise ValueError(f"Source {text!r}: {e}") from None
  return {name: 1.0 / len(names) for name in names}


def source_name(weights: dict[str, float]) -> str:
  """The `a+b` spelling of equal-share weights (a folder-safe run name)."""
  return "+".join(weights)


def task_documents(data_cfg, task: str, split: str, max_tokens: int) -> list[np.ndarray]:
  """A task's stored documents' text tokens (no BOS/EOS), up to `max_tokens` in all.

  A chat task's documents are their response tokens only (its loss masks).

  Args:
    data_cfg: `data` section whose mixture holds `task` (prepared).
    task: the task name.
    split: "train" or "heldout".
    max_tokens: stop after the document that crosses this many tokens.
  """
  mixture = prepared.open_prepared(data_cfg)
  if task not in mixture.tasks:
    raise ValueError(f"Task {task!r} is not in mixture {data_cfg.mixture!r}: "
                     f"{mixture.task_names}")
  with_bos = mixture.starts_with_bos
  masked = layout.has_masks(mixture.directory, task)
  docs, total = [], 0
  for path in layout.shard_files(mixture.directory, task, split):
    source = grain.sources.ArrayRecordDataSource([path])
    masks = (grain.sources.ArrayRecordDataSource(layout.mask_files([path])) if masked
             else None)
    for i in range(len(source)):
      doc = layout.decode_record(source[i])
      if masks is not None:  # The mask covers the stored tokens, BOS and EOS included.
        doc = doc[layout.decode_mask(masks[i]) > 0]
      else:
        doc = layout.document_body(doc, with_bos)
      docs.append(doc)
      total += len(doc)
      if total >= max_tokens:
        return docs
  return docs


def token_distributions(docs: list[np.ndarray], vocab_size: int,
                        bigram_buckets: int) -> tuple[np.ndarray, np.ndarray]:
  """Unigram and hashed-bigram probabilities of documents (bigrams within a document).

  Returns:
    (unigram [vocab_size], bigram [bigram_buckets]), each summing to 1 (all
    zeros when there is nothing to count).
  """
  unigram = np.zeros(vocab_size, np.float64)
  bigram = np.zeros(bigram_buckets, np.float64)
  for doc in docs:
    ids = np.asarray(doc, np.int64)
    unigram += np.bincount(ids, minlength=vocab_size)[:vocab_size]
    if len(ids) > 1:
      keys = (ids[:-1] * _BIGRAM_PRIME + ids[1:]) % bigram_buckets
      bigram += np.bincount(keys, minlength=bigram_buckets)
  return _normalised(unigram), _normalised(bigram)


def _normalised(counts: np.ndarray) -> np.ndarray:
  total = counts.sum()
  return counts / total if total > 0 else counts


def mixed(distributions: list[np.ndarray], weights: list[float]) -> np.ndarray:
  """The weighted mixture of probability vectors (weights normalised)."""
  w = np.asarray(weights, np.float64)
  return np.tensordot(w / w.sum(), np.stack(distributions), axes=1)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
  """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint supports)."""
  p, q = _normalised(np.asarray(p, np.float64)), _normalised(np.asarray(q, np.float64))
  m = 0.5 * (p + q)

  def kl(a):  # 0 log 0 = 0; m > 0 wherever a > 0.
    nz = a > 0
    return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

  return 0.5 * kl(p) + 0.5 * kl(q)


def source_distributions(data_cfg, weights: dict[str, float], vocab_size: int,
                         options: ProximityOptions, split: str = "train"):
  """(unigram, bigram) of a source: its tasks' distributions mixed by `weights`."""
  per_task = [token_distributions(
      task_documents(data_cfg, task, split, options.max_tokens), vocab_size,
      options.bigram_buckets) for task in weights]
  shares = list(weights.values())
  return (mixed([d[0] for d in per_task], shares), mixed([d[1] for d in per_task], shares))


def distances(source, target) -> dict[str, float]:
  """{js_unigram, js_bigram} between two (unigram, bigram) pairs."""
  return {"js_unigram": js_divergence(source[0], target[0]),
          "js_bigram": js_divergence(source[1], target[1])}


def task_loss(eval_fn, data_cfg, task: str, *, max_batches: int, stride: int = 0) -> float:
  """Held-out loss per token (nats) of one task (`eval_fn` as `heldout.heldout_bpb`'s)."""
  nats = tokens = 0.0
  for batch in heldout_batches.make_eval_iterator(data_cfg, task, max_batches=max_batches,
                                                  stride=stride):
    out = eval_fn(batch)
    nats, tokens = nats + float(out["nats"]), tokens + float(out["tokens"])
  return nats / max(tokens, 1.0)


MEASURES = ("js_unigram", "js_bigram", "loss_gap")


def advantages(source: dict, general: dict) -> dict[str, float]:
  """Per measure, general minus source (positive = the source is closer to the target).

  Args:
    source, general: dicts holding the `MEASURES` of the source and of the
      general data (other keys are ignored).
  """
  return {f"advantage/{k}": general[k] - source[k] for k in MEASURES}
