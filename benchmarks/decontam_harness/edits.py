"""The edit kinds: how a leaked item looks in training text.

Each kind is a function (item, rng, ctx) -> document or None (the kind
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
                      16+ words) without its question: found, unless it says
                      no more than textbook code does (HumanEval's Fibonacci
                      is every tutorial's); those cannot be told from
                      ordinary text and are the kind's misses.
  answer_separated    question, 30..120 words of unrelated text, then the
                      answer: found.

Clean near-topic text: held-out items rendered like leaks (`clean_item`).
"""
import dataclasses
import random
import re
from collections.abc import Callable, Sequence

import numpy as np

from benchmarks.decontam_harness import plain_words
from benchmarks.decontam_harness.plain_words import COPY_WORDS

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
  if plain_words.n_words(item.question) < 3:
    return None
  lead = rng.choice(["", "Someone asked this online: ", "Here is a question. "])
  return _plant(rng.choice(ctx.web), lead + item.question, rng)


def short_substitution(item, rng, ctx):
  """A short question with one word replaced, then its choices and answer."""
  if not SHORT_WORDS[0] <= plain_words.n_words(item.question) <= SHORT_WORDS[1]:
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
  ids = plain_words.word_ids(text)
  table = ctx.boilerplate
  if ids.size < COPY_WORDS or table is None or not table.size:
    return int(ids.size)
  shared = plain_words.member(plain_words.run_hashes(ids, COPY_WORDS), table)
  covered = np.zeros(ids.size, bool)
  for j in range(COPY_WORDS):
    covered[j:j + shared.size] |= shared
  return int(np.count_nonzero(~covered))


def _long_halves(item, ctx: Context) -> tuple[str, str] | None:
  """The halves of a long question, if each identifies the item alone."""
  if plain_words.n_words(item.question) < LONG_WORDS:
    return None
  halves = plain_words.halves(item.question)
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
      or plain_words.n_words(item.answer) < ANSWER_WORDS):
    return None
  answer = item.answer
  if item.benchmark == "gsm8k" and rng.random() < 0.5:
    answer = _strip_calculator(answer, rng)
  elif item.benchmark == "humaneval" and rng.random() < 0.5:
    answer = f"{_signature(item.question)}\n{answer}"  # Without the docstring.
  return _plant(_host(ctx, item, rng), answer, rng)


def answer_separated(item, rng, ctx):
  """Question, 30..120 words of unrelated text, then the answer."""
  if plain_words.n_words(item.question) < 3:
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
