"""Clean educational code: textbook functions, utilities and tutorials, rendered.

The functions of `code_families.py` get names, argument names, type hints,
docstrings (none, one line, Google style, doctest), comments and indentation
drawn per document, are run to show real outputs, and are set in documents
the ways educational code appears in training data:

  clean_textbook_code  a solutions file: one to three textbook functions,
                       sometimes with a `__main__` demo;
  clean_utility_code   a helpers module of short utility functions;
  clean_code_tutorial  a tutorial or exercise sheet: prose, the function in a
                       fenced block (often in two styles), example calls and
                       their output;
  clean_textbook_canonical  every style of every family once, with the
                       conventional names (fib, n, i, numbers) and no type
                       hints, in a tutorial: the forms most likely to be
                       written word for word the same elsewhere.

None of it is benchmark text, yet much of it is what benchmark solutions look
like (HumanEval asks for Fibonacci numbers, prime checks, sums and products).
Families are split into tune and test by a hash of their name
(`splits.text_split`), so the test half holds exercises no rule was chosen on.
"""
import keyword
import random
import re
import string
from collections.abc import Sequence

import numpy as np

from benchmarks.decontam_harness import splits
from benchmarks.decontam_harness.code_families import ARG_NAMES, FAMILIES, Family
from midtrain_jax.decontam import background as background_lib
from midtrain_jax.decontam import normalize

KINDS = ("clean_textbook_code", "clean_utility_code", "clean_code_tutorial",
         "clean_textbook_canonical")
_HINTS = {"n": ": int", "t": ": int", "xs": ": list", "s": ": str"}


def families(split: str, seed: int = 0, utility: bool | None = None) -> list[Family]:
  """The families of one split (`utility`: only utilities, only algorithms, or both)."""
  return [f for f in FAMILIES if splits.text_split(f.name, seed) == split
          and utility in (None, f.utility)]


def _names(template: str, family: Family, rng: random.Random, canonical: bool = False
           ) -> dict[str, str]:
  """Placeholder values, distinct from each other and from the template's own words.

  With `canonical`, every name is the conventional one and there are no type hints.
  """
  taken = set(re.findall(r"(?<!\$)\b[A-Za-z_]\w*", template)) | set(keyword.kwlist)
  # Textbooks mostly use the conventional names (fib, n, i, numbers, s).
  conventional = lambda options: (options[0] if canonical or rng.random() < 0.6
                                  else rng.choice(options))
  values = {"f": conventional(family.names)}
  taken.add(values["f"])
  for group in ("n", "xs", "s", "ab", "t", "i", "x", "acc"):
    options = [o for o in ARG_NAMES[group]
               if not set(o if isinstance(o, tuple) else (o,)) & taken]
    pick = conventional(options)
    if group == "ab":
      values["a"], values["b"] = pick
      taken.update(pick)
    else:
      values[group] = pick
      taken.add(pick)
  hints = not canonical and rng.random() < 0.4
  for group, hint in _HINTS.items():
    values["t" + group] = hint if hints else ""
  values["ret"] = f" -> {family.returns}" if hints and family.returns else ""
  return values


def _docstring(family: Family, calls: Sequence[tuple[str, str]], rng: random.Random,
               indent: str) -> str:
  """A docstring in one of the styles textbooks use, or none."""
  summary = family.summary[0].upper() + family.summary[1:] + "."
  style = rng.randrange(5)
  if style == 0:
    return ""
  if style == 1:
    return f'{indent}"""{summary}"""\n'
  if style == 2:
    return f"{indent}# {summary}\n"
  if style == 3:
    lines = [summary, "", "Returns:", f"    The result ({family.returns or 'value'})."]
  else:
    lines = [summary, ""] + [part for call, out in calls[:2]
                             for part in (f">>> {call}", out)]
  body = "\n".join(indent + line if line else "" for line in lines)
  return f'{indent}"""{body.lstrip()}\n{indent}"""\n'


def _run(code: str, fname: str, examples: Sequence[tuple]) -> list[tuple[str, str]]:
  """Runs the function on its examples: [(call, repr of the result)]."""
  namespace: dict = {}
  exec(compile(code, "<textbook>", "exec"), namespace)  # Our own templates.
  calls = []
  for args in examples:
    call = f"{fname}({', '.join(map(repr, args))})"
    calls.append((call, repr(namespace[fname](*[_copy(a) for a in args]))))
  return calls


def _copy(value):
  return [_copy(v) for v in value] if isinstance(value, list) else value


