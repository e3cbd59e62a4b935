"""Decontamination settings: one frozen record for the index, the scanner and every front end.

Defaults follow OLMo 3's decon (design.md section 4). Why each is what it is:
  ngram 5                  question n-grams in the lookup index.
  sample_stride 1          look up every k-th document n-gram (1 = all); larger
                           is faster but needs longer untouched stretches to
                           find an item.
  overlap_ngram 3          decides which question tokens a document window
                           covers when scoring overlap.
  threshold 0.8            IDF-weighted (or plain) fraction of question tokens
                           that must be covered to call an item contaminated.
  weighting "idf"          or "uniform" token weights for the overlap. IDF is
                           relative: log(items / items with the word) /
                           log(items), so a word of a single item weighs 1
                           however many benchmarks are indexed.
  short_len 20             questions of at most this many tokens need an exact
                           match (or one changed token, see `edit_min_tokens`).
  min_info 1.85            summed weight below which a verbatim short question
                           is too generic to count alone ("Which of the
                           following is true?", "What causes sound?"): it also
                           needs its answer or passage nearby. About two words
                           of a single item (the former 20 nats at the full
                           suite's 45,878 items); with relative IDF the same
                           question is judged the same whether one benchmark
                           or all are indexed.
  answer_window 64         tokens after the question searched for the answer,
                           plus five times the answer's length: room for the
                           other options of a multiple-choice list, each about
                           as long as the answer.
  answer_threshold 0.8     fraction of answer tokens that must be covered.
  assisted_threshold 0.6   lower question threshold that suffices when the
                           answer (or passage) is found too.
  min_span_ratio 0.6       the matched document text must span at least this
                           fraction of the question's token count.
  passage_ngram 4          n-gram length for passage overlap.
  passage_threshold 0.5    fraction of passage n-grams found near the question
                           that supports a passage item.
  max_ngram_items 32       an index n-gram shared by more items is boilerplate:
                           it is dropped (unless it is an item's rarest one),
                           and tokens that only such n-grams cover weigh
                           nothing (a prompt shared by hundreds of MMLU items
                           is evidence for none of them).
  min_question_tokens 3    a question with fewer tokens ("Osteoclasts") says
                           nothing alone; its answer becomes the key, and the
                           question must appear just before it.
  answer_key_tokens 16     a free-form answer (no choices, no passage: worked
                           solutions, code) of at least this many tokens can
                           be a lookup key too, so a solution leaked without
                           its question is found (rule "answer"); it is
                           matched like a question, with IDF weights over
                           such answers.
  answer_min_info 1.5      ...but only when it is distinctive: the rarity
                           against ordinary code (`background.py`: relative
                           IDF over the standard library's files) of its
                           distinct tokens sums to at least this. Its
                           information, not its length: a textbook Fibonacci
                           (HumanEval/55, 1.1) or prime check (HumanEval/31,
                           1.0) is every tutorial's code, a worked GSM8K
                           solution (median 10) or HumanEval/8 with its
                           `sum_value`/`prod_value` (1.9) is not. Chosen on
                           the robustness suite's tune split: about the
                           information of a typical textbook function body
                           (median 1.45 there). 0 turns the check off.
  edit_min_tokens 8        a short question of at least this many tokens still
                           matches with one token replaced or deleted, but only
                           with its answer (or passage) nearby, only if the
                           changed token carries at most 1 - `threshold` of the
                           question's weight and is no number: alone, or with
                           its gist changed ("seventh" president, field Z_7 or
                           Z_11), it is another question. Questions shorter
                           than 2 * `ngram` are also looked up by their
                           (ngram - 1)-grams, which one edit cannot all break.
  partial_len 20           a verbatim run of at least this many tokens of a
                           long key, with at least `min_info` of information,
                           counts alone like a whole short question: partial
                           quotes and items split over two documents.
  min_hit_fraction 0.2     a long key is verified only where at least this
                           fraction of its indexed n-grams (divided by
                           `sample_stride`) occur. A phrase or two shared with
                           an item is almost always ordinary text (code idioms
                           in particular), and verifying those dominated the
                           scan time; the rules above need far more of the
                           key. 0 verifies every hit.
"""
import dataclasses

from midtrain_jax.decontam import hashing

WEIGHTINGS = ("idf", "uniform")


@dataclasses.dataclass(frozen=True)
class DecontamParams:
  """Matching rules (see the module docstring for the defaults)."""
  ngram: int = 5                    # Question n-gram length in the lookup index.
  sample_stride: int = 1            # Look up every k-th document n-gram.
  overlap_ngram: int = 3            # N-gram length that decides covered question tokens.
  threshold: float = 0.8            # Covered question weight that calls an item found.
  weighting: str = "idf"            # Token weights: "idf" (relative) or "uniform".
  short_len: int = 20               # Questions this short need an exact (or one-edit) match.
  min_info: float = 1.85            # Weight below which a short question needs support.
  answer_window: int = 64           # Tokens after the question searched for its answer.
  answer_threshold: float = 0.8     # Covered fraction of answer tokens.
  assisted_threshold: float = 0.6   # Question threshold when the answer or passage is found.
  min_span_ratio: float = 0.6       # Matched span length over question length, at least.
  passage_ngram: int = 4            # N-gram length for passage overlap.
  passage_threshold: float = 0.5    # Passage n-grams found near the question, at least.
  max_ngram_items: int = 32         # Items sharing an n-gram beyond which it is boilerplate.
  min_question_tokens: int = 3      # Shorter questions are looked up by their answer.
  answer_key_tokens: int = 16       # Free-form answers this long can be lookup keys too,
  answer_min_info: float = 1.5      # if their tokens' rarity in ordinary code sums to this.
  edit_min_tokens: int = 8          # Short questions this long still match with one edit.
  partial_len: int = 20             # Verbatim run of a long key that counts alone.
  min_hit_fraction: float = 0.2     # Share of a long key's n-grams needed to verify it.

  def __post_init__(self):
    if self.weighting not in WEIGHTINGS:
      raise ValueError(f"weighting must be 'idf' or 'uniform', not "
                       f"{self.weighting!r}")
    if not 2 <= self.ngram <= hashing.MAX_NGRAM:
      raise ValueError(f"ngram must be in 2..{hashing.MAX_NGRAM}: {self.ngram}")
    if self.answer_min_info < 0:
      raise ValueError(f"answer_min_info must be >= 0: {self.answer_min_info}")
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"threshold must be in (0, 1]: {self.threshold}")
    if not 0.0 <= self.min_hit_fraction <= 1.0:
      raise ValueError(f"min_hit_fraction must be in [0, 1]: "
                       f"{self.min_hit_fraction}")


def from_overrides(**overrides) -> DecontamParams:
  """The defaults with `overrides` applied; fails on a name that is no setting."""
  unknown = set(overrides) - {f.name for f in dataclasses.fields(DecontamParams)}
  if unknown:
    raise ValueError(f"Unknown decontamination parameter(s): "
                     f"{sorted(unknown)}")
  return DecontamParams(**overrides)
