"""Clean math-tutorial prose: a rule explained, then worked examples.

Each topic explains one school-math rule (linear equations, the quadratic
formula, Pythagoras, percentages, fractions, ...) and works two or three
examples with numbers drawn per document and computed here, the way lesson
pages and textbook chapters do. Worked solutions of GSM8K and MATH read much
like this, yet none of it is benchmark text. Topics are split into tune and
test by a hash of their name (`splits.text_split`).
"""
import fractions
import math
import random
from collections.abc import Callable

from benchmarks.decontam_harness import splits

KIND = "clean_math_tutorial"


def _linear(rng):
  a, x, b = rng.randint(2, 9), rng.randint(-6, 12), rng.randint(1, 30)
  c = a * x + b
  return (f"Solve {a}x + {b} = {c}.",
          f"Subtract {b} from both sides: {a}x = {c - b}. Divide both sides by {a}: x = {x}. "
          f"Check: {a}({x}) + {b} = {c}.")


def _quadratic(rng):
  r, s = rng.randint(-7, 7), rng.randint(-7, 7)
  b, c = -(r + s), r * s
  return (f"Solve x^2 {b:+d}x {c:+d} = 0.",
          f"We need two numbers whose product is {c} and whose sum is {-b}: {r} and {s}. "
          f"So x^2 {b:+d}x {c:+d} = (x {-r:+d})(x {-s:+d}) = 0, and x = {r} or x = {s}.")


def _pythagoras(rng):
  m, n = rng.randint(2, 6), 1
  k = rng.randint(1, 4)
  a, b, c = k * (m * m - n * n), k * 2 * m * n, k * (m * m + n * n)
  return (f"A right triangle has legs {a} and {b}. How long is the hypotenuse?",
          f"By the Pythagorean theorem, c^2 = {a}^2 + {b}^2 = {a * a} + {b * b} = {c * c}, "
          f"so c = {c}.")


def _circle(rng):
  r = rng.randint(2, 15)
  return (f"Find the area and circumference of a circle of radius {r} cm.",
          f"The area is pi r^2 = pi * {r}^2 = {r * r}pi, about {math.pi * r * r:.2f} square "
          f"centimetres. The circumference is 2 pi r = {2 * r}pi, about "
          f"{2 * math.pi * r:.2f} cm.")


def _percent(rng):
  p, whole = rng.choice([5, 10, 15, 20, 25, 30, 40, 75]), rng.randint(4, 60) * 10
  return (f"What is {p}% of {whole}?",
          f"{p}% means {p} per hundred, so {p}% of {whole} = {p}/100 * {whole} = "
          f"{p * whole / 100:g}.")


def _fractions(rng):
  a, b = fractions.Fraction(rng.randint(1, 5), rng.randint(2, 9)), fractions.Fraction(
      rng.randint(1, 5), rng.randint(2, 9))
  lcd = math.lcm(a.denominator, b.denominator)
  return (f"Add {a} + {b}.",
          f"The least common denominator is {lcd}. Rewrite both fractions: "
          f"{a.numerator * lcd // a.denominator}/{lcd} + {b.numerator * lcd // b.denominator}/"
          f"{lcd} = {a + b}.")


def _interest(rng):
  p, r, t = rng.randint(5, 50) * 100, rng.choice([2, 3, 4, 5, 6]), rng.randint(2, 6)
  return (f"How much simple interest does ${p} earn at {r}% per year for {t} years?",
          f"Simple interest is I = P * r * t = {p} * {r / 100:g} * {t} = ${p * r * t / 100:g}. "
          f"The balance after {t} years is ${p + p * r * t / 100:g}.")


def _series(rng):
  a, d, n = rng.randint(1, 10), rng.randint(2, 7), rng.randint(8, 30)
  last = a + (n - 1) * d
  return (f"Find the sum of the first {n} terms of the arithmetic sequence {a}, {a + d}, "
          f"{a + 2 * d}, ...",
          f"The last term is {a} + ({n} - 1) * {d} = {last}. The sum is n(first + last)/2 = "
          f"{n}({a} + {last})/2 = {n * (a + last) // 2}.")


