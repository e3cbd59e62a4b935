"""The Deduplicator: fingerprints documents and decides which copy of each is kept.

Two steps, so that Beam can run the first on many workers and the second in
one place with the same result as a local run:
  `fingerprint(texts)`  batch work, vectorised: exact keys, MinHash
                        signatures and band keys, SimHash, code keys,
                        embeddings, per the levels on;
  `decide(...)`         one document at a time, in order: compares it with
                        the documents kept so far and with the reference set.

Which copy is kept (the keep rule): documents are decided in order of their
source's priority (the caller passes sources highest quality first, e.g. a
mixture's `data.dedup.priority`, then the order given), and within a source in
reading order. The first copy decided is kept and every later copy is removed
and points to it (`duplicate_of` is always a kept document, never a removed
one). So the copy kept is the one from the highest-priority source, and among
copies of one source the first seen.

Levels are tried cheapest and strictest first: exact, code, near, semantic;
the first that matches names the level. A document is first compared with the
kept documents (`seen`: within one task, or across all tasks of a mixture),
then with the reference set (e.g. the base model's pretraining data): with
reference mode "drop" a match is removed, with "count" it is kept and counted.

A level is skipped for a document without a fingerprint there: a document with
no words has no shingles, so it is compared by exact copies only (otherwise
every such document would be a near duplicate of every other), and an
`exact_only` one (templated tasks, whose documents share a template rather than
content) gets only its exact key.

The near and semantic levels look candidates up in hash buckets of at most
`max_bucket` documents (buckets.py), so a hot bucket (boilerplate shared by
many documents) costs a bounded number of comparisons per document. Each
verdict carries what the cap cost: `skipped` comparisons not made while
deciding the document, `capped` bucket insertions of a kept document turned
away; the counts report both (counts.py).
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
  skipped: int = 0  # Comparisons the bucket cap skipped while deciding it.
  capped: int = 0  # Its bucket insertions turned away by the cap (kept documents).


class _Indices:
  """The kept documents of one scope (or the reference set), under every level on."""

  def __init__(self, params: DedupParams):
    self.params = params
    self.docs: list[tuple[str, str]] = []  # Position -> (doc id, task).
    self.exact = exact.KeyIndex()
    self.code = exact.KeyIndex()
    cap = params.max_bucket
    self.lsh = minhash.LSHIndex(params.jaccard, params.num_perm, cap) \
        if params.uses_minhash else None
    self.simhash = simhash.SimHashIndex(params.simhash_distance, cap) \
        if params.uses_simhash else None
    self.semantic = semantic.SemanticIndex(params.semantic_threshold, cap, params.seed) \
        if "semantic" in params.levels else None
    # These three number their entries themselves and hold only documents with a
    # fingerprint there: each entry's position in `docs`.
    self._lsh_docs: list[int] = []
    self._simhash_docs: list[int] = []
    self._semantic_docs: list[int] = []

  def bucket_counts(self) -> tuple[int, int, int]:
    """(comparisons skipped, insertions capped, largest bucket) over the capped indices."""
    found = [i.buckets for i in (self.lsh, self.simhash, self.semantic) if i is not None]
    return (sum(b.skipped for b in found), sum(b.capped for b in found),
            max((b.largest for b in found), default=0))

  def find(self, fp: Fingerprint) -> tuple[str, int, float] | None:
    """(level, position, similarity) of the first level that matches, or None."""
    levels = self.params.levels
    if "exact" in levels and (hit := self.exact.query(fp.exact)):
      return ("exact", *hit)
    if "code" in levels and (hit := self.code.query(fp.code)):
      return ("code", *hit)
    if (self.lsh is not None and fp.signature is not None
        and (hit := self.lsh.query(fp.signature, fp.band_keys))):
      return ("near", self._lsh_docs[hit[0]], hit[1])
    if (self.simhash is not None and fp.simhash is not None
        and (hit := self.simhash.query(fp.simhash))):
      return ("near", self._simhash_docs[hit[0]], hit[1])
    if (self.semantic is not None and fp.embedding is not None
        and (hit := self.semantic.query(fp.embedding, _keys(fp.semantic_keys)))):
      return ("semantic", self._semantic_docs[hit[0]], hit[1])
    return None

  def add(self, fp: Fingerprint, doc_id: str, task: str) -> None:
    position = len(self.docs)
    self.docs.append((doc_id, task))
    self.exact.insert(fp.exact, position)
    self.code.insert(fp.code, position)
    if self.lsh is not None and fp.signature is not None:
      self.lsh.insert(fp.signature, fp.band_keys)
      self._lsh_docs.append(position)
    if self.simhash is not None and fp.simhash is not None:
      self.simhash.insert(fp.simhash)
      self._simhash_docs.append(position)
    if self.semantic is not None and fp.embedding is not None:
      self.semantic.insert(fp.embedding, _keys(fp.semantic_keys))
      self._semantic_docs.append(position)


def _keys(keys: tuple[int, ...] | None) -> list[int] | None:
  return None if keys is None else list(keys)


class Deduplicator:
  """Finds duplicates among documents decided in order, and against a reference set.

  Args:
    params: the settings.
    embed_fn: the embedding function of the semantic level (default: the one
      `params.embedder` names).
  """

  def __init__(self, params: DedupParams | None = None, embed_fn=None):
    self.params = params or DedupParams()
    self._hasher = minhash.MinHasher(self.params.num_perm, self.params.seed) \
        if self.params.uses_minhash else None
    self._embed = None
    if "semantic" in self.params.levels:
      self._embed = embed_fn or semantic.load_embedder(self.params.embedder)
    self.seen = _Indices(self.params)
    self.reference = _Indices(self.params)

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
        keys_of = self.seen.lsh.band_keys(found).tolist()
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

  def decide(self, fp: Fingerprint, doc_id: str, task: str) -> Verdict:
    """Decides one document against everything decided before it (see the keep rule).

    Args:
      fp: its fingerprint.
      doc_id: its id, reported in `duplicate_of` of its later copies.
      task: its task (source).

    Returns:
      The verdict; a kept document joins the index.
    """
    skipped_before = self._skipped()
    hit = self.seen.find(fp)
    if hit is not None:
      level, position, similarity = hit
      of_id, of_task = self.seen.docs[position]
      return Verdict(doc_id, task, False, Match(of_id, of_task, level, similarity),
                     skipped=self._skipped() - skipped_before)
    hit = self.reference.find(fp)
    match = None
    if hit is not None:
      level, position, similarity = hit
      of_id, of_task = self.reference.docs[position]
      match = Match(of_id, of_task, level, similarity, reference=True)
      if self.params.reference_mode == "drop":
        return Verdict(doc_id, task, False, match, skipped=self._skipped() - skipped_before)
    skipped = self._skipped() - skipped_before
    capped_before = self.seen.bucket_counts()[1]
    self.seen.add(fp, doc_id, task)
    return Verdict(doc_id, task, True, match, skipped=skipped,
                   capped=self.seen.bucket_counts()[1] - capped_before)

  def _skipped(self) -> int:
    return self.seen.bucket_counts()[0] + self.reference.bucket_counts()[0]

  def largest_bucket(self) -> int:
    """The most documents any bucket of the kept or reference indices was given."""
    return max(self.seen.bucket_counts()[2], self.reference.bucket_counts()[2])

  def process(self, docs: Sequence[tuple[str, str]], task: str,
              exact_only: bool = False) -> list[Verdict]:
    """Fingerprints and decides a batch of one task, in order.

    Args:
      docs: (doc id, text) pairs.
      task: their task.
      exact_only: compare them by exact copies only (see `fingerprint`).

    Returns:
      One Verdict per document.
    """
    prints = self.fingerprint([text for _, text in docs], exact_only)
    return [self.decide(fp, doc_id, task) for fp, (doc_id, _) in zip(prints, docs)]

  def add_reference(self, docs: Sequence[tuple[str, str]], task: str = "reference") -> None:
    """Adds documents to the reference set (no verdicts: they are never output).

    Args:
      docs: (doc id, text) pairs.
      task: the name reported for them in matches.
    """
    for fp, (doc_id, _) in zip(self.fingerprint([text for _, text in docs]), docs):
      self.reference.add(fp, doc_id, task)

  def new_scope(self) -> None:
    """Forgets the kept documents (not the reference set): the next task starts afresh."""
    self.seen = _Indices(self.params)
