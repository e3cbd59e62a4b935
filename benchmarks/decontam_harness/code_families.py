"""Textbook and exercise-style Python functions: families of styles to render.

Each `Family` is one classic exercise (Fibonacci, a prime check, bubble sort,
a vowel counter, a clamp utility, ...) written in several styles the way
textbooks, tutorials and homework solutions write it: recursive and
iterative, loops and built-ins, with and without early returns. Templates are
`string.Template` text; `textbook.py` fills in names, type hints, docstrings
and indentation. Written for this suite, not taken from any benchmark.

Placeholders: $f function name, $n an int argument, $xs a list argument,
$s a string argument, $a and $b two ints, $t a search target, $i a loop
index, $x a loop element, $acc an accumulator; $tn, $txs, $ts type hints of
the int, list and string arguments; $ret the return annotation.
"""
import dataclasses

ARG_NAMES = {
    "n": ("n", "num", "k", "number", "x"),
    "xs": ("numbers", "nums", "items", "values", "arr", "lst", "data"),
    "s": ("s", "text", "word", "string", "sentence"),
    "ab": (("a", "b"), ("x", "y"), ("m", "n"), ("first", "second")),
    "t": ("target", "key", "value", "goal"),
    "i": ("i", "j", "idx", "k"),
    "x": ("x", "item", "value", "num", "element"),
    "acc": ("total", "result", "acc", "res", "answer"),
}


@dataclasses.dataclass(frozen=True)
class Family:
  """One exercise in several styles.

  Attributes:
    name: the family's name; the tune/test split is a hash of it.
    summary: what the function does, completing "A function that ...".
    names: function names textbooks give it.
    args: placeholder groups the templates use, e.g. ("xs", "t").
    returns: the return annotation ("" for none).
    examples: argument tuples for example calls, in `args` order (a list
      argument is one element; two ints are two).
    styles: the templates.
    utility: a short utility function rather than a textbook algorithm.
  """
  name: str
  summary: str
  names: tuple[str, ...]
  args: tuple[str, ...]
  returns: str
  examples: tuple[tuple, ...]
  styles: tuple[str, ...]
  utility: bool = False


def _f(name, summary, names, args, returns, examples, *styles, utility=False):
  return Family(name, summary, tuple(names), tuple(args), returns,
                tuple(examples), tuple(s.strip("\n") for s in styles), utility)


_REC2 = """
def $f($n$tn)$ret:
    if $n <= 1:
        return $n
    return $f($n - 1) + $f($n - 2)
"""
_FIB = [
    _REC2, """
def $f($n$tn)$ret:
    if $n == 0:
        return 0
    if $n == 1:
        return 1
    return $f($n - 1) + $f($n - 2)
""", """
def $f($n$tn)$ret:
    if $n < 2:
        return $n
    else:
        return $f($n-1) + $f($n-2)
""", """
def $f($n$tn)$ret:
    a, b = 0, 1
    for _ in range($n):
        a, b = b, a + b
    return a
""", """
def $f($n$tn)$ret:
    prev, curr = 0, 1
    $i = 0
    while $i < $n:
        prev, curr = curr, prev + curr
        $i += 1
    return prev
""", """
from functools import lru_cache


@lru_cache(maxsize=None)
def $f($n$tn)$ret:
    if $n < 2:
        return $n
    return $f($n - 1) + $f($n - 2)
""", """
def $f($n$tn)$ret:
    seq = [0, 1]
    for $i in range(2, $n + 1):
        seq.append(seq[-1] + seq[-2])
    return seq[$n]
""", """
def $f($n$tn, memo={})$ret:
    if $n in memo:
        return memo[$n]
    if $n <= 2:
        return 1 if $n > 0 else 0
    memo[$n] = $f($n - 1) + $f($n - 2)
    return memo[$n]
"""]

_FACTORIAL = ["""
def $f($n$tn)$ret:
    if $n == 0:
        return 1
    return $n * $f($n - 1)
""", """
def $f($n$tn)$ret:
    if $n <= 1:
        return 1
    else:
        return $n * $f($n - 1)
""", """
def $f($n$tn)$ret:
    $acc = 1
    for $i in range(2, $n + 1):
        $acc *= $i
    return $acc
""", """
def $f($n$tn)$ret:
    $acc = 1
    while $n > 1:
        $acc = $acc * $n
        $n -= 1
    return $acc
""", """
import math


def $f($n$tn)$ret:
    return math.prod(range(1, $n + 1))
""", """
from functools import reduce


def $f($n$tn)$ret:
    return reduce(lambda a, b: a * b, range(1, $n + 1), 1)
"""]