def _derivative(rng):
  a, n, b = rng.randint(2, 9), rng.randint(2, 5), rng.randint(1, 9)
  return (f"Differentiate f(x) = {a}x^{n} + {b}x.",
          f"By the power rule, the derivative of x^n is n x^(n-1). So f'(x) = {a * n}x^{n - 1} "
          f"+ {b}.")


def _dice(rng):
  target = rng.randint(2, 12)
  ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == target)
  return (f"Two fair dice are rolled. What is the probability that the sum is {target}?",
          f"There are 36 equally likely outcomes, and {ways} of them give a sum of {target}, "
          f"so the probability is {ways}/36 = {fractions.Fraction(ways, 36)}.")


def _mean(rng):
  values = [rng.randint(1, 40) for _ in range(rng.randint(4, 7))]
  return (f"Find the mean of {', '.join(map(str, values))}.",
          f"Add the values: {' + '.join(map(str, values))} = {sum(values)}. There are "
          f"{len(values)} values, so the mean is {sum(values)}/{len(values)} = "
          f"{sum(values) / len(values):.2f}.")


def _speed(rng):
  v, t = rng.randint(30, 90), rng.randint(2, 6)
  return (f"A car travels at {v} km/h for {t} hours. How far does it go?",
          f"Distance = speed * time = {v} * {t} = {v * t} km.")


def _system(rng):
  x, y = rng.randint(-5, 9), rng.randint(-5, 9)
  a, b = rng.randint(1, 5), rng.randint(1, 5)
  return (f"Solve the system x + y = {x + y}, {a}x - {b}y = {a * x - b * y}.",
          f"From the first equation, y = {x + y} - x. Substitute: {a}x - {b}({x + y} - x) = "
          f"{a * x - b * y}, so {a + b}x = {a * x - b * y + b * (x + y)} and x = {x}. "
          f"Then y = {y}.")


def _triangle_area(rng):
  b, h = rng.randint(3, 20), rng.randint(3, 20)
  return (f"Find the area of a triangle with base {b} and height {h}.",
          f"The area of a triangle is half the base times the height: 1/2 * {b} * {h} = "
          f"{b * h / 2:g}.")


def _ratio(rng):
  p, q, k = rng.randint(1, 5), rng.randint(1, 5), rng.randint(2, 12)
  return (f"Share {(p + q) * k} sweets in the ratio {p}:{q}.",
          f"There are {p} + {q} = {p + q} parts, so one part is {(p + q) * k}/{p + q} = {k}. "
          f"The shares are {p * k} and {q * k}.")


def _slope(rng):
  x1, y1, x2, y2 = (rng.randint(-9, 9) for _ in range(4))
  x2 = x2 if x2 != x1 else x1 + 3
  return (f"Find the slope of the line through ({x1}, {y1}) and ({x2}, {y2}).",
          f"Slope m = (y2 - y1)/(x2 - x1) = ({y2} - {y1})/({x2} - {x1}) = "
          f"{fractions.Fraction(y2 - y1, x2 - x1)}.")


def _exponents(rng):
  a, m, n = rng.randint(2, 5), rng.randint(2, 6), rng.randint(2, 6)
  return (f"Simplify {a}^{m} * {a}^{n}.",
          f"When multiplying powers with the same base, add the exponents: "
          f"{a}^{m} * {a}^{n} = {a}^{m + n} = {a ** (m + n)}.")


def _gcd_lcm(rng):
  a, b = rng.randint(6, 60), rng.randint(6, 60)
  return (f"Find the GCD and LCM of {a} and {b}.",
          f"The greatest common divisor of {a} and {b} is {math.gcd(a, b)}. Since GCD * LCM = "
          f"{a} * {b} = {a * b}, the LCM is {a * b}/{math.gcd(a, b)} = {math.lcm(a, b)}.")


