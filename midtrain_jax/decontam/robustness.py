"""Held-out robustness suite for the decontaminator: real items, realistic edits.

Real benchmark items are planted into ordinary text the ways leaks happen in
training data. Each item gets a fixed role from a hash of its benchmark and
id, so the split never depends on which items were sampled or in what order:

  tune: the items matching rules may be chosen on;
  test: the items recall is reported on;
  clean_tune, clean_test (`clean_fraction` together): held out of the
        suite's index; rendered like leaks they are near-topic text that is
        NOT contamination (other math word problems, other Python functions,
        other quiz questions). Clean documents of the demo corpus are split
        in two halves the same way, by a hash of the text.

The suite's index holds every item of the indexed benchmarks except the clean
pool, so word weights are those of a production index.

Edit kinds, each a function (item, rng, ctx) -> document or None (the kind
does not apply to the item), and what the decontaminator should do:

  web_question        the question alone (no choices, no answer) in a web
                      page: found, unless it is too generic to count alone
                      ("What causes sound?"); those need their answer.
  short_substitution  one plain word replaced in an 8..20-word question, the
                      choices and answer after it: found when the word is not
                      the gist of the question (a changed "oligopoly" or
                      "seventh" makes another question). Without its answer a
                      one-word change to a short question need not be found.
  numbers_latex       LaTeX and numbers as plain text copies write them
                      (\\frac{a}{b} -> a/b, x^2 -> x², 1,000 -> 1000): found.
  chat_template       question and answer as a turn of a chat transcript.
  partial_quote       the first half of a 40+ word question alone: found, if
                      that half identifies the item (20+ words no other item
                      shares: not just the MMLU moral-scenarios prompt).
  split_first,        an item split over two documents, each judged alone:
  split_second        the first half of the question; the second half and
                      the answer. Each half is a partial quote: both found.
  answer_only         a worked solution or code (GSM8K, MATH, MBPP, HumanEval;
                      16+ words) without its question: found.
  answer_separated    question, 30..120 words of unrelated text, then the
                      answer: found.

Texts are measured in the suite's own plain words (runs of letters and
digits, LaTeX commands left out), never with the tokenizer under test. Pure
Python and numpy.
"""

import dataclasses
import functools
import hashlib
import os
import random
import re
from collections.abc import Callable, Sequence

import numpy as np

from midtrain_jax import cache
from midtrain_jax.benchmark_data import items as benchmark_items
from midtrain_jax.decontam import index as index_lib

SPLITS = ("tune", "test")
# Planted items of a split, and held-out clean-pool items of a split.
ROLES = ("tune", "test", "clean_tune", "clean_test")
# Questions of at least this many words are long: their halves are the
# partial quotes and the split-document cases.
LONG_WORDS = 40
# Word substitutions go into questions of this many words. Below 8, one
# changed word mostly makes another question ("capital of France/Spain").
SHORT_WORDS = (8, 20)
# Answer-only leaks: solutions of at least this many words. Shorter ones
# (`return len(string)`) are everyday code.
ANSWER_WORDS = 16
ANSWER_BENCHMARKS = ("gsm8k", "math", "mbpp", "humaneval")
CODE_BENCHMARKS = ("mbpp", "humaneval")
# Text shared over this many words is a copy, not a coincidence (13-grams
# as in GPT-3's decontamination).
COPY_WORDS = 13

# Words a one-word edit puts in: common, so they carry no information.
_REPLACEMENTS = ("thing", "place", "house", "water", "people", "small", "large",
                 "green", "morning", "simple", "answer", "number", "school",
                 "garden", "story", "little", "happy", "market", "window")
_CHAT_TEMPLATES = (
    "<|user|>\n{q}\n<|assistant|>\n{a}",
    "<s>[INST] {q} [/INST] {a}</s>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>",
    "<start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n{a}"
    "<end_of_turn>",
    "### Instruction:\n{q}\n\n### Response:\n{a}",
    "User: {q}\nAssistant: {a}",
)


# ------------------------------------------------------------ plain words

# LaTeX commands are matched only to be skipped: markup, not words.
_WORD = re.compile(r"\\[A-Za-z]+|[^\W_]+")
_VOCAB: dict[str, int] = {}  # Word -> id, shared by all calls.


