"""The Deduplicator's fingerprints, and the records of a decision (Verdict, Match).

Deduplication is two steps, so that Beam can run both on many workers:
  `fingerprint(texts)`  batch work, vectorised: exact keys, MinHash
                        signatures and band keys, SimHash, code keys,
                        embeddings, per the levels on;
  deciding              which documents are duplicates and which copy is kept:
                        connected components over verified pairs, the best
                        (smallest-key) copy kept (components.py locally,
                        beam_components.py on Beam, the same result).

A level is skipped for a document without a fingerprint there: a document with
no words has no shingles, so it is compared by exact copies only (otherwise
every such document would be a near duplicate of every other), and an
`exact_only` one (templated tasks, whose documents share a template rather than
content) gets only its exact key.
"""
import dataclasses
from collections.abc import Sequence

import numpy as np

from midtrain_jax.dedup import code as code_lib
from midtrain_jax.dedup import exact, minhash, semantic, simhash
from midtrain_jax.dedup import text as text_lib
from midtrain_jax.dedup.params import DedupParams


@dataclasses.dataclass(frozen=True)
class Fingerprint:
  """One document's fingerprints; picklable.

  Fields of levels that are off, or skipped for this document (no words, or
  exact only), are None.
  """
  exact: bytes
  code: bytes | None = None
  signature: np.ndarray | None = None  # uint32 [num_perm]
  band_keys: tuple[int, ...] | None = None
  simhash: int | None = None
  embedding: np.ndarray | None = None  # float32 [D], unit length
  semantic_keys: tuple[int, ...] | None = None  # Its band keys in the semantic index.


@dataclasses.dataclass(frozen=True)
class Match:
  """What a document duplicates: a kept (or reference) document, the level, the similarity."""
  duplicate_of: str
  task: str
  level: str
  similarity: float
  reference: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The decision on one document: kept or not, and what it matched (if anything)."""
  doc_id: str
  task: str
  kept: bool
  match: Match | None = None
  skipped: int = 0  # Members of its buckets the cap kept it from being compared with.
  capped: int = 0  # Its bucket memberships beyond the anchors (components.py).


class Deduplicator:
  """Fingerprints documents for the deduplication (components.py decides).

  Args:
    params: the settings.
    embed_fn: the embedding function of the semantic level (default: the one
      `params.embedder` names).
  """

  def __init__(self, params: DedupParams | None = None, embed_fn=None):
    self.params = params or DedupParams()
    self._hasher = minhash.MinHasher(self.params.num_perm, self.params.seed) \
        if self.params.uses_minhash else None
    # Only its band keys are used: the pairs are found by components.py.
    self._lsh = minhash.LSHIndex(self.params.jaccard, self.params.num_perm) \
        if self.params.uses_minhash else None
    self._embed = None
    if "semantic" in self.params.levels:
      self._embed = embed_fn or semantic.load_embedder(self.params.embedder)

  def fingerprint(self, texts: Sequence[str], exact_only: bool = False) -> list[Fingerprint]:
    """Fingerprints a batch of documents (the vectorised, parallelisable part).

    Args:
      texts: documents.
      exact_only: give them only the exact key (compared by exact copies only).

    Returns:
      One Fingerprint per document.
    """
    texts = list(texts)
    p = self.params
    n = len(texts)
    keys = exact.exact_keys(texts)
    if exact_only:
      return [Fingerprint(exact=key) for key in keys]
    codes = [code_lib.code_key(t, p.code_min_tokens) for t in texts] if "code" in p.levels \
        else [None] * n
    signatures = band_keys = prints = vectors = semantic_keys = [None] * n
    if "near" in p.levels:
      words = text_lib.word_hashes(texts)
      # A document without words has no shingles: its empty signature (and SimHash
      # 0) would equal every other such document's, so it skips the near level.
      skip = np.diff(words.offsets) == 0
      if self._hasher is not None:
        found = self._hasher.signatures(text_lib.shingle_hashes(words, p.ngram))
        keys_of = self._lsh.band_keys(found).tolist()
        signatures = [None if skip[i] else found[i] for i in range(n)]
        band_keys = [None if skip[i] else tuple(keys_of[i]) for i in range(n)]
      if p.uses_simhash:
        prints = [None if s else h for s, h in zip(skip, simhash.fingerprints(words).tolist())]
    if self._embed is not None and n:
      matrix = semantic.embed(self._embed, texts)
      vectors = list(matrix)
      semantic_keys = [tuple(k) for k in semantic.band_keys(
          matrix, semantic.bands_for(p.semantic_threshold), p.seed).tolist()]
    return [Fingerprint(exact=keys[i], code=codes[i], signature=signatures[i],
                        band_keys=band_keys[i], simhash=prints[i], embedding=vectors[i],
                        semantic_keys=semantic_keys[i])
            for i in range(n)]
