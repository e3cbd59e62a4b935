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
  max_bucket 256             the most documents one LSH / SimHash / semantic
                             bucket holds (buckets.py; 0: unbounded). Shared
                             boilerplate (licence headers, templates,
                             signatures) puts many documents under the same
                             band keys, and an unbounded bucket makes every
                             lookup there compare with all of them
                             (quadratic). A bucket's members, sorted by key
                             (best copy first), are compared only with its
                             first `max_bucket` (the anchors); the members
                             beyond them and the comparisons skipped are
                             counted in the report (components.py). The
                             largest bucket of the demo corpus holds 201
                             documents (all tasks together), so the cap
                             changes none of its decisions.
  component_rounds 12        rounds of the distributed connected components
                             (beam_components.py): each round halves, or
                             better, the distance labels still have to travel,
                             so a component of n documents needs about
                             0.6 * log2(n) rounds in the worst case (a path in
                             key order; measured: 8 for 100,000 documents) and
                             duplicate clusters far fewer (stars and cliques:
                             1-2). A pipeline that has not converged fails
                             naming this setting. The local runner (union-find)
                             needs no rounds.
  reference_mode "drop"      documents matching the reference set are removed
                             ("drop") or kept and counted ("count").
  seed 1                     MinHash permutations.
"""
import dataclasses
import hashlib
import json

from midtrain_jax import settings

LEVELS = ("exact", "near", "code", "semantic")
NEAR_METHODS = ("minhash", "simhash", "both")
REFERENCE_MODES = ("drop", "count")


def _check_embedder(values, path: str) -> None:
  if "semantic" in values["levels"] and not values["embedder"]:
    raise ValueError(f"{settings.key(path, 'embedder')}={values['embedder']!r} is empty but "
                     "the semantic level is on: name an embedding function as "
                     "'package.module:function'.")


@dataclasses.dataclass(frozen=True)
class DedupParams:
  """How documents are compared (see the module docstring for the defaults).

  Each field also declares its `data.dedup` config key (`seed` excepted).
  """
  levels: tuple[str, ...] = settings.field(
      ("exact", "near"), "Deduplication levels; () disables.", choices=LEVELS)
  ngram: int = settings.field(3, "Near duplicates: word n-grams whose sets are compared.",
                              check=settings.between(1, 8))
  jaccard: float = settings.field(0.4, "Near duplicates: Jaccard similarity of the n-gram "
                                  "sets at or above which documents are duplicates (MinHash "
                                  "with LSH banding).",
                                  check=settings.between(0, 1, low_open=True))
  num_perm: int = settings.field(128, "MinHash permutations.",
                                 check=settings.between(8, 1024))
  near_method: str = settings.field("minhash", "How near duplicates are found.",
                                    choices=NEAR_METHODS)
  simhash_distance: int = settings.field(3, "SimHash: Hamming distance in bits at or below "
                                         "which documents are duplicates.",
                                         check=settings.between(0, 16, high_open=True))
  code_min_tokens: int = settings.field(20, "Code smaller than this (syntax-tree nodes or "
                                        "tokens) is not compared by structure.",
                                        check=settings.POSITIVE)
  semantic_threshold: float = settings.field(
      0.95, "Semantic level: cosine similarity at or above which documents are duplicates.",
      check=settings.between(0, 1, low_open=True))
  embedder: str = settings.field("", "Semantic level: the embedding function "
                                 "'package.module:function' (texts -> [N, D]).")
  max_bucket: int = settings.field(256, "The most documents one near/semantic hash bucket "
                                   "holds (later ones are turned away and counted; 0: "
                                   "unbounded): bounds the comparisons per document when "
                                   "boilerplate makes a hot bucket.",
                                   check=settings.between(0, 10**9))
  component_rounds: int = settings.field(
      12, "Rounds of label propagation of the distributed (Beam) connected components; a run "
      "that needs more fails naming this setting.", check=settings.between(0, 200))
  reference_mode: str = settings.field("drop", "Documents found in the reference set are "
                                       "removed (drop) or kept and counted (count).",
                                       choices=REFERENCE_MODES)
  seed: int = settings.field(1, "Seed of the MinHash permutations.")

  def __post_init__(self):
    object.__setattr__(self, "levels", tuple(self.levels))
    self.validate()

  def validate(self) -> None:
    """Fails with a message naming the setting of a bad value."""
    settings.validate(PARAMS, dataclasses.asdict(self), path="")

  @property
  def uses_minhash(self) -> bool:
    return "near" in self.levels and self.near_method in ("minhash", "both")

  @property
  def uses_simhash(self) -> bool:
    return "near" in self.levels and self.near_method in ("simhash", "both")

  def as_dict(self) -> dict:
    """The settings as a JSON-able dict (`DedupParams(**d)` gives them back).

    Settings added after data was prepared with this record (`_LATER`) are left
    out at their default, so the fingerprints of folders prepared before they
    existed stay valid; their defaults change no decision there (see above).
    """
    out = {**dataclasses.asdict(self), "levels": list(self.levels)}
    for name, default in _LATER.items():
      if out[name] == default:
        del out[name]
    return out

  def key(self) -> str:
    """A short hash of every setting (part of fingerprints of prepared data and runs)."""
    text = json.dumps(self.as_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# Settings newer than the first prepared folders, with their defaults (see as_dict).
_LATER = {"max_bucket": 256, "component_rounds": 12}
# The declaration of every DedupParams field.
PARAMS = settings.Section(settings.dataclass_settings(DedupParams), checks=(_check_embedder,))


def from_config(section, prefix: str = "data.dedup.") -> DedupParams:
  """The settings of a `data.dedup` config section (validated; errors name `prefix` + key).

  Args:
    section: the section (a ConfigDict or a mapping with the DedupParams keys).
    prefix: how error messages name the section's keys.

  Returns:
    DedupParams.
  """
  # A record written by `as_dict` may leave out settings at their default (`_LATER`).
  values = {f.name: section[f.name] for f in dataclasses.fields(DedupParams)
            if f.name != "seed" and (f.name not in _LATER or f.name in section)}
  values["levels"] = tuple(values["levels"])
  try:
    return DedupParams(**values)
  except ValueError as e:
    raise ValueError(f"{prefix}{e}") from None
