"""The suite's documents of one split: items planted with each edit, and clean text."""
import dataclasses
import hashlib
import random
from collections.abc import Sequence

from benchmarks.decontam_harness import edits, math_tutorial, splits, textbook


@dataclasses.dataclass(frozen=True)
class Case:
  """One document of the suite.

  Attributes:
    kind: edit kind, or clean-text kind ("clean_...").
    benchmark: the planted item's benchmark (clean text: its source).
    item_id: the planted item's id; empty for clean text.
    text: the document.
  """
  kind: str
  benchmark: str
  item_id: str
  text: str

  @property
  def planted(self) -> bool:
    return bool(self.item_id)


def _rng(*key) -> random.Random:
  return random.Random(hashlib.sha256(repr(key).encode()).digest())


def make_cases(items_by_benchmark: dict[str, Sequence], ctx: edits.Context,
               role: str = "test", per_kind: int = 50,
               kinds: Sequence[str] = tuple(edits.EDITS), seed: int = 0,
               clean_fraction: float = 0.1) -> list[Case]:
  """Planted documents for the items of one role.

  Args:
    items_by_benchmark: {benchmark: all its items}.
    ctx: ordinary text to plant into (`boilerplate` is computed if unset).
    role: "tune" or "test".
    per_kind: at most this many items per (benchmark, kind).
    kinds: names of `edits.EDITS`.
    seed: split and sampling seed.
    clean_fraction: share of items held out as clean text.

  Returns:
    Cases in a deterministic order.
  """
  roles = splits.split_items(items_by_benchmark, seed, clean_fraction)
  if ctx.boilerplate is None:
    ctx = dataclasses.replace(ctx, boilerplate=splits.boilerplate_runs(
        items_by_benchmark))
  cases = []
  for name, its in roles[role].items():
    for kind in kinds:
      rng = _rng(seed, role, name, kind)
      made = 0
      for i in rng.sample(range(len(its)), len(its)):
        if made == per_kind:
          break
        text = edits.EDITS[kind](its[i], rng, ctx)
        if text is not None:
          cases.append(Case(kind, name, its[i].id, text))
          made += 1
  return cases


def clean_cases(items_by_benchmark: dict[str, Sequence], ctx: edits.Context,
                extra: dict[str, Sequence[str]], split: str = "test",
                per_kind: int = 50, seed: int = 0,
                clean_fraction: float = 0.1) -> list[Case]:
  """Clean near-topic documents of one split: held-out items, `extra` texts.

  Args:
    items_by_benchmark: {benchmark: all its items}; each one's clean pool of
      the split, minus copies of indexed items, is rendered like leaks.
    ctx: ordinary text to put the held-out items into.
    extra: {kind: documents}, e.g. synthetic math problems, program traces,
      web pages; those of the split (`text_split`) are sampled.
    split: "tune" or "test".
    per_kind: at most this many documents per benchmark pool or extra kind.
    seed: split and sampling seed.
    clean_fraction: share of items held out as clean text.

  Returns:
    Cases with empty item ids.
  """
  roles = splits.split_items(items_by_benchmark, seed, clean_fraction)
  indexed = {name: roles["tune"][name] + roles["test"][name]
             for name in items_by_benchmark}
  cases = []
  for name, its in splits.drop_copies(roles[f"clean_{split}"], indexed).items():
    rng = _rng(seed, "clean", split, name)
    for it in rng.sample(its, min(per_kind, len(its))):
      text = edits.clean_item(it, rng, ctx)
      if text is not None:
        cases.append(Case("clean_items", name, "", text))
  for kind, docs in extra.items():
    rng = _rng(seed, "clean", split, kind)
    docs = [d for d in docs if splits.text_split(d, seed) == split]
    for doc in rng.sample(docs, min(per_kind, len(docs))):
      cases.append(Case(kind, kind, "", doc))
  return cases


def educational_cases(split: str = "test", per_kind: int = 100, seed: int = 0) -> list[Case]:
  """Clean educational documents of one split: textbook code, utilities, tutorials.

  Textbook functions, utility modules, code tutorials (`textbook.py`) and
  math lessons (`math_tutorial.py`) look like benchmark solutions without
  being any. Their families and topics are split by name, so the test half
  holds exercises the rules were never chosen on.

  Args:
    split: "tune" or "test".
    per_kind: documents per kind.
    seed: split and rendering seed.

  Returns:
    Cases with empty item ids, kind = source = the document kind.
  """
  docs = textbook.documents(split, per_kind, seed)
  docs.update(math_tutorial.documents(split, per_kind, seed))
  return [Case(kind, kind, "", doc) for kind, texts in docs.items() for doc in texts]
