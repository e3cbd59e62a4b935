"""Synthetic documents with answers a program checks: math and reasoning traces.

TinyMATH-style math: problem, worked solution, final answer. Each generator
computes the answer one way and `verify_*` checks it another way (substituting
back, recomputing from the stated parameters); an item that fails the check
is never emitted. Program-verifiable thinking traces: a small generated Python
program, a step-by-step trace in <think> tags and the final value, verified by
running the program.

All generators are seeded with `random.Random(seed)`, so the corpus is the same
on every machine.
"""
import fractions
import math
import random
import re
from collections.abc import Callable, Iterator

_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan",
          "Jun", "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya")
_ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "shells",
          "cards")


def _linear_equation(rng: random.Random) -> tuple[str, str, str]:
  a, x = rng.randint(2, 12), rng.randint(-20, 20)
  b = rng.randint(-50, 50)
  c = a * x + b
  problem = f"Solve for x: {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}."
  solution = (f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.\n"
              f"Divide both sides by {a}: x = {c - b}/{a} = {x}.\n"
              f"Check: {a}*({x}) + ({b}) = {a * x + b} = {c}.")
  return problem, solution, str(x)


def _word_problem(rng: random.Random) -> tuple[str, str, str]:
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  start, bags, per_bag, given = (rng.randint(3, 40), rng.randint(2, 9),
                                 rng.randint(2, 12), rng.randint(1, 20))
  bought = bags * per_bag
  answer = start + bought - given
  problem = (f"{name} has {start} {item}. {name} buys {bags} bags with {per_bag} "
             f"{item} in each bag, then gives {given} {item} to a friend. How "
             f"many {item} does {name} have now?")
  solution = (f"The bags hold {bags} * {per_bag} = {bought} {item}.\n"
              f"After buying: {start} + {bought} = {start + bought}.\n"
              f"After giving {given} away: {start + bought} - {given} = {answer}.")
  return problem, solution, str(answer)