_PRIME = ["""
def $f($n$tn)$ret:
    if $n < 2:
        return False
    for $i in range(2, $n):
        if $n % $i == 0:
            return False
    return True
""", """
def $f($n$tn)$ret:
    if $n <= 1:
        return False
    for $i in range(2, int($n ** 0.5) + 1):
        if $n % $i == 0:
            return False
    return True
""", """
def $f($n$tn)$ret:
    if $n < 2:
        return False
    $i = 2
    while $i * $i <= $n:
        if $n % $i == 0:
            return False
        $i += 1
    return True
""", """
def $f($n$tn)$ret:
    if $n <= 3:
        return $n > 1
    if $n % 2 == 0 or $n % 3 == 0:
        return False
    $i = 5
    while $i * $i <= $n:
        if $n % $i == 0 or $n % ($i + 2) == 0:
            return False
        $i += 6
    return True
""", """
def $f($n$tn)$ret:
    return $n > 1 and all($n % $i != 0 for $i in range(2, int($n ** 0.5) + 1))
""", """
import math


def $f($n$tn)$ret:
    if $n < 2:
        return False
    for $i in range(2, math.isqrt($n) + 1):
        if $n % $i == 0:
            return False
    return True
"""]

_GCD = ["""
def $f($a$tn, $b$tn)$ret:
    while $b:
        $a, $b = $b, $a % $b
    return $a
""", """
def $f($a$tn, $b$tn)$ret:
    if $b == 0:
        return $a
    return $f($b, $a % $b)
""", """
def $f($a$tn, $b$tn)$ret:
    while $b != 0:
        remainder = $a % $b
        $a = $b
        $b = remainder
    return $a
""", """
def $f($a$tn, $b$tn)$ret:
    while $a != $b:
        if $a > $b:
            $a -= $b
        else:
            $b -= $a
    return $a
"""]

_LCM = ["""
def $f($a$tn, $b$tn)$ret:
    x, y = $a, $b
    while y:
        x, y = y, x % y
    return $a * $b // x
""", """
import math


def $f($a$tn, $b$tn)$ret:
    return abs($a * $b) // math.gcd($a, $b)
""", """
def $f($a$tn, $b$tn)$ret:
    $acc = max($a, $b)
    while $acc % $a != 0 or $acc % $b != 0:
        $acc += 1
    return $acc
"""]

_BSEARCH = ["""
def $f($xs$txs, $t$tn)$ret:
    low, high = 0, len($xs) - 1
    while low <= high:
        mid = (low + high) // 2
        if $xs[mid] == $t:
            return mid
        elif $xs[mid] < $t:
            low = mid + 1
        else:
            high = mid - 1
    return -1
""", """
def $f($xs$txs, $t$tn, lo=0, hi=None)$ret:
    if hi is None:
        hi = len($xs) - 1
    if lo > hi:
        return -1
    mid = (lo + hi) // 2
    if $xs[mid] == $t:
        return mid
    if $xs[mid] < $t:
        return $f($xs, $t, mid + 1, hi)
    return $f($xs, $t, lo, mid - 1)
""", """
def $f($xs$txs, $t$tn)$ret:
    left = 0
    right = len($xs)
    while left < right:
        middle = left + (right - left) // 2
        if $xs[middle] < $t:
            left = middle + 1
        else:
            right = middle
    if left < len($xs) and $xs[left] == $t:
        return left
    return -1
""", """
import bisect


def $f($xs$txs, $t$tn)$ret:
    $i = bisect.bisect_left($xs, $t)
    if $i != len($xs) and $xs[$i] == $t:
        return $i
    return -1
"""]

_LSEARCH = ["""
def $f($xs$txs, $t$tn)$ret:
    for $i in range(len($xs)):
        if $xs[$i] == $t:
            return $i
    return -1
""", """
def $f($xs$txs, $t$tn)$ret:
    for $i, $x in enumerate($xs):
        if $x == $t:
            return $i
    return -1
"""]

_BUBBLE = ["""
def $f($xs$txs)$ret:
    n = len($xs)
    for $i in range(n):
        for j in range(0, n - $i - 1):
            if $xs[j] > $xs[j + 1]:
                $xs[j], $xs[j + 1] = $xs[j + 1], $xs[j]
    return $xs
""", """
def $f($xs$txs)$ret:
    $xs = list($xs)
    swapped = True
    while swapped:
        swapped = False
        for $i in range(len($xs) - 1):
            if $xs[$i] > $xs[$i + 1]:
                $xs[$i], $xs[$i + 1] = $xs[$i + 1], $xs[$i]
                swapped = True
    return $xs
""", """
def $f($xs$txs)$ret:
    n = len($xs)
    for end in range(n - 1, 0, -1):
        swapped = False
        for $i in range(end):
            if $xs[$i] > $xs[$i + 1]:
                temp = $xs[$i]
                $xs[$i] = $xs[$i + 1]
                $xs[$i + 1] = temp
                swapped = True
        if not swapped:
            break
    return $xs
"""]

_INSERTION = ["""
def $f($xs$txs)$ret:
    for $i in range(1, len($xs)):
        key = $xs[$i]
        j = $i - 1
        while j >= 0 and $xs[j] > key:
            $xs[j + 1] = $xs[j]
            j -= 1
        $xs[j + 1] = key
    return $xs
""", """
def $f($xs$txs)$ret:
    $acc = []
    for $x in $xs:
        pos = 0
        while pos < len($acc) and $acc[pos] < $x:
            pos += 1
        $acc.insert(pos, $x)
    return $acc
"""]

