"""The quality scorer of quality-aware upsampling: a fastText-style linear classifier.

A document's features are its hashed token unigrams and bigrams (the first
`MAX_TOKENS` tokens, `NUM_BUCKETS` hash buckets), averaged as fastText averages
its n-gram vectors; the model is logistic regression on that average,
`p(high quality) = sigmoid(bias + mean(weights[buckets]))`, trained full-batch
with Adam, balanced classes and a little L2. DCLM's and OLMo's quality filters
are classifiers of this kind; in numpy it trains on the demo's few thousand
documents in seconds on one core and needs no compiled extension.

The scorer reads token ids, not text: scoring a prepared folder reads its
shards and never re-reads the raw text. A scorer therefore belongs to one
tokenizer, and lives inside the prepared folder (`quality/` in layout.py).

Training text (`data.qau` in config.py): the documents of `positive_tasks`
("high quality" reference text; by default the demo's instruction answers and
Wikipedia articles) against those of `negative_tasks` (random web: the demo's
C4 and OpenWebText pages), at most `scorer_docs` per task. A hash of each
document's tokens puts `HELDOUT_FRACTION` of them aside; the accuracy on that
split, which the scorer never trained on, is printed and kept in its metadata.
"""
import dataclasses
import hashlib
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.documents import readers as sources

# Bump when features or training change: part of the scorer's fingerprint.
VERSION = 1
_BITS = 18
NUM_BUCKETS = 1 << _BITS
MAX_TOKENS = 1024
HELDOUT_FRACTION = 0.2
_STEPS, _LR, _L2 = 300, 0.1, 1e-6
_MUL = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F),
        np.uint64(0x165667B19E3779F9))


def hashed_ngrams(ids: np.ndarray) -> np.ndarray:
  """Hash buckets of a document's token unigrams and bigrams (its first MAX_TOKENS).

  Args:
    ids: token ids, without BOS/EOS.

  Returns:
    int64 bucket ids in [0, NUM_BUCKETS): len(ids) unigrams, then the bigrams.
  """
  t = np.asarray(ids[:MAX_TOKENS], np.uint64)
  keys = np.concatenate([t * _MUL[0], (t[:-1] * _MUL[1]) ^ ((t[1:] + _MUL[2]) * _MUL[0])])
  keys ^= keys >> np.uint64(31)
  return ((keys * _MUL[1]) >> np.uint64(64 - _BITS)).astype(np.int64)


def _design(docs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(flat bucket ids, document of each, 1 / n-grams per document) of `docs`."""
  grams = [hashed_ngrams(d) for d in docs]
  counts = np.array([len(g) for g in grams], np.int64)
  flat = np.concatenate(grams) if grams else np.zeros(0, np.int64)
  doc_of = np.repeat(np.arange(len(docs)), counts)
  return flat, doc_of, 1.0 / np.maximum(counts, 1)


def in_heldout(ids: np.ndarray) -> bool:
  """True for documents the scorer keeps aside for its accuracy (a hash of the tokens)."""
  digest = hashlib.blake2b(np.asarray(ids, np.uint32).tobytes(), digest_size=8).digest()
  return int.from_bytes(digest, "little") % 1000 < HELDOUT_FRACTION * 1000


@dataclasses.dataclass
class Scorer:
  """A trained quality classifier.

  Attributes:
    weights: float32 [NUM_BUCKETS], one per hashed n-gram.
    bias: the logit of an empty document.
    meta: settings, fingerprint and held-out accuracy (saved as scorer.json).
  """
  weights: np.ndarray
  bias: float
  meta: dict = dataclasses.field(default_factory=dict)

  def logits(self, docs: Sequence[np.ndarray]) -> np.ndarray:
    """The classifier's logit per document (token ids without BOS/EOS)."""
    flat, doc_of, inv_len = _design(docs)
    sums = np.bincount(doc_of, weights=self.weights[flat], minlength=len(docs))
    return self.bias + sums * inv_len

  def score(self, docs: Sequence[np.ndarray]) -> np.ndarray:
    """P(high quality) per document, in (0, 1)."""
    return 1.0 / (1.0 + np.exp(-self.logits(docs)))


def train(positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], *,
          steps: int = _STEPS, lr: float = _LR, l2: float = _L2) -> Scorer:
  """Fits the classifier: logistic loss, both classes weighted equally.

  Args:
    positives: token ids of "high quality" documents.
    negatives: token ids of random web documents.
    steps: full-batch Adam steps.
    lr: Adam learning rate.
    l2: weight decay on the n-gram weights (not the bias).

  Returns:
    The Scorer (empty `meta`).
  """
  if not positives or not negatives:
    raise ValueError(f"The quality scorer needs documents of both classes, got "
                     f"{len(positives)} positive and {len(negatives)} negative.")
  docs = list(positives) + list(negatives)
  labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
  # Balanced: each class carries half the loss, whatever its document count.
  doc_weight = np.where(labels > 0, 0.5 / len(positives), 0.5 / len(negatives))
  flat, doc_of, inv_len = _design(docs)
  params = np.zeros(NUM_BUCKETS + 1)
  m, v = np.zeros_like(params), np.zeros_like(params)
  for step in range(1, steps + 1):
    w, b = params[:-1], params[-1]
    logit = b + np.bincount(doc_of, weights=w[flat], minlength=len(docs)) * inv_len
    err = (1.0 / (1.0 + np.exp(-logit)) - labels) * doc_weight
    grad = np.empty_like(params)
    grad[:-1] = np.bincount(flat, weights=(err * inv_len)[doc_of], minlength=NUM_BUCKETS)
    grad[:-1] += l2 * w
    grad[-1] = err.sum()
    m = 0.9 * m + 0.1 * grad
    v = 0.999 * v + 0.001 * grad * grad
    params -= lr * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
  return Scorer(params[:-1].astype(np.float32), float(params[-1]))