def _fraction_sum(rng: random.Random) -> tuple[str, str, str]:
  p = q = fractions.Fraction(1)
  while p.denominator == 1 or q.denominator == 1:  # Keep both as true fractions.
    p = fractions.Fraction(rng.randint(1, 9), rng.randint(2, 12))
    q = fractions.Fraction(rng.randint(1, 9), rng.randint(2, 12))
  lcd = p.denominator * q.denominator // math.gcd(p.denominator, q.denominator)
  num = p.numerator * (lcd // p.denominator) + q.numerator * (lcd // q.denominator)
  total = fractions.Fraction(num, lcd)
  problem = f"Compute {p} + {q} and simplify."
  solution = (f"The least common denominator of {p.denominator} and {q.denominator}"
              f" is {lcd}.\n{p} = {p.numerator * (lcd // p.denominator)}/{lcd} and "
              f"{q} = {q.numerator * (lcd // q.denominator)}/{lcd}.\n"
              f"Sum: {num}/{lcd}, which simplifies to {total}.")
  return problem, solution, str(total)


def _percent(rng: random.Random) -> tuple[str, str, str]:
  price, pct = rng.randint(2, 80) * 5, rng.choice((10, 15, 20, 25, 30, 40, 50))
  off = fractions.Fraction(price * pct, 100)
  final = price - off
  problem = (f"A jacket costs ${price}. It is on sale for {pct}% off. What is the "
             f"sale price in dollars?")
  # Prices are multiples of 5 and rates of 5%, so cents are exact.
  solution = (f"The discount is {pct}% of {price} = {price} * {pct}/100 = {float(off):.2f}.\n"
              f"Sale price: {price} - {float(off):.2f} = {float(final):.2f}.")
  return problem, solution, f"{float(final):.2f}"


def _gcd_lcm(rng: random.Random) -> tuple[str, str, str]:
  g = rng.randint(2, 12)
  a, b = g * rng.randint(2, 15), g * rng.randint(2, 15)
  gcd, lcm = math.gcd(a, b), a * b // math.gcd(a, b)
  problem = f"Find the greatest common divisor and least common multiple of {a} and {b}."
  steps, x, y = [], a, b
  while y:
    steps.append(f"{x} = {x // y} * {y} + {x % y}")
    x, y = y, x % y
  solution = ("Euclid's algorithm:\n" + "\n".join(steps) +
              f"\nSo gcd = {gcd}, and lcm = {a} * {b} / {gcd} = {lcm}.")
  return problem, solution, f"{gcd}, {lcm}"


MATH_GENERATORS = (_linear_equation, _word_problem, _fraction_sum, _percent, _gcd_lcm)


def verify_math(problem: str, answer: str) -> bool:
  """Checks an answer against its problem text independently of the generator.

  Args:
    problem: the problem statement as emitted.
    answer: the final answer as emitted.

  Returns:
    True when the answer is right.
  """
  numbers = [int(n) for n in re.findall(r"-?\d+", problem)]
  if problem.startswith("Solve for x:"):
    a, b, c = numbers
    sign = -1 if " - " in problem else 1
    return a * int(answer) + sign * abs(b) == c
  if problem.startswith("Compute"):
    p_num, p_den, q_num, q_den = numbers
    return (fractions.Fraction(p_num, p_den) + fractions.Fraction(q_num, q_den)
            == fractions.Fraction(answer))
  if problem.startswith("A jacket"):
    price, pct = numbers
    return fractions.Fraction(answer) * 100 == price * (100 - pct)
  if problem.startswith("Find the greatest"):
    a, b = numbers
    gcd, lcm = (int(v) for v in answer.split(", "))
    return (a % gcd == 0 and b % gcd == 0 and gcd * lcm == a * b
            and math.gcd(a // gcd, b // gcd) == 1)
  start, bags, per_bag, given = numbers
  return int(answer) == start + bags * per_bag - given


def math_documents(count: int, seed: int = 0) -> Iterator[dict]:
  """Yields verified TinyMATH-style documents {"text", "answer"}.

  Args:
    count: number of documents.
    seed: generator seed.
  """
  rng = random.Random(seed)
  emitted = 0
  while emitted < count:
    problem, solution, answer = rng.choice(MATH_GENERATORS)(rng)
    if not verify_math(problem, answer):
      continue
    emitted += 1
    yield {"text": f"Problem: {problem}\nSolution:\n{solution}\nAnswer: {answer}",
           "answer": answer}


def _accumulate_program(rng: random.Random) -> tuple[str, list[str], int]:
  start, factor, steps = rng.randint(0, 9), rng.randint(2, 7), rng.randint(3, 6)
  op = rng.choice(("+", "-"))
  program = (f"total = {start}\nfor i in range(1, {steps + 1}):\n"
             f"    total = total {op} i * {factor}\nprint(total)")
  trace, total = [f"Start with total = {start}."], start
  for i in range(1, steps + 1):
    new = total + i * factor if op == "+" else total - i * factor
    trace.append(f"i = {i}: total = {total} {op} {i} * {factor} = {new}.")
    total = new
  return program, trace, total


def _filter_program(rng: random.Random) -> tuple[str, list[str], int]:
  values = [rng.randint(1, 30) for _ in range(rng.randint(4, 7))]
  divisor = rng.choice((2, 3, 5))
  program = (f"values = {values}\nkept = [v for v in values if v % {divisor} == 0]\n"
             f"print(sum(kept))")
  trace, kept = [], []
  for v in values:
    verdict = "keep" if v % divisor == 0 else "skip"
    trace.append(f"{v} % {divisor} = {v % divisor}, so {verdict} {v}.")
    if v % divisor == 0:
      kept.append(v)
  total = sum(kept)
  trace.append(f"Kept {kept}; their sum is {total}.")
  return program, trace, total


def _max_program(rng: random.Random) -> tuple[str, list[str], int]:
  values = [rng.randint(-20, 40) for _ in range(rng.randint(4, 7))]
  program = (f"values = {values}\nbest = values[0]\nfor v in values[1:]:\n"
             f"    if v > best:\n        best = v\nprint(best)")
  best, trace = values[0], [f"Start with best = {values[0]}."]
  for v in values[1:]:
    if v > best:
      trace.append(f"{v} > {best}, so best = {v}.")
      best = v
    else:
      trace.append(f"{v} <= {best}, best stays {best}.")
  return program, trace, best


_TRACE_GENERATORS = (_accumulate_program, _filter_program, _max_program)


def run_program(program: str) -> int:
  """Runs a generated program and returns the value it prints."""
  printed: list[int] = []
  exec(program, {"__builtins__": {"range": range, "sum": sum,
                                  "print": printed.append}})
  return printed[-1]


def trace_documents(count: int, seed: int = 0) -> Iterator[dict]:
  """Yields program-verifiable reasoning traces {"text", "answer"}.

  Args:
    count: number of documents.
    seed: generator seed.
  """
  rng = random.Random(seed)
  emitted = 0
  while emitted < count:
    program, trace, answer = rng.choice(_TRACE_GENERATORS)(rng)
    if run_program(program) != answer:
      continue
    emitted += 1
    yield {"text": ("What does this Python program print?\n```python\n"
                    f"{program}\n```\n<think>\n" + "\n".join(trace) +
                    f"\n</think>\nThe program prints {answer}."),
           "answer": str(answer)}


GENERATORS: dict[str, Callable[[int, int], Iterator[dict]]] = {
    "math": math_documents, "traces": trace_documents}
