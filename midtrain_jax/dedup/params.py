"""Deduplication settings: one frozen record for prepare, the command and Beam.

Defaults and why:
  levels ("exact", "near")   exact: normalised-text hash; near: MinHash/SimHash;
                             "code" (structural, ast) and "semantic" (embeddings)
                             cost more and are opt-in.
  ngram 3, jaccard 0.4       near duplicates are documents whose word 3-gram
                             sets have Jaccard similarity >= 0.4. The common
                             "0.8 over word 5-grams" finds only copies with
                             fewer than ~3% of their words edited: a copy with
                             a fraction e of its words edited keeps about
                             (1 - e)^n of its n-grams, so Jaccard over 5-grams
                             is 0.63 at e = 5% and 0.42 at e = 10%. Over 3-grams
                             those copies score 0.75 and 0.57 (0.45 to 0.5 with
                             insertions and deletions mixed in), while distinct
                             web, encyclopedia and instruction documents of the
                             demo corpus stay below 0.1 (measured). Templated
                             text (generated math or program traces, Q/A from
                             one template) has many near duplicates at this
                             setting: compare such tasks by exact copies only
                             (`data.dedup.exact_only`, the command's
                             --exact_only), or raise `jaccard` or `ngram`.
                             A document without words (no shingles) is
                             compared by exact copies only.
  num_perm 128               MinHash permutations (standard error of the
                             estimate ~0.04 at Jaccard 0.4).
  near_method "minhash"      "simhash" (64-bit SimHash over words, Hamming
                             distance <= simhash_distance: the web-crawl
                             setting for near-verbatim copies, robust to
                             reordering, not to 5-10% edits) or "both".
  simhash_distance 3
  code_min_tokens 20         smaller code is not fingerprinted (too generic).
  semantic_threshold 0.95    cosine similarity (Duplodocus' setting).
  embedder ""                "package.module:function" (semantic.py); needed
                             for the semantic level.
  reference_mode "drop"      documents matching the reference set are removed
                             ("drop") or kept and counted ("count").
  seed 1                     MinHash permutations.
"""
import dataclasses
import hashlib
import json

LEVELS = ("exact", "near", "code", "semantic")
NEAR_METHODS = ("minhash", "simhash", "both")
REFERENCE_MODES = ("drop", "count")


@dataclasses.dataclass(frozen=True)
class DedupParams:
  """How documents are compared (see the module docstring for the defaults)."""
  levels: tuple[str, ...] = ("exact", "near")
  ngram: int = 3
  jaccard: float = 0.4
  num_perm: int = 128
  near_method: str = "minhash"
  simhash_distance: int = 3
  code_min_tokens: int = 20
  semantic_threshold: float = 0.95
  embedder: str = ""
  reference_mode: str = "drop"
  seed: int = 1

  def __post_init__(self):
    object.__setattr__(self, "levels", tuple(self.levels))
    self.validate()

  def validate(self) -> None:
    """Fails with a message naming the setting of a bad value."""
    def fail(field, why):
      raise ValueError(f"{field}={getattr(self, field)!r} {why}")
    if isinstance(self.levels, str) or not set(self.levels) <= set(LEVELS):
      fail("levels", f"must be a tuple of levels from {LEVELS}.")
    if not 1 <= self.ngram <= 8:
      fail("ngram", "must be between 1 and 8.")
    if not 0.0 < self.jaccard <= 1.0:
      fail("jaccard", "must be in (0, 1].")
    if not 8 <= self.num_perm <= 1024:
      fail("num_perm", "must be between 8 and 1024.")
    if self.near_method not in NEAR_METHODS:
      fail("near_method", f"is not one of {NEAR_METHODS}.")
    if not 0 <= self.simhash_distance < 16:
      fail("simhash_distance", "must be in [0, 16).")
    if self.code_min_tokens < 1:
      fail("code_min_tokens", "must be positive.")
    if not 0.0 < self.semantic_threshold <= 1.0:
      fail("semantic_threshold", "must be in (0, 1].")
    if "semantic" in self.levels and not self.embedder:
      fail("embedder", "is empty but the semantic level is on: name an embedding "
           "function as 'package.module:function'.")
    if self.reference_mode not in REFERENCE_MODES:
      fail("reference_mode", f"is not one of {REFERENCE_MODES}.")

  @property
  def uses_minhash(self) -> bool:
    return "near" in self.levels and self.near_method in ("minhash", "both")

  @property
  def uses_simhash(self) -> bool:
    return "near" in self.levels and self.near_method in ("simhash", "both")

  def as_dict(self) -> dict:
    return {**dataclasses.asdict(self), "levels": list(self.levels)}

  def key(self) -> str:
    """A short hash of every setting (part of fingerprints of prepared data and runs)."""
    text = json.dumps(self.as_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def from_config(section, prefix: str = "data.dedup.") -> DedupParams:
  """The settings of a `data.dedup` config section (validated; errors name `prefix` + key).

  Args:
    section: the section (a ConfigDict or a mapping with the DedupParams keys).
    prefix: how error messages name the section's keys.

  Returns:
    DedupParams.
  """
  values = {f.name: section[f.name] for f in dataclasses.fields(DedupParams)
            if f.name != "seed"}
  values["levels"] = tuple(values["levels"])
  unknown = [level for level in values["levels"] if level not in LEVELS]
  if unknown:
    raise ValueError(f"{prefix}levels names unknown level(s) {unknown}; levels: {LEVELS}.")
  try:
    return DedupParams(**values)
  except ValueError as e:
    raise ValueError(f"{prefix}{e}") from None