_SELECTION = ["""
def $f($xs$txs)$ret:
    n = len($xs)
    for $i in range(n):
        smallest = $i
        for j in range($i + 1, n):
            if $xs[j] < $xs[smallest]:
                smallest = j
        $xs[$i], $xs[smallest] = $xs[smallest], $xs[$i]
    return $xs
""", """
def $f($xs$txs)$ret:
    $xs = list($xs)
    $acc = []
    while $xs:
        smallest = min($xs)
        $xs.remove(smallest)
        $acc.append(smallest)
    return $acc
"""]

_MERGE = ["""
def $f($xs$txs)$ret:
    if len($xs) <= 1:
        return $xs
    mid = len($xs) // 2
    left = $f($xs[:mid])
    right = $f($xs[mid:])
    merged = []
    $i = j = 0
    while $i < len(left) and j < len(right):
        if left[$i] <= right[j]:
            merged.append(left[$i])
            $i += 1
        else:
            merged.append(right[j])
            j += 1
    merged.extend(left[$i:])
    merged.extend(right[j:])
    return merged
""", """
def merge(left, right):
    $acc = []
    while left and right:
        if left[0] <= right[0]:
            $acc.append(left.pop(0))
        else:
            $acc.append(right.pop(0))
    return $acc + left + right


def $f($xs$txs)$ret:
    if len($xs) < 2:
        return $xs
    middle = len($xs) // 2
    return merge($f($xs[:middle]), $f($xs[middle:]))
"""]

_QUICK = ["""
def $f($xs$txs)$ret:
    if len($xs) <= 1:
        return $xs
    pivot = $xs[len($xs) // 2]
    left = [$x for $x in $xs if $x < pivot]
    middle = [$x for $x in $xs if $x == pivot]
    right = [$x for $x in $xs if $x > pivot]
    return $f(left) + middle + $f(right)
""", """
def $f($xs$txs)$ret:
    if not $xs:
        return []
    pivot, rest = $xs[0], $xs[1:]
    smaller = [$x for $x in rest if $x <= pivot]
    larger = [$x for $x in rest if $x > pivot]
    return $f(smaller) + [pivot] + $f(larger)
"""]

_PALINDROME = ["""
def $f($s$ts)$ret:
    return $s == $s[::-1]
""", """
def $f($s$ts)$ret:
    cleaned = "".join(ch.lower() for ch in $s if ch.isalnum())
    return cleaned == cleaned[::-1]
""", """
def $f($s$ts)$ret:
    left, right = 0, len($s) - 1
    while left < right:
        if $s[left] != $s[right]:
            return False
        left += 1
        right -= 1
    return True
""", """
def $f($s$ts)$ret:
    if len($s) <= 1:
        return True
    if $s[0] != $s[-1]:
        return False
    return $f($s[1:-1])
""", """
def $f($s$ts)$ret:
    for $i in range(len($s) // 2):
        if $s[$i] != $s[len($s) - 1 - $i]:
            return False
    return True
"""]

_SUM = ["""
def $f($xs$txs)$ret:
    $acc = 0
    for $x in $xs:
        $acc += $x
    return $acc
""", """
def $f($xs$txs)$ret:
    $acc = 0
    $i = 0
    while $i < len($xs):
        $acc = $acc + $xs[$i]
        $i += 1
    return $acc
""", """
def $f($xs$txs)$ret:
    if not $xs:
        return 0
    return $xs[0] + $f($xs[1:])
"""]

_PRODUCT = ["""
def $f($xs$txs)$ret:
    $acc = 1
    for $x in $xs:
        $acc *= $x
    return $acc
""", """
import math


def $f($xs$txs)$ret:
    return math.prod($xs)
""", """
from functools import reduce


def $f($xs$txs)$ret:
    return reduce(lambda a, b: a * b, $xs, 1)
"""]

_SUM_PRODUCT = ["""
def $f($xs$txs)$ret:
    $acc = 0
    product = 1
    for $x in $xs:
        $acc += $x
        product *= $x
    return $acc, product
""", """
def $f($xs$txs)$ret:
    total_sum = 0
    total_product = 1
    for $x in $xs:
        total_sum = total_sum + $x
        total_product = total_product * $x
    return total_sum, total_product
""", """
import math


def $f($xs$txs)$ret:
    return sum($xs), math.prod($xs)
""", """
def $f($xs$txs)$ret:
    s = 0
    p = 1
    for $i in range(len($xs)):
        s += $xs[$i]
        p *= $xs[$i]
    return (s, p)
"""]

_REVERSE = ["""
def $f($s$ts)$ret:
    return $s[::-1]
""", """
def $f($s$ts)$ret:
    $acc = ""
    for ch in $s:
        $acc = ch + $acc
    return $acc
""", """
def $f($s$ts)$ret:
    return "".join(reversed($s))
""", """
def $f($s$ts)$ret:
    if len($s) <= 1:
        return $s
    return $f($s[1:]) + $s[0]
""", """
def $f($s$ts)$ret:
    chars = list($s)
    left, right = 0, len(chars) - 1
    while left < right:
        chars[left], chars[right] = chars[right], chars[left]
        left += 1
        right -= 1
    return "".join(chars)
"""]