def accuracy(scorer: Scorer, positives: Sequence[np.ndarray],
             negatives: Sequence[np.ndarray]) -> dict[str, float]:
  """{accuracy, positive_recall, negative_recall, docs} at the 0.5 threshold."""
  pos = scorer.score(positives) > 0.5 if positives else np.zeros(0, bool)
  neg = scorer.score(negatives) <= 0.5 if negatives else np.zeros(0, bool)
  hits = np.r_[pos, neg]
  return {"accuracy": float(hits.mean()) if len(hits) else float("nan"),
          "positive_recall": float(pos.mean()) if len(pos) else float("nan"),
          "negative_recall": float(neg.mean()) if len(neg) else float("nan"),
          "docs": len(hits)}


def task_documents(task: str, tok, data_cfg, limit: int) -> list[np.ndarray]:
  """Token ids of the first `limit` documents of a task's files (malformed records skipped).

  Args:
    task: a task of the catalog or of a loaded mixture file, read from files.
    tok: the tokenizer of the prepared folder.
    data_cfg: the `data` config section (source paths).
    limit: documents to read.

  Returns:
    One int32 array per document.
  """
  spec = catalog.get_task(task)
  if spec.seqio_task:
    raise ValueError(f"data.qau: task {task!r} reads the seqio Task {spec.seqio_task!r}; "
                     "the quality scorer trains on tasks read from files.")
  texts = []
  for item in sources.read_files(sources.expand(spec.files(data_cfg)), spec.text_fn):
    if isinstance(item, sources.Document):
      texts.append(item.text)
      if len(texts) >= limit:
        break
  return [np.asarray(ids, np.int32) for ids in tok.encode_batch(texts)]


def fingerprint(qau_cfg, tokenizer_fingerprint: str) -> str:
  """What a scorer depends on: its training tasks and sizes, tokenizer, version."""
  settings = dict(positive=list(qau_cfg.positive_tasks), negative=list(qau_cfg.negative_tasks),
                  docs=qau_cfg.scorer_docs, tokenizer=tokenizer_fingerprint, version=VERSION,
                  buckets=NUM_BUCKETS, max_tokens=MAX_TOKENS)
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def train_for(data_cfg, tok, log: Callable[[str], None] = print) -> Scorer:
  """Trains the scorer `data_cfg.qau` describes and measures it on its held-out split.

  Args:
    data_cfg: the `data` config section.
    tok: the prepared folder's tokenizer.
    log: progress printer (the held-out accuracy is printed through it).

  Returns:
    The Scorer, with settings, fingerprint and held-out accuracy in `meta`.
  """
  started = time.time()
  qau_cfg = data_cfg.qau
  # {in held-out split: (positive documents, negative documents)}.
  split = {True: ([], []), False: ([], [])}
  sizes = {}
  for label, tasks in ((0, qau_cfg.positive_tasks), (1, qau_cfg.negative_tasks)):
    for task in tasks:
      docs = [d for d in task_documents(task, tok, data_cfg, qau_cfg.scorer_docs) if len(d)]
      sizes[task] = len(docs)
      for doc in docs:
        split[in_heldout(doc)][label].append(doc)
  scorer = train(*split[False])
  held = accuracy(scorer, *split[True])
  scorer.meta = dict(
      fingerprint=fingerprint(qau_cfg, tok.fingerprint()), version=VERSION,
      tokenizer=tok.fingerprint(),
      positive_tasks=list(qau_cfg.positive_tasks), negative_tasks=list(qau_cfg.negative_tasks),
      docs_per_task=sizes, train_docs=sum(map(len, split[False])), heldout=held,
      train_accuracy=accuracy(scorer, *split[False])["accuracy"],
      num_buckets=NUM_BUCKETS, max_tokens=MAX_TOKENS, seconds=round(time.time() - started, 1))
  log(f"[quality] scorer trained on {scorer.meta['train_docs']} docs "
      f"({'+'.join(qau_cfg.positive_tasks)} vs {'+'.join(qau_cfg.negative_tasks)}): "
      f"held-out accuracy {held['accuracy']:.3f} on {held['docs']} docs "
      f"({scorer.meta['seconds']:.1f}s)")
  return scorer


def save(scorer: Scorer, data_dir: str | pathlib.Path) -> None:
  """Writes the scorer into the prepared folder (layout.py: quality/)."""
  layout.write_quality_scorer(files.path(data_dir),
                              {"weights": scorer.weights, "bias": np.float64(scorer.bias)},
                              scorer.meta)


def load(data_dir: str | pathlib.Path) -> Scorer | None:
  """The prepared folder's scorer, or None when it has none."""
  found = layout.read_quality_scorer(files.path(data_dir))
  if found is None:
    return None
  arrays, meta = found
  return Scorer(arrays["weights"], float(arrays["bias"]), meta)