TOPICS: dict[str, tuple[str, str, Callable]] = {
    "linear_equations": ("Solving linear equations", "To solve a linear equation, undo each "
                         "operation on the variable: move the constant term, then divide by "
                         "the coefficient.", _linear),
    "quadratic_factoring": ("Solving quadratics by factoring", "A quadratic x^2 + bx + c can "
                            "be factored when two numbers multiply to c and add to b.",
                            _quadratic),
    "pythagoras": ("The Pythagorean theorem", "In a right triangle the square of the "
                   "hypotenuse equals the sum of the squares of the legs: a^2 + b^2 = c^2.",
                   _pythagoras),
    "circles": ("Area and circumference of a circle", "A circle of radius r has area pi r^2 "
                "and circumference 2 pi r.", _circle),
    "percentages": ("Percentages", "A percentage is a fraction with denominator 100.",
                    _percent),
    "fractions": ("Adding fractions", "To add fractions, rewrite them over a common "
                  "denominator, add the numerators and simplify.", _fractions),
    "simple_interest": ("Simple interest", "Simple interest grows by the same amount every "
                        "year: principal times rate times time.", _interest),
    "arithmetic_series": ("Arithmetic series", "An arithmetic sequence adds the same "
                          "difference each step; the sum of its terms is the number of terms "
                          "times the average of the first and last term.", _series),
    "power_rule": ("The power rule for derivatives", "The derivative of x^n is n x^(n-1), "
                   "and derivatives of sums are sums of derivatives.", _derivative),
    "dice_probability": ("Probability with two dice", "When all outcomes are equally likely, "
                         "the probability of an event is the number of favourable outcomes "
                         "over the number of outcomes.", _dice),
    "mean": ("The mean of a data set", "The mean is the sum of the values divided by how many "
             "there are.", _mean),
    "speed_distance_time": ("Speed, distance and time", "Distance equals speed times time; "
                            "keep the units consistent.", _speed),
    "linear_systems": ("Systems of two linear equations", "Solve one equation for a variable "
                       "and substitute it into the other.", _system),
    "triangle_area": ("Area of a triangle", "The area of a triangle is half of its base times "
                      "its height.", _triangle_area),
    "ratios": ("Sharing in a ratio", "To share an amount in a ratio, add the parts, find the "
               "size of one part, then multiply.", _ratio),
    "slope": ("The slope of a line", "The slope is the change in y divided by the change in x.",
              _slope),
    "exponent_rules": ("Rules of exponents", "Powers of the same base multiply by adding "
                       "their exponents.", _exponents),
    "gcd_lcm": ("GCD and LCM", "The product of two numbers equals the product of their GCD "
                "and LCM.", _gcd_lcm),
}


def topics(split: str, seed: int = 0) -> list[str]:
  """The topic names of one split."""
  return [t for t in TOPICS if splits.text_split(t, seed) == split]


def lesson(topic: str, rng: random.Random) -> str:
  """A lesson page: the rule, two or three worked examples, a closing tip."""
  title, rule, example = TOPICS[topic]
  parts = [rng.choice(["# ", "## ", "Lesson: ", ""]) + title, rule]
  for k in range(rng.randint(2, 3)):
    problem, solution = example(rng)
    parts.append(rng.choice([f"Example {k + 1}: {problem}\nSolution: {solution}",
                             f"Example {k + 1}. {problem}\n\n{solution}",
                             f"Problem: {problem}\nAnswer: {solution}"]))
  parts.append(rng.choice(["Practice: make up two problems of your own and check the "
                           "answers.", "Always check your answer by substituting it back.",
                           "Next time we will see where this rule comes from."]))
  return "\n\n".join(parts) + "\n"


def documents(split: str, per_kind: int, seed: int = 0) -> dict[str, list[str]]:
  """{KIND: `per_kind` lessons on the topics of `split`}."""
  rng = random.Random(f"{seed}:{split}:{KIND}")
  pool = topics(split, seed)
  return {KIND: [lesson(rng.choice(pool), rng) for _ in range(per_kind)]}