_VOWELS = ["""
def $f($s$ts)$ret:
    $acc = 0
    for ch in $s:
        if ch in "aeiouAEIOU":
            $acc += 1
    return $acc
""", """
def $f($s$ts)$ret:
    vowels = "aeiou"
    return sum(1 for ch in $s.lower() if ch in vowels)
""", """
def $f($s$ts)$ret:
    return len([ch for ch in $s.lower() if ch in "aeiou"])
""", """
def $f($s$ts)$ret:
    vowels = set("aeiouAEIOU")
    $acc = 0
    for ch in $s:
        if ch in vowels:
            $acc = $acc + 1
    return $acc
"""]

_MAX = ["""
def $f($xs$txs)$ret:
    largest = $xs[0]
    for $x in $xs[1:]:
        if $x > largest:
            largest = $x
    return largest
""", """
def $f($xs$txs)$ret:
    if not $xs:
        return None
    largest = $xs[0]
    for $x in $xs:
        if $x > largest:
            largest = $x
    return largest
""", """
def $f($xs$txs)$ret:
    if len($xs) == 1:
        return $xs[0]
    rest = $f($xs[1:])
    return $xs[0] if $xs[0] > rest else rest
"""]

_MIN = ["""
def $f($xs$txs)$ret:
    smallest = $xs[0]
    for $x in $xs:
        if $x < smallest:
            smallest = $x
    return smallest
""", """
def $f($xs$txs)$ret:
    smallest = float("inf")
    for $x in $xs:
        smallest = min(smallest, $x)
    return smallest
"""]

_AVERAGE = ["""
def $f($xs$txs)$ret:
    return sum($xs) / len($xs)
""", """
def $f($xs$txs)$ret:
    if not $xs:
        return 0.0
    $acc = 0
    for $x in $xs:
        $acc += $x
    return $acc / len($xs)
""", """
def $f($xs$txs)$ret:
    $acc = 0
    count = 0
    for $x in $xs:
        $acc += $x
        count += 1
    return $acc / count if count else 0
"""]

_WORD_FREQ = ["""
def $f($s$ts)$ret:
    counts = {}
    for word in $s.split():
        counts[word] = counts.get(word, 0) + 1
    return counts
""", """
from collections import Counter


def $f($s$ts)$ret:
    return dict(Counter($s.lower().split()))
""", """
def $f($s$ts)$ret:
    freq = {}
    for word in $s.lower().split():
        if word in freq:
            freq[word] += 1
        else:
            freq[word] = 1
    return freq
"""]

_CHAR_FREQ = ["""
def $f($s$ts)$ret:
    counts = {}
    for ch in $s:
        counts[ch] = counts.get(ch, 0) + 1
    return counts
""", """
def $f($s$ts)$ret:
    freq = {}
    for ch in $s:
        if ch in freq:
            freq[ch] += 1
        else:
            freq[ch] = 1
    return freq
"""]

_FIZZBUZZ = ["""
def $f($n$tn)$ret:
    $acc = []
    for $i in range(1, $n + 1):
        if $i % 15 == 0:
            $acc.append("FizzBuzz")
        elif $i % 3 == 0:
            $acc.append("Fizz")
        elif $i % 5 == 0:
            $acc.append("Buzz")
        else:
            $acc.append(str($i))
    return $acc
""", """
def $f($n$tn)$ret:
    $acc = []
    for $i in range(1, $n + 1):
        word = ""
        if $i % 3 == 0:
            word += "Fizz"
        if $i % 5 == 0:
            word += "Buzz"
        $acc.append(word or str($i))
    return $acc
"""]

_EVEN_SUM = ["""
def $f($xs$txs)$ret:
    $acc = 0
    for $x in $xs:
        if $x % 2 == 0:
            $acc += $x
    return $acc
""", """
def $f($xs$txs)$ret:
    return sum($x for $x in $xs if $x % 2 == 0)
""", """
def $f($xs$txs)$ret:
    evens = [$x for $x in $xs if $x % 2 == 0]
    return sum(evens)
"""]

_POWER = ["""
def $f($a$tn, $b$tn)$ret:
    if $b == 0:
        return 1
    half = $f($a, $b // 2)
    if $b % 2 == 0:
        return half * half
    return half * half * $a
""", """
def $f($a$tn, $b$tn)$ret:
    $acc = 1
    while $b > 0:
        if $b % 2 == 1:
            $acc *= $a
        $a *= $a
        $b //= 2
    return $acc
""", """
def $f($a$tn, $b$tn)$ret:
    $acc = 1
    for _ in range($b):
        $acc *= $a
    return $acc
"""]

_DIGIT_SUM = ["""
def $f($n$tn)$ret:
    $acc = 0
    while $n > 0:
        $acc += $n % 10
        $n //= 10
    return $acc
""", """
def $f($n$tn)$ret:
    return sum(int(d) for d in str($n))
""", """
def $f($n$tn)$ret:
    if $n < 10:
        return $n
    return $n % 10 + $f($n // 10)
"""]