def function(family: Family, rng: random.Random, style: int | None = None,
             body_only: bool = False, canonical: bool = False
             ) -> tuple[str, list[tuple[str, str]]]:
  """One rendering of a family: (code, [(example call, its output)]).

  With `body_only`, the code is the function's body alone, without its
  signature or docstring: what a benchmark's answer holds. With `canonical`,
  the conventional names, no type hints and four-space indentation.
  """
  template = family.styles[rng.randrange(len(family.styles)) if style is None else style]
  values = _names(template, family, rng, canonical)
  code = string.Template(template).substitute(values)
  calls = _run(code, values["f"], family.examples)
  lines = code.split("\n")
  at = next(i for i, line in enumerate(lines) if line.startswith(f"def {values['f']}("))
  if body_only:
    return "\n".join(lines[at + 1:]) + "\n", calls
  doc = _docstring(family, calls, rng, "    ")
  if doc.startswith("    #"):  # A comment goes above the function instead.
    lines.insert(at, doc.strip())
  elif doc:
    lines.insert(at + 1, doc.rstrip("\n"))
  code = "\n".join(lines)
  if not canonical and rng.random() < 0.3:  # Two-space indentation.
    code = re.sub(r"(?m)^((?:    )+)", lambda m: "  " * (len(m[1]) // 4), code)
  return code + "\n", calls


def solutions_file(pool: Sequence[Family], rng: random.Random) -> str:
  """A file of one to three textbook functions, maybe with a demo."""
  chosen = rng.sample(list(pool), min(len(pool), rng.randint(1, 3)))
  header = rng.choice(["", "# Homework solutions\n\n", '"""Exercises from chapter 4."""\n\n',
                       "# practice problems - week 3\n\n", "#!/usr/bin/env python3\n\n"])
  parts, demo = [], []
  for family in chosen:
    code, calls = function(family, rng)
    parts.append(code)
    demo += [f"    print({call})" for call, _ in calls[:2]]
  text = header + "\n\n".join(parts)
  if rng.random() < 0.5:
    text += '\n\nif __name__ == "__main__":\n' + "\n".join(demo) + "\n"
  return text


def utility_module(pool: Sequence[Family], rng: random.Random) -> str:
  """A helpers module of two to four short utility functions."""
  chosen = rng.sample(list(pool), min(len(pool), rng.randint(2, 4)))
  header = rng.choice(['"""Small helpers used across the project."""\n\n', "# utils.py\n\n",
                       "# Helper functions\n\n", ""])
  return header + "\n\n".join(function(f, rng)[0] for f in chosen)


_INTROS = (
    "In this lesson we write a function that {summary}. It is a classic first exercise, "
    "and it shows how a loop or a recursive call breaks a problem into smaller steps.",
    "A common interview warm-up asks for a function that {summary}. Let's build one step "
    "by step and then test it on a few inputs.",
    "Exercise {number}. Write a Python function that {summary}. Try it yourself before "
    "reading the solution below.",
    "Beginners often ask how to write a function that {summary}. Here is a short "
    "walkthrough with the code and its output.",
)
_TITLES = ("How to write a function that {summary}", "Python exercise: {name}",
           "Beginner Python: a function that {summary}", "Solution: {name}")
_SECOND = ("Another way to write it:", "The same idea, written differently:",
           "For comparison, here is a second version:", "An alternative solution:")
_OUTROS = (
    "Try changing the input and predicting the output before you run the code.",
    "As an exercise, add a check for invalid input and write a few tests.",
    "Check the edge cases too: an empty input, a single element, a negative number.",
    "That's it! In the next lesson we will look at the running time of this function.",
)


def tutorial(family: Family, rng: random.Random, style: int | None = None) -> str:
  """A tutorial or exercise sheet around one family: prose, code, output.

  With `style`, that one version in its canonical rendering (`function`).
  """
  title = rng.choice(["# ", "## ", ""]) + rng.choice(_TITLES).format(
      summary=family.summary, name=family.names[0])
  parts = [title, rng.choice(_INTROS).format(summary=family.summary,
                                             number=rng.randint(1, 12))]
  fence = rng.random() < 0.7
  styles = ([style] if style is not None else
            rng.sample(range(len(family.styles)), min(len(family.styles), rng.randint(1, 2))))
  for k, shown in enumerate(styles):
    code, calls = function(family, rng, shown, canonical=style is not None)
    if k:
      parts.append(rng.choice(_SECOND))
    parts.append(f"```python\n{code}```" if fence else code)
  parts.append(rng.choice(["Let's try it:", "Running it gives:", "Example usage:"]))
  shown = "\n".join(f">>> {call}\n{out}" for call, out in calls)
  parts.append(f"```\n{shown}\n```" if fence else shown)
  if len(styles) > 1 and rng.random() < 0.5:
    parts.append("Both versions give the same answers; pick the one that reads best to you.")
  parts.append(rng.choice(_OUTROS))
  return "\n\n".join(parts) + "\n"


def body_information(split: str, count: int, background: background_lib.Background,
                     seed: int = 0) -> np.ndarray:
  """Information (`background.information`) of `count` textbook function bodies.

  What a benchmark answer that is textbook code would score: an answer key
  needs more (`params.answer_min_info`), so this is the yardstick that
  threshold is chosen against, on the tune split.
  """
  rng = random.Random(f"{seed}:{split}:bodies")
  pool = families(split, seed)
  bodies = [function(rng.choice(pool), rng, body_only=True)[0] for _ in range(count)]
  return np.array([background_lib.information(background, row)
                   for row in normalize.token_rows(bodies)])


def documents(split: str, per_kind: int, seed: int = 0) -> dict[str, list[str]]:
  """`per_kind` documents of each of `KINDS` from the families of `split`.

  clean_textbook_canonical holds one document per style of the split's
  textbook families (about 60), at most `per_kind`.

  Args:
    split: "tune" or "test".
    per_kind: documents per kind.
    seed: family split and rendering seed.

  Returns:
    {kind: documents}, deterministic for (split, per_kind, seed).
  """
  algorithms, utilities = families(split, seed, False), families(split, seed, True)
  out = {}
  for kind in KINDS:
    rng = random.Random(f"{seed}:{split}:{kind}")
    if kind == "clean_textbook_code":
      docs = [solutions_file(algorithms, rng) for _ in range(per_kind)]
    elif kind == "clean_utility_code":
      docs = [utility_module(utilities, rng) for _ in range(per_kind)]
    elif kind == "clean_code_tutorial":
      docs = [tutorial(rng.choice(algorithms), rng) for _ in range(per_kind)]
    else:
      docs = [tutorial(f, rng, style) for f in algorithms
              for style in range(len(f.styles))][:per_kind]
    out[kind] = docs
  return out