def _word_matches(text: str) -> list[re.Match]:
  return [m for m in _WORD.finditer(text) if m[0][0] != "\\"]


@functools.lru_cache(maxsize=1 << 17)
def _words(text: str) -> np.ndarray:
  """Ids of the lower-cased words (runs of letters and digits) of `text`."""
  ids = [_VOCAB.setdefault(m[0].lower(), len(_VOCAB))
         for m in _word_matches(text)]
  return np.array(ids, dtype=np.uint64)


def _n_words(text: str) -> int:
  return int(_words(text).size)


def _runs(ids: np.ndarray, length: int) -> np.ndarray:
  """A 64-bit hash of every run of `length` consecutive words."""
  count = ids.size - length + 1
  if count <= 0:
    return np.zeros(0, np.uint64)
  acc = np.zeros(count, np.uint64)
  for j in range(length):
    acc = acc * np.uint64(0x100000001B3) + ids[j:j + count] + np.uint64(1)
  return acc ^ (acc >> np.uint64(29))


def _halves(text: str) -> tuple[str, str]:
  """`text` cut before its middle word."""
  starts = [m.start() for m in _word_matches(text)]
  cut = starts[len(starts) // 2] if starts else len(text)
  return text[:cut].rstrip(), text[cut:]


# ------------------------------------------------------------------ setup


@dataclasses.dataclass(frozen=True)
class Context:
  """What edits draw on besides the item.

  Attributes:
    web: prose (web pages, encyclopedia text) that items are planted into.
    code: Python source, for code items.
    boilerplate: sorted hashes of the 13-word runs that questions of several
      items share (MMLU prompts and passages, MATH figures): text that
      identifies no single item. `make_cases` fills it in.
  """
  web: Sequence[str]
  code: Sequence[str]
  boilerplate: np.ndarray | None = None


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


def _unit(*key) -> float:
  """A number in [0, 1) from a hash of `key`: the same on every machine."""
  digest = hashlib.sha256(":".join(map(str, key)).encode()).digest()
  return int.from_bytes(digest[:8], "little") / 2.0**64


def item_role(benchmark: str, item_id: str, seed: int = 0,
              clean_fraction: float = 0.1) -> str:
  """Returns one of `ROLES` for an item, from a hash of its id."""
  u = _unit(seed, benchmark, item_id)
  if u < clean_fraction:
    return "clean_tune" if u < clean_fraction / 2 else "clean_test"
  return "tune" if u < clean_fraction + (1.0 - clean_fraction) / 2 else "test"


def text_split(text: str, seed: int = 0) -> str:
  """Returns "tune" or "test" for a clean document, from a hash of it."""
  return SPLITS[_unit(seed, hashlib.sha256(text.encode()).hexdigest()) >= 0.5]


def split_items(items_by_benchmark: dict[str, Sequence], seed: int = 0,
                clean_fraction: float = 0.1) -> dict[str, dict[str, list]]:
  """Returns {role: {benchmark: items}} with `item_role`'s roles."""
  out = {role: {name: [] for name in items_by_benchmark} for role in ROLES}
  for name, its in items_by_benchmark.items():
    for it in its:
      out[item_role(name, it.id, seed, clean_fraction)][name].append(it)
  return out


def suite_index(index_names: Sequence[str], planted_names: Sequence[str],
                params: index_lib.DecontamParams, seed: int = 0,
                clean_fraction: float = 0.1, cache_dir: str | None = None
                ) -> index_lib.BenchmarkIndex:
  """The index the suite scans with: all items but the clean pool (cached).

  Args:
    index_names: benchmarks in the index (production indexes all of them).
    planted_names: benchmarks whose clean pool is held out.
    params: matching rules.
    seed: split seed.
    clean_fraction: share of each planted benchmark held out as clean text.
    cache_dir: cache root; defaults to `cache.cache_root()`.

  Returns:
    The index, built once per configuration and then loaded.
  """
  key = "|".join([benchmark_items.source_fingerprint(index_names),
                  ",".join(index_names), ",".join(planted_names),
                  repr(dataclasses.astuple(params)), f"seed{seed}",
                  f"clean{clean_fraction}", f"format{index_lib.INDEX_FORMAT}"])
  digest = hashlib.sha1(key.encode()).hexdigest()[:16]
  root = cache_dir or str(cache.cache_root())
  path = os.path.join(root, "decontam", f"robustness-{digest}.npz")
  if os.path.exists(path):
    return index_lib.BenchmarkIndex.load(path, params)
  items = {}
  for name in index_names:
    its = benchmark_items.load_items(name, cache_dir)
    if name in planted_names:
      its = [it for it in its
             if item_role(name, it.id, seed, clean_fraction) in SPLITS]
    items[name] = its
  index = index_lib.build_index(items, params)
  index.save(path)
  return index


# -------------------------------------------------------------- rendering


def _plant(host: str, snippet: str, rng: random.Random, max_chars=3000) -> str:
  """Puts `snippet` at a line or sentence break of (a window of) `host`."""
  if len(host) > max_chars:
    start = rng.randrange(len(host) - max_chars)
    host = host[start:start + max_chars]
  breaks = [m.end() for m in re.finditer(r"\n|(?<=[.!?]) ", host)]
  cut = rng.choice(breaks) if breaks else len(host)
  return f"{host[:cut]}\n{snippet}\n{host[cut:]}"


def _host(ctx: Context, item, rng: random.Random) -> str:
  code = item.benchmark in CODE_BENCHMARKS and ctx.code
  return rng.choice(ctx.code if code else ctx.web)


def _options(item) -> str:
  return "\n".join(f"{'ABCDEFGHIJ'[i]}. {c}" for i, c in enumerate(item.choices))


def _with_choices(item, rng: random.Random) -> str:
  """The question as a quiz shows it: with its options half of the time."""
  if item.choices and rng.random() < 0.5:
    return f"{item.question}\n{_options(item)}"
  return item.question


def _qa(question: str, answer: str, rng: random.Random) -> str:
  return rng.choice([f"Question: {question}\nAnswer: {answer}",
                     f"{question}\n\n{answer}",
                     f"Q: {question}\nThe answer is {answer}."])


def _filler(ctx: Context, rng: random.Random, low: int, high: int) -> str:
  """`low`..`high` consecutive words of a random web document."""
  words = rng.choice(ctx.web).split()
  n = rng.randint(low, high)
  start = rng.randrange(max(1, len(words) - n))
  return " ".join(words[start:start + n])


_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_TEXT = re.compile(r"\\(?:text|textbf|mbox|mathrm|mathbf|boxed)\s*\{([^{}]*)\}")
_SUPER = re.compile(r"\^\{?([23])\}?")
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
_BIG = re.compile(r"(?<![\d.,])\d{4,}(?![\d,.])")


def _group(s: str) -> str:
  s = s.strip()
  return s if re.fullmatch(r"[\w.]+", s) else f"({s})"


def reformat_math(text: str, rng: random.Random) -> str:
  """Rewrites LaTeX and numbers the ways plain-text copies show them.

  \\frac{a}{b} -> a/b; \\sqrt{x} -> √x or sqrt(x); x^2 -> x² (half of the
  time); \\cdot, \\times -> *, ·, × or x; \\le -> ≤ or <=; \\pi -> π or pi;
  \\text{cm} -> cm; \\left( -> (; dollars dropped; 1,000 -> 1000 and
  25000 -> 25,000 (half of the time).

  Args:
    text: an item's question or answer.
    rng: chooses between equivalent spellings.

  Returns:
    The rewritten text (`text` itself when nothing applies).
  """
  pick = lambda *options: (lambda m: rng.choice(options))
  for _ in range(4):  # Nested fractions: innermost first.
    text = _FRAC.sub(lambda m: f"{_group(m[1])}/{_group(m[2])}", text)
    text = _TEXT.sub(lambda m: m[1], text)
  text = _SQRT.sub(lambda m: rng.choice(["√" + _group(m[1]), f" sqrt({m[1]})"]),
                   text)
  text = _SUPER.sub(lambda m: rng.choice([{"2": "²", "3": "³"}[m[1]],
                                          "^" + m[1]]), text)
  text = re.sub(r"\\cdot\b", pick("*", "·", " * "), text)
  text = re.sub(r"\\times\b", pick("×", "*", " x "), text)
  text = re.sub(r"\\div\b", pick("÷", "/"), text)
  text = re.sub(r"\\leq?\b", pick("≤", "<="), text)
  text = re.sub(r"\\geq?\b", pick("≥", ">="), text)
  text = re.sub(r"\\neq?\b", pick("≠", "!="), text)
  text = re.sub(r"\\pi\b", pick("π", "pi"), text)
  text = re.sub(r"\\infty\b", pick("∞", "infinity"), text)
  text = re.sub(r"\\(?:left|right|displaystyle|quad|qquad)(?![A-Za-z])|\\[,;!]",
                "", text)
  text = text.replace("\\$", "\x00").replace("$", "").replace("\x00", "$")
  text = text.replace("\\%", "%").replace("{,}", ",")
  text = _THOUSANDS.sub(lambda m: m[0].replace(",", ""), text)
  return _BIG.sub(lambda m: f"{int(m[0]):,}" if rng.random() < 0.5 else m[0],
                  text)


# ------------------------------------------------------------------ edits


def web_question(item, rng, ctx):
  """The question alone (no choices, no answer) in a web page."""
  if _n_words(item.question) < 3:
    return None
  lead = rng.choice(["", "Someone asked this online: ", "Here is a question. "])
  return _plant(rng.choice(ctx.web), lead + item.question, rng)


def short_substitution(item, rng, ctx):
  """A short question with one word replaced, then its choices and answer."""
  if not SHORT_WORDS[0] <= _n_words(item.question) <= SHORT_WORDS[1]:
    return None
  words = item.question.split(" ")
  # Plain words only: an edited formula is the numbers_latex kind.
  slots = [i for i, w in enumerate(words)
           if re.fullmatch(r"[A-Za-z]{3,}[,.?:;]?", w)]
  if not slots:
    return None
  i = rng.choice(slots)
  word = rng.choice([r for r in _REPLACEMENTS
                     if r not in item.question.lower()])
  words[i] = re.sub(r"[A-Za-z]+", word, words[i])
  question = " ".join(words)
  if item.choices:
    question += "\n" + _options(item)
  return _plant(_host(ctx, item, rng), _qa(question, item.answer, rng), rng)


def numbers_latex(item, rng, ctx):
  """Question (half of the time with its answer) in plain-text math."""
  question = reformat_math(item.question, rng)
  if question == item.question:
    return None
  if rng.random() < 0.5:
    snippet = question
  else:
    snippet = _qa(question, reformat_math(item.answer, rng), rng)
  return _plant(rng.choice(ctx.web), snippet, rng)


def chat_template(item, rng, ctx):
  """Question and answer as one turn of a chat transcript."""
  template = rng.choice(_CHAT_TEMPLATES)
  turn = template.format(q=_with_choices(item, rng), a=item.answer)
  if rng.random() < 0.5:  # An earlier, unrelated turn of the same chat.
    turn = template.format(q="Can you summarise this text?",
                           a=_filler(ctx, rng, 40, 120)) + "\n" + turn
  return turn


def _specific_words(text: str, ctx: Context) -> int:
  """Words of `text` outside every boilerplate run of `ctx`."""
  ids = _words(text)
  table = ctx.boilerplate
  if ids.size < COPY_WORDS or table is None or not table.size:
    return int(ids.size)
  shared = _member(_runs(ids, COPY_WORDS), table)
  covered = np.zeros(ids.size, bool)
  for j in range(COPY_WORDS):
    covered[j:j + shared.size] |= shared
  return int(np.count_nonzero(~covered))


def _long_halves(item, ctx: Context) -> tuple[str, str] | None:
  """The halves of a long question, if each identifies the item alone."""
  if _n_words(item.question) < LONG_WORDS:
    return None
  halves = _halves(item.question)
  if min(_specific_words(h, ctx) for h in halves) < LONG_WORDS // 2:
    return None
  return halves


def partial_quote(item, rng, ctx):
  """The first half of a long question, nothing else."""
  halves = _long_halves(item, ctx)
  return halves and _plant(_host(ctx, item, rng), halves[0], rng)


def split_first(item, rng, ctx):
  """First of two documents an item is split over: its question's first half."""
  return partial_quote(item, rng, ctx)


def split_second(item, rng, ctx):
  """Second of the two: the question's second half and the answer."""
  halves = _long_halves(item, ctx)
  return halves and _plant(_host(ctx, item, rng),
                           f"{halves[1]}\n{item.answer}", rng)


def _strip_calculator(solution: str, rng: random.Random) -> str:
  """A GSM8K solution as web pages show it: no <<a*b=c>> annotations."""
  solution = re.sub(r"<<[^<>]*>>", "", solution)
  return re.sub(r"####\s*(.*)$", rng.choice(["The answer is \\1.", "Answer: \\1",
                                             "#### \\1"]), solution)


def _signature(prompt: str) -> str:
  """The last `def ...:` line of a HumanEval prompt."""
  defs = re.findall(r"^def .*:\s*$", prompt, flags=re.M)
  return defs[-1] if defs else ""


def answer_only(item, rng, ctx):
  """A worked solution or code without its question."""
  if (item.benchmark not in ANSWER_BENCHMARKS
      or _n_words(item.answer) < ANSWER_WORDS):
    return None
  answer = item.answer
  if item.benchmark == "gsm8k" and rng.random() < 0.5:
    answer = _strip_calculator(answer, rng)
  elif item.benchmark == "humaneval" and rng.random() < 0.5:
    answer = f"{_signature(item.question)}\n{answer}"  # Without the docstring.
  return _plant(_host(ctx, item, rng), answer, rng)


def answer_separated(item, rng, ctx):
  """Question, 30..120 words of unrelated text, then the answer."""
  if _n_words(item.question) < 3:
    return None
  snippet = f"{item.question}\n{_filler(ctx, rng, 30, 120)}\nAnswer: {item.answer}"
  return _plant(rng.choice(ctx.web), snippet, rng)


EDITS: dict[str, Callable] = {f.__name__: f for f in (
    web_question, short_substitution, numbers_latex, chat_template,
    partial_quote, split_first, split_second, answer_only, answer_separated)}


# ------------------------------------------------------------- clean text


def _qa_with_choices(item, rng, ctx):
  return _plant(_host(ctx, item, rng),
                _qa(_with_choices(item, rng), item.answer, rng), rng)


def clean_item(item, rng, ctx):
  """A held-out item rendered like a leak: near-topic text that is clean."""
  renders = [web_question, chat_template, _qa_with_choices]
  if item.benchmark in ANSWER_BENCHMARKS:
    renders.append(answer_only)
  return rng.choice(renders)(item, rng, ctx)


def _row_runs(rows: Sequence[np.ndarray], length: int):
  """(run hashes, row of each run) for the runs inside rows, all at once."""
  lengths = np.array([r.size for r in rows], np.int64)
  runs = _runs(np.concatenate(list(rows) + [np.zeros(0, np.uint64)]), length)
  row_of = np.repeat(np.arange(lengths.size), lengths)[:runs.size]
  inside = np.arange(runs.size) + length <= np.cumsum(lengths)[row_of]
  return runs[inside], row_of[inside]


def _member(values: np.ndarray, table: np.ndarray) -> np.ndarray:
  """Which values a sorted table holds."""
  if not table.size:
    return np.zeros(values.size, bool)
  return table[np.minimum(np.searchsorted(table, values), table.size - 1)] == values


def boilerplate_runs(items_by_benchmark: dict[str, Sequence]) -> np.ndarray:
  """Sorted hashes of the 13-word runs that questions of 2+ items share."""
  rows = [_words(it.question) for its in items_by_benchmark.values()
          for it in its]
  runs, row_of = _row_runs(rows, COPY_WORDS)
  # Count each run once per question, so a count is a number of items.
  order = np.lexsort((row_of, runs))
  runs, row_of = runs[order], row_of[order]
  first = np.r_[True, (runs[1:] != runs[:-1]) | (row_of[1:] != row_of[:-1])]
  runs = runs[first]
  shared = np.r_[runs[1:] == runs[:-1], False]
  return np.unique(runs[shared])


def _within_one_edit(a: np.ndarray, b: np.ndarray) -> bool:
  """Whether word sequences differ by at most one substitution or indel."""
  if abs(a.size - b.size) > 1:
    return False
  if a.size < b.size:
    a, b = b, a
  m = b.size
  bad = np.flatnonzero(a[:m] != b)
  prefix = int(bad[0]) if bad.size else m
  bad = np.flatnonzero(a[::-1][:m] != b[::-1])
  suffix = int(bad[0]) if bad.size else m
  return prefix + suffix >= a.size - 1


def drop_copies(pool: dict[str, list], indexed: dict[str, Sequence]
                ) -> dict[str, list]:
  """Removes clean-pool items that copy indexed benchmark text.

  A held-out item is not clean when it shares a 13-word run with an indexed
  question or answer (MMLU items share passages and prompts, MATH items
  share [asy] figures), holds a shorter indexed question whole, or has an
  indexed item's answer and its question but for one word (ARC repeats items
  with a typo fixed): a copy of an indexed item is contamination, whatever
  its id.
  """
  questions = [_words(it.question) for its in indexed.values() for it in its]
  answers = [_words(it.answer) for its in indexed.values() for it in its]
  items = [(name, it) for name, its in pool.items() for it in its]
  pool_rows = ([_words(it.question) for _, it in items],
               [_words(it.answer) for _, it in items])
  copied = np.zeros(len(items), bool)
  # Shared 13-word runs; shorter questions whole. A short answer ("None of
  # the above") is everyday text, a short question is not.
  tables = {COPY_WORDS: _row_runs(questions + answers, COPY_WORDS)[0]}
  for size in range(3, COPY_WORDS):
    whole = [q for q in questions if q.size == size]
    if whole:
      tables[size] = _row_runs(whole, size)[0]
  for size, table in tables.items():
    table = np.sort(table)
    for rows in pool_rows:
      runs, row_of = _row_runs(rows, size)
      copied[row_of[_member(runs, table)]] = True
  by_answer: dict[bytes, list] = {}
  for q, a in zip(questions, answers):
    by_answer.setdefault(a.tobytes(), []).append(q)
  for i, (q, a) in enumerate(zip(*pool_rows)):
    copied[i] |= any(_within_one_edit(q, other)
                     for other in by_answer.get(a.tobytes(), ()))
  out = {name: [] for name in pool}
  for (name, it), bad in zip(items, copied):
    if not bad:
      out[name].append(it)
  return out


# ------------------------------------------------------------------ cases


def _rng(*key) -> random.Random:
  return random.Random(hashlib.sha256(repr(key).encode()).digest())


def make_cases(items_by_benchmark: dict[str, Sequence], ctx: Context,
               role: str = "test", per_kind: int = 50,
               kinds: Sequence[str] = tuple(EDITS), seed: int = 0,
               clean_fraction: float = 0.1) -> list[Case]:
  """Planted documents for the items of one role.

  Args:
    items_by_benchmark: {benchmark: all its items}.
    ctx: ordinary text to plant into (`boilerplate` is computed if unset).
    role: "tune" or "test".
    per_kind: at most this many items per (benchmark, kind).
    kinds: names of `EDITS`.
    seed: split and sampling seed.
    clean_fraction: share of items held out as clean text.

  Returns:
    Cases in a deterministic order.
  """
  roles = split_items(items_by_benchmark, seed, clean_fraction)
  if ctx.boilerplate is None:
    ctx = dataclasses.replace(ctx, boilerplate=boilerplate_runs(
        items_by_benchmark))
  cases = []
  for name, its in roles[role].items():
    for kind in kinds:
      rng = _rng(seed, role, name, kind)
      made = 0
      for i in rng.sample(range(len(its)), len(its)):
        if made == per_kind:
          break
        text = EDITS[kind](its[i], rng, ctx)
        if text is not None:
          cases.append(Case(kind, name, its[i].id, text))
          made += 1
  return cases


def clean_cases(items_by_benchmark: dict[str, Sequence], ctx: Context,
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
  roles = split_items(items_by_benchmark, seed, clean_fraction)
  indexed = {name: roles["tune"][name] + roles["test"][name]
             for name in items_by_benchmark}
  cases = []
  for name, its in drop_copies(roles[f"clean_{split}"], indexed).items():
    rng = _rng(seed, "clean", split, name)
    for it in rng.sample(its, min(per_kind, len(its))):
      text = clean_item(it, rng, ctx)
      if text is not None:
        cases.append(Case("clean_items", name, "", text))
  for kind, docs in extra.items():
    rng = _rng(seed, "clean", split, kind)
    docs = [d for d in docs if text_split(d, seed) == split]
    for doc in rng.sample(docs, min(per_kind, len(docs))):
      cases.append(Case(kind, kind, "", doc))
  return cases


# ------------------------------------------------------------- evaluation


@dataclasses.dataclass
class Report:
  """Outcome of scanning the suite.

  Attributes:
    found: {(kind, benchmark): [found, total]} over planted documents.
    flagged: {(kind, source): [flagged, total]} over clean documents.
    misses: planted cases whose item was not found.
    false_hits: (clean case, its hits).
  """
  found: dict = dataclasses.field(default_factory=dict)
  flagged: dict = dataclasses.field(default_factory=dict)
  misses: list = dataclasses.field(default_factory=list)
  false_hits: list = dataclasses.field(default_factory=list)

  def recall(self, kind: str | None = None, benchmark: str | None = None
             ) -> float:
    """Share of planted documents (of a kind and/or benchmark) found."""
    return _ratio(self.found, kind, benchmark)

  def false_positive_rate(self, kind: str | None = None) -> float:
    """Share of clean documents (of a kind) with any hit."""
    return _ratio(self.flagged, kind, None)


def _ratio(table, kind, benchmark) -> float:
  rows = [v for (k, b), v in table.items()
          if kind in (None, k) and benchmark in (None, b)]
  total = sum(v[1] for v in rows)
  return sum(v[0] for v in rows) / total if total else float("nan")


def evaluate(deco, cases: Sequence[Case], batch_docs: int = 256) -> Report:
  """Scans the cases with `deco.check_batch` and tallies the outcome.

  A planted document counts as found when a hit names its item.
  """
  report = Report()
  for i in range(0, len(cases), batch_docs):
    batch = cases[i:i + batch_docs]
    for case, hits in zip(batch, deco.check_batch([c.text for c in batch])):
      if case.planted:
        ok = any(h.benchmark == case.benchmark and h.item_id == case.item_id
                 for h in hits)
        row = report.found.setdefault((case.kind, case.benchmark), [0, 0])
        if not ok:
          report.misses.append(case)
      else:
        ok = bool(hits)
        row = report.flagged.setdefault((case.kind, case.benchmark), [0, 0])
        if ok:
          report.false_hits.append((case, hits))
      row[0] += ok
      row[1] += 1
  return report


def format_report(report: Report) -> str:
  """Recall per kind x benchmark, then false positives per clean source."""
  kinds = list(dict.fromkeys(k for k, _ in report.found))
  names = list(dict.fromkeys(b for _, b in report.found))
  width = max([len(k) for k in kinds] + [20])
  lines = [" " * width + "".join(f"{n[:9]:>10}" for n in names) + "       all"]
  for kind in kinds:
    cells = [f"{report.recall(kind, n):>10.3f}" if (kind, n) in report.found
             else f"{'-':>10}" for n in names]
    total = sum(v[1] for (k, _), v in report.found.items() if k == kind)
    lines.append(f"{kind:<{width}}" + "".join(cells)
                 + f"{report.recall(kind):>10.3f}  (n={total})")
  lines.append(f"{'all':<{width}}" + "".join(
      f"{report.recall(None, n):>10.3f}" for n in names)
               + f"{report.recall():>10.3f}")
  lines.append("false positives (documents flagged / documents):")
  for (kind, source), (bad, total) in report.flagged.items():
    lines.append(f"  {kind:<{width}} {source:<14} {bad:>4} / {total}")
  return "\n".join(lines)