_REVERSE_NUMBER = ["""
def $f($n$tn)$ret:
    $acc = 0
    while $n > 0:
        $acc = $acc * 10 + $n % 10
        $n //= 10
    return $acc
""", """
def $f($n$tn)$ret:
    return int(str($n)[::-1])
"""]

_LEAP = ["""
def $f($n$tn)$ret:
    return $n % 4 == 0 and ($n % 100 != 0 or $n % 400 == 0)
""", """
def $f($n$tn)$ret:
    if $n % 400 == 0:
        return True
    if $n % 100 == 0:
        return False
    return $n % 4 == 0
"""]

_ANAGRAM = ["""
def $f($s$ts, other$ts)$ret:
    return sorted($s.lower()) == sorted(other.lower())
""", """
from collections import Counter


def $f($s$ts, other$ts)$ret:
    return Counter($s.replace(" ", "").lower()) == Counter(other.replace(" ", "").lower())
""", """
def $f($s$ts, other$ts)$ret:
    if len($s) != len(other):
        return False
    counts = {}
    for ch in $s:
        counts[ch] = counts.get(ch, 0) + 1
    for ch in other:
        if counts.get(ch, 0) == 0:
            return False
        counts[ch] -= 1
    return True
"""]

_DEDUP = ["""
def $f($xs$txs)$ret:
    seen = set()
    $acc = []
    for $x in $xs:
        if $x not in seen:
            seen.add($x)
            $acc.append($x)
    return $acc
""", """
def $f($xs$txs)$ret:
    return list(dict.fromkeys($xs))
""", """
def $f($xs$txs)$ret:
    $acc = []
    for $x in $xs:
        if $x not in $acc:
            $acc.append($x)
    return $acc
"""]

_FLATTEN = ["""
def $f($xs$txs)$ret:
    $acc = []
    for $x in $xs:
        if isinstance($x, list):
            $acc.extend($f($x))
        else:
            $acc.append($x)
    return $acc
""", """
def $f($xs$txs)$ret:
    return [$x for sub in $xs for $x in sub]
"""]

_TRANSPOSE = ["""
def $f($xs$txs)$ret:
    return [list(row) for row in zip(*$xs)]
""", """
def $f($xs$txs)$ret:
    rows, cols = len($xs), len($xs[0])
    $acc = [[0] * rows for _ in range(cols)]
    for $i in range(rows):
        for j in range(cols):
            $acc[j][$i] = $xs[$i][j]
    return $acc
"""]

_PRIME_FACTORS = ["""
def $f($n$tn)$ret:
    factors = []
    d = 2
    while $n > 1:
        while $n % d == 0:
            factors.append(d)
            $n //= d
        d += 1
    return factors
""", """
def $f($n$tn)$ret:
    factors = []
    $i = 2
    while $i * $i <= $n:
        if $n % $i:
            $i += 1
        else:
            $n //= $i
            factors.append($i)
    if $n > 1:
        factors.append($n)
    return factors
"""]

_SIEVE = ["""
def $f($n$tn)$ret:
    is_prime = [True] * ($n + 1)
    is_prime[0:2] = [False, False]
    for $i in range(2, int($n ** 0.5) + 1):
        if is_prime[$i]:
            for j in range($i * $i, $n + 1, $i):
                is_prime[j] = False
    return [$i for $i in range($n + 1) if is_prime[$i]]
""", """
def $f($n$tn)$ret:
    primes = []
    for candidate in range(2, $n + 1):
        if all(candidate % p != 0 for p in primes):
            primes.append(candidate)
    return primes
"""]

_SQUARES = ["""
def $f($n$tn)$ret:
    $acc = 0
    for $i in range(1, $n + 1):
        $acc += $i * $i
    return $acc
""", """
def $f($n$tn)$ret:
    return sum($i ** 2 for $i in range(1, $n + 1))
""", """
def $f($n$tn)$ret:
    return $n * ($n + 1) * (2 * $n + 1) // 6
"""]

_SUM_TO_N = ["""
def $f($n$tn)$ret:
    $acc = 0
    for $i in range(1, $n + 1):
        $acc += $i
    return $acc
""", """
def $f($n$tn)$ret:
    return $n * ($n + 1) // 2
""", """
def $f($n$tn)$ret:
    if $n == 0:
        return 0
    return $n + $f($n - 1)
"""]

_SECOND_LARGEST = ["""
def $f($xs$txs)$ret:
    first = second = float("-inf")
    for $x in $xs:
        if $x > first:
            first, second = $x, first
        elif first > $x > second:
            second = $x
    return second
""", """
def $f($xs$txs)$ret:
    unique = sorted(set($xs))
    return unique[-2] if len(unique) > 1 else None
"""]

_CAPITALIZE = ["""
def $f($s$ts)$ret:
    return " ".join(word.capitalize() for word in $s.split())
""", """
def $f($s$ts)$ret:
    words = $s.split()
    $acc = []
    for word in words:
        $acc.append(word[0].upper() + word[1:])
    return " ".join($acc)
"""]

_BINARY = ["""
def $f($n$tn)$ret:
    if $n == 0:
        return "0"
    digits = ""
    while $n > 0:
        digits = str($n % 2) + digits
        $n //= 2
    return digits
""", """
def $f($n$tn)$ret:
    return bin($n)[2:]
""", """
def $f($n$tn)$ret:
    if $n < 2:
        return str($n)
    return $f($n // 2) + str($n % 2)
"""]

