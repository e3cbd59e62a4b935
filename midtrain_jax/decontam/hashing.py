"""Stable 64-bit hashes of tokens and of n-grams of tokens (numpy only).

A token's hash is a polynomial hash of its bytes, ASCII letters folded to lower
case, computed for every token of a buffer at once with one prefix sum, so a
document costs a handful of vectorised passes. It does not depend on where the
token sits in the buffer. An n-gram's hash mixes its token hashes with a fixed
multiplier per position.
"""

import numpy as np

U64 = np.uint64
_P = U64(0x100000001B3)  # Odd, so it has an inverse modulo 2**64.
_Q = U64(pow(0x100000001B3, -1, 2**64))
_NGRAM_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F,
                        0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                        0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                        0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=U64)
# The longest n-gram `ngram_hashes` hashes (one multiplier per position).
MAX_NGRAM = len(_NGRAM_MULT)

_BYTE_VALUE = np.arange(1, 257, dtype=U64)  # +1 so a 0 byte still counts.
_BYTE_VALUE[ord("A"):ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1) + 1


class _Powers:
  """Grow-on-demand tables of P**i and Q**i modulo 2**64."""

  def __init__(self):
    self.p = np.ones(1, dtype=U64)
    self.q = np.ones(1, dtype=U64)

  def ensure(self, n: int):
    if n <= self.p.size:
      return
    n = max(n, 2 * self.p.size)
    p = np.full(n, _P, dtype=U64)
    q = np.full(n, _Q, dtype=U64)
    p[0] = q[0] = 1
    self.p = np.cumprod(p, dtype=U64)  # Wraps modulo 2**64, as intended.
    self.q = np.cumprod(q, dtype=U64)


_POWERS = _Powers()


def mix64(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser: spreads polynomial-hash structure over all bits."""
  x = x ^ (x >> U64(30))
  x = x * U64(0xBF58476D1CE4E5B9)
  x = x ^ (x >> U64(27))
  x = x * U64(0x94D049BB133111EB)
  return x ^ (x >> U64(31))


def span_hashes(b: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
  """Hashes of the byte spans b[starts[i]:ends[i]] (uint8 bytes -> uint64).

  sum_j v[j] * Q**j over a span, times P**start, is position-independent, so
  equal spans anywhere in `b` hash alike.
  """
  n = b.size
  _POWERS.ensure(n + 1)
  prefix = np.empty(n + 1, dtype=U64)
  prefix[0] = 0
  np.cumsum(_BYTE_VALUE[b] * _POWERS.q[:n], dtype=U64, out=prefix[1:])
  return mix64((prefix[ends] - prefix[starts]) * _POWERS.p[starts])


def ngram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
  """Hashes every run of `n` consecutive tokens (empty if fewer tokens).

  Args:
    hashes: uint64 token hashes.
    n: n-gram length, 1..MAX_NGRAM.

  Returns:
    uint64 array of length max(len(hashes) - n + 1, 0).
  """
  count = hashes.size - n + 1
  if count <= 0:
    return np.zeros(0, dtype=U64)
  acc = hashes[:count] * _NGRAM_MULT[0]
  for k in range(1, n):
    acc += hashes[k:k + count] * _NGRAM_MULT[k]
  return mix64(acc)