_COLLATZ = ["""
def $f($n$tn)$ret:
    steps = 0
    while $n != 1:
        if $n % 2 == 0:
            $n = $n // 2
        else:
            $n = 3 * $n + 1
        steps += 1
    return steps
""", """
def $f($n$tn)$ret:
    sequence = [$n]
    while $n != 1:
        $n = $n // 2 if $n % 2 == 0 else 3 * $n + 1
        sequence.append($n)
    return len(sequence) - 1
"""]

_PERFECT = ["""
def $f($n$tn)$ret:
    divisors = [d for d in range(1, $n) if $n % d == 0]
    return sum(divisors) == $n
""", """
def $f($n$tn)$ret:
    $acc = 0
    for $i in range(1, $n):
        if $n % $i == 0:
            $acc += $i
    return $acc == $n
"""]

_ARMSTRONG = ["""
def $f($n$tn)$ret:
    digits = str($n)
    power = len(digits)
    return sum(int(d) ** power for d in digits) == $n
""", """
def $f($n$tn)$ret:
    order = len(str($n))
    $acc = 0
    temp = $n
    while temp > 0:
        digit = temp % 10
        $acc += digit ** order
        temp //= 10
    return $acc == $n
"""]

_TWO_SUM = ["""
def $f($xs$txs, $t$tn)$ret:
    seen = {}
    for $i, $x in enumerate($xs):
        if $t - $x in seen:
            return seen[$t - $x], $i
        seen[$x] = $i
    return None
""", """
def $f($xs$txs, $t$tn)$ret:
    for $i in range(len($xs)):
        for j in range($i + 1, len($xs)):
            if $xs[$i] + $xs[j] == $t:
                return $i, j
    return None
"""]

_COUNT_OCC = ["""
def $f($xs$txs, $t$tn)$ret:
    $acc = 0
    for $x in $xs:
        if $x == $t:
            $acc += 1
    return $acc
""", """
def $f($xs$txs, $t$tn)$ret:
    return sum(1 for $x in $xs if $x == $t)
"""]

_CELSIUS = ["""
def $f($n$tn)$ret:
    return $n * 9 / 5 + 32
""", """
def $f($n$tn)$ret:
    fahrenheit = ($n * 9 / 5) + 32
    return round(fahrenheit, 1)
"""]

_CLAMP = ["""
def $f($n$tn, low$tn, high$tn)$ret:
    return max(low, min($n, high))
""", """
def $f($n$tn, low$tn, high$tn)$ret:
    if $n < low:
        return low
    if $n > high:
        return high
    return $n
"""]

_CHUNKS = ["""
def $f($xs$txs, size$tn)$ret:
    return [$xs[$i:$i + size] for $i in range(0, len($xs), size)]
""", """
def $f($xs$txs, size$tn)$ret:
    $acc = []
    current = []
    for $x in $xs:
        current.append($x)
        if len(current) == size:
            $acc.append(current)
            current = []
    if current:
        $acc.append(current)
    return $acc
"""]

_SAFE_DIV = ["""
def $f($a$tn, $b$tn)$ret:
    if $b == 0:
        return None
    return $a / $b
""", """
def $f($a$tn, $b$tn)$ret:
    try:
        return $a / $b
    except ZeroDivisionError:
        return None
"""]

_PERCENT = ["""
def $f($a$tn, $b$tn)$ret:
    if $b == 0:
        return 0.0
    return round(100.0 * $a / $b, 2)
"""]

_SLUG = ["""
import re


def $f($s$ts)$ret:
    $s = $s.lower().strip()
    $s = re.sub(r"[^a-z0-9]+", "-", $s)
    return $s.strip("-")
""", """
def $f($s$ts)$ret:
    words = "".join(ch if ch.isalnum() else " " for ch in $s.lower()).split()
    return "-".join(words)
"""]

_MERGE_DICTS = ["""
def $f(first, second)$ret:
    merged = dict(first)
    merged.update(second)
    return merged
""", """
def $f(first, second)$ret:
    return {**first, **second}
"""]

_IS_SORTED = ["""
def $f($xs$txs)$ret:
    for $i in range(len($xs) - 1):
        if $xs[$i] > $xs[$i + 1]:
            return False
    return True
""", """
def $f($xs$txs)$ret:
    return all($xs[$i] <= $xs[$i + 1] for $i in range(len($xs) - 1))
""", """
def $f($xs$txs)$ret:
    return $xs == sorted($xs)
"""]

_FIRST = ["""
def $f($xs$txs, default=None)$ret:
    for $x in $xs:
        return $x
    return default
""", """
def $f($xs$txs, default=None)$ret:
    return $xs[0] if $xs else default
"""]

_NUMS = (([5, 3, 8, 1, 9, 2],), ([4, 1, 3],))
_WORDS = ("the cat and the dog and the bird",)
FAMILIES: tuple[Family, ...] = (
    _f("fibonacci", "returns the n-th Fibonacci number",
       ["fib", "fibonacci", "fibo", "nth_fibonacci"], ["n"], "int", [(10,), (15,)], *_FIB),
    _f("factorial", "computes the factorial of n", ["factorial", "fact", "compute_factorial"],
       ["n"], "int", [(5,), (10,)], *_FACTORIAL),
    _f("prime_check", "checks whether a number is prime",
       ["is_prime", "isprime", "check_prime", "prime"], ["n"], "bool", [(17,), (21,)], *_PRIME),
    _f("gcd", "finds the greatest common divisor of two integers",
       ["gcd", "greatest_common_divisor", "euclid", "hcf"], ["ab"], "int", [(48, 18), (17, 5)],
       *_GCD),
    _f("lcm", "finds the least common multiple of two integers", ["lcm", "least_common_multiple"],
       ["ab"], "int", [(4, 6), (21, 6)], *_LCM),
    _f("binary_search", "finds a target in a sorted list by binary search",
       ["binary_search", "bsearch", "search"], ["xs", "t"], "int",
       [([1, 3, 5, 7, 9, 11], 7), ([2, 4, 6, 8], 5)], *_BSEARCH),
    _f("linear_search", "finds the position of a target in a list",
       ["linear_search", "find_index", "search"], ["xs", "t"], "int",
       [([4, 2, 7, 1], 7), ([1, 2, 3], 9)], *_LSEARCH),
    _f("bubble_sort", "sorts a list with bubble sort", ["bubble_sort", "bubblesort", "sort_list"],
       ["xs"], "list", _NUMS, *_BUBBLE),
    _f("insertion_sort", "sorts a list with insertion sort", ["insertion_sort", "insert_sort"],
       ["xs"], "list", _NUMS, *_INSERTION),
    _f("selection_sort", "sorts a list with selection sort", ["selection_sort", "select_sort"],
       ["xs"], "list", _NUMS, *_SELECTION),
    _f("merge_sort", "sorts a list with merge sort", ["merge_sort", "mergesort"], ["xs"], "list",
       _NUMS, *_MERGE),
    _f("quick_sort", "sorts a list with quicksort", ["quick_sort", "quicksort", "qsort"], ["xs"],
       "list", _NUMS, *_QUICK),
    _f("palindrome", "checks whether a string reads the same backwards",
       ["is_palindrome", "palindrome", "check_palindrome"], ["s"], "bool",
       [("racecar",), ("hello",)], *_PALINDROME),
    _f("sum_list", "adds up the numbers in a list", ["sum_list", "list_sum", "total", "add_all"],
       ["xs"], "int", _NUMS, *_SUM),
    _f("product_list", "multiplies the numbers in a list",
       ["product", "multiply_list", "list_product"], ["xs"], "int", _NUMS, *_PRODUCT),
    _f("sum_and_product", "returns both the sum and the product of a list",
       ["sum_and_product", "sum_product", "sum_prod"], ["xs"], "tuple", _NUMS, *_SUM_PRODUCT),
    _f("reverse_string", "reverses a string", ["reverse", "reverse_string", "reverse_str"], ["s"],
       "str", [("hello",), ("Python",)], *_REVERSE),
    _f("count_vowels", "counts the vowels in a string", ["count_vowels", "vowel_count", "vowels"],
       ["s"], "int", [("Hello World",), ("programming",)], *_VOWELS),
    _f("find_max", "finds the largest number in a list", ["find_max", "maximum", "largest"],
       ["xs"], "int", _NUMS, *_MAX),
    _f("find_min", "finds the smallest number in a list", ["find_min", "minimum", "smallest"],
       ["xs"], "int", _NUMS, *_MIN),
    _f("average", "computes the average of a list of numbers", ["average", "mean", "avg"], ["xs"],
       "float", _NUMS, *_AVERAGE),
    _f("word_frequency", "counts how often each word occurs",
       ["word_count", "word_frequency", "count_words"], ["s"], "dict", [_WORDS], *_WORD_FREQ),
    _f("char_frequency", "counts how often each character occurs",
       ["char_frequency", "count_chars", "char_count"], ["s"], "dict", [("banana",)],
       *_CHAR_FREQ),
    _f("fizzbuzz", "plays FizzBuzz up to n", ["fizzbuzz", "fizz_buzz"], ["n"], "list", [(15,)],
       *_FIZZBUZZ),
    _f("sum_even", "adds up the even numbers in a list", ["sum_even", "sum_of_evens", "even_sum"],
       ["xs"], "int", _NUMS, *_EVEN_SUM),
    _f("power", "raises a number to an integer power", ["power", "pow_int", "fast_power"], ["ab"],
       "int", [(2, 10), (3, 4)], *_POWER),
    _f("digit_sum", "adds up the digits of a number", ["digit_sum", "sum_digits", "sum_of_digits"],
       ["n"], "int", [(12345,), (907,)], *_DIGIT_SUM),
    _f("reverse_number", "reverses the digits of a number", ["reverse_number", "reverse_digits"],
       ["n"], "int", [(12345,), (120,)], *_REVERSE_NUMBER),
    _f("leap_year", "checks whether a year is a leap year", ["is_leap_year", "is_leap", "leap"],
       ["n"], "bool", [(2000,), (1900,), (2024,)], *_LEAP),
    _f("anagram", "checks whether two words are anagrams",
       ["is_anagram", "anagram", "are_anagrams"], ["s"], "bool",
       [("listen", "silent"), ("apple", "paple")], *_ANAGRAM),
    _f("remove_duplicates", "removes duplicates from a list, keeping the order",
       ["remove_duplicates", "dedupe", "unique"], ["xs"], "list", [([1, 2, 2, 3, 1, 4],)], *_DEDUP),
    _f("flatten", "flattens a nested list", ["flatten", "flatten_list"], ["xs"], "list",
       [([[1, 2], [3, 4], [5]],)], *_FLATTEN),
    _f("transpose", "transposes a matrix", ["transpose", "transpose_matrix"], ["xs"], "list",
       [([[1, 2, 3], [4, 5, 6]],)], *_TRANSPOSE),
    _f("prime_factors", "lists the prime factors of a number",
       ["prime_factors", "factorize", "get_factors"], ["n"], "list", [(360,), (97,)],
       *_PRIME_FACTORS),
    _f("sieve", "lists the primes up to n with the sieve of Eratosthenes",
       ["sieve", "primes_up_to", "sieve_of_eratosthenes"], ["n"], "list", [(30,)], *_SIEVE),
    _f("sum_of_squares", "adds up the squares of the first n numbers",
       ["sum_of_squares", "square_sum"], ["n"], "int", [(10,)], *_SQUARES),
    _f("sum_to_n", "adds up the numbers from 1 to n", ["sum_to_n", "triangular", "sum_n"], ["n"],
       "int", [(100,)], *_SUM_TO_N),
    _f("second_largest", "finds the second largest number in a list",
       ["second_largest", "runner_up"], ["xs"], "int", _NUMS, *_SECOND_LARGEST),
    _f("capitalize_words", "capitalizes every word of a sentence",
       ["capitalize_words", "title_case"], ["s"], "str", [("hello big world",)], *_CAPITALIZE),
    _f("to_binary", "converts a number to its binary digits",
       ["to_binary", "decimal_to_binary", "dec2bin"], ["n"], "str", [(10,), (255,)], *_BINARY),
    _f("collatz", "counts the steps of the Collatz sequence from n down to 1",
       ["collatz", "collatz_steps", "collatz_sequence"], ["n"], "int", [(6,), (27,)], *_COLLATZ),
    _f("perfect_number", "checks whether a number is perfect", ["is_perfect", "perfect_number"],
       ["n"], "bool", [(28,), (12,)], *_PERFECT),
    _f("armstrong", "checks whether a number is an Armstrong number",
       ["is_armstrong", "armstrong"], ["n"], "bool", [(153,), (154,)], *_ARMSTRONG),
    _f("two_sum", "finds two positions whose values add up to a target",
       ["two_sum", "find_pair", "pair_sum"], ["xs", "t"], "tuple", [([2, 7, 11, 15], 9)],
       *_TWO_SUM),
    _f("count_occurrences", "counts how often a value occurs in a list",
       ["count_occurrences", "count_value", "occurrences"], ["xs", "t"], "int",
       [([1, 2, 1, 3, 1], 1)], *_COUNT_OCC),
    _f("celsius", "converts Celsius to Fahrenheit",
       ["celsius_to_fahrenheit", "c_to_f", "to_fahrenheit"], ["n"], "float", [(100,), (37,)],
       *_CELSIUS, utility=True),
    _f("clamp", "limits a value to a range", ["clamp", "bound", "limit"], ["n"], "int",
       [(15, 0, 10), (-3, 0, 10)], *_CLAMP, utility=True),
    _f("chunks", "splits a list into chunks of a given size", ["chunks", "chunked", "batch"],
       ["xs"], "list", [([1, 2, 3, 4, 5], 2)], *_CHUNKS, utility=True),
    _f("safe_divide", "divides two numbers, or returns None for a zero divisor",
       ["safe_divide", "safe_div", "divide"], ["ab"], "float", [(10, 4), (1, 0)], *_SAFE_DIV,
       utility=True),
    _f("percentage", "expresses a part of a whole as a percentage", ["percentage", "percent"],
       ["ab"], "float", [(3, 8)], *_PERCENT, utility=True),
    _f("slugify", "turns a title into a URL slug", ["slugify", "make_slug", "to_slug"], ["s"],
       "str", [("Hello, World! 2024",)], *_SLUG, utility=True),
    _f("merge_dicts", "merges two dictionaries", ["merge_dicts", "merge", "combine"], [], "dict",
       [({"a": 1}, {"b": 2})], *_MERGE_DICTS, utility=True),
    _f("is_sorted", "checks whether a list is sorted", ["is_sorted", "sorted_check"], ["xs"],
       "bool", [([1, 2, 3],), ([3, 1],)], *_IS_SORTED, utility=True),
    _f("first_or_default", "returns the first item of a list, or a default",
       ["first", "first_or_default", "head"], ["xs"], "", [([4, 5],), ([],)], *_FIRST,
       utility=True),
)
