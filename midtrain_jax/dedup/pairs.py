"""Which documents are compared and how a pair is verified: shared by every runner.

Two kinds of keys come from a fingerprint:
  group keys    (level, key) of the levels that need no verification: the
                exact key, and the code key. Documents with the same group key
                are duplicates at that level (similarity 1).
  bucket keys   (kind, key) of the levels found by hashing: MinHash band keys
                ("minhash"), SimHash band keys ("simhash"), semantic band keys
                ("semantic"). Documents sharing a bucket key are candidates; a
                candidate pair is a duplicate when `similarity` verifies it.

A level is skipped for a document without a fingerprint there (no words, or an
exact-only task): it gets no key of that level.
"""
import functools

import numpy as np

from midtrain_jax.dedup import simhash
from midtrain_jax.dedup.params import DedupParams

# The levels from strictest to loosest: a removed document's match names the
# strictest level among its own verified pairs.
STRICTNESS = ("exact", "code", "near", "semantic")
RANK = {level: rank for rank, level in enumerate(STRICTNESS)}
LEVEL_OF = {"minhash": "near", "simhash": "near", "semantic": "semantic"}


@functools.cache
def _simhash_bands(max_distance: int) -> simhash.SimHashIndex:
  return simhash.SimHashIndex(max_distance)


def group_keys(fp, params: DedupParams) -> list[tuple[str, bytes]]:
  """(level, key) of the exact and code levels on for this fingerprint."""
  out = []
  if "exact" in params.levels:
    out.append(("exact", fp.exact))
  if "code" in params.levels and fp.code is not None:
    out.append(("code", fp.code))
  return out


_MASK64 = (1 << 64) - 1


def _signed(key: int) -> int:
  """A 64-bit key as a signed 64-bit int: Beam encodes those as integers, larger ones
  by pickling, which does not always give equal keys equal bytes (they would not meet)."""
  return key - (1 << 64) if key >= 1 << 63 else key


def _simhash_key(key: int) -> int:
  band, bits = key >> simhash.BITS, key & _MASK64  # Band number above the band's bits.
  return _signed((bits ^ (band * 0x9E3779B97F4A7C15)) & _MASK64)


def bucket_keys(fp, params: DedupParams) -> list[tuple[str, int]]:
  """(kind, key) of the hash buckets the fingerprint lands in (keys fit in int64)."""
  out = []
  if params.uses_minhash and fp.band_keys is not None:
    out += [("minhash", _signed(int(k))) for k in fp.band_keys]
  if params.uses_simhash and fp.simhash is not None:
    out += [("simhash", _simhash_key(k))
            for k in _simhash_bands(params.simhash_distance).keys(fp.simhash)]
  if "semantic" in params.levels and fp.embedding is not None and fp.semantic_keys is not None:
    out += [("semantic", int(k)) for k in fp.semantic_keys]
  return out


KINDS = ("minhash", "simhash", "semantic")


def kind_rows(kind: str, fps, params: DedupParams
              ) -> tuple[list[int], np.ndarray, np.ndarray]:
  """A batch's bucket keys and prints of one kind, as arrays (the columnar `bucket_keys`).

  Args:
    kind: the bucket kind.
    fps: fingerprints.
    params: the settings (the levels on).

  Returns:
    (positions in `fps` of the fingerprints with keys of `kind`, their keys
    int64 [m, keys each] as `bucket_keys` gives them, their prints as
    `pair_scores` compares them: uint32 [m, num_perm], uint64 [m] or float32 [m, D]).
  """
  if kind == "minhash":
    found = [i for i, fp in enumerate(fps) if params.uses_minhash and fp.band_keys is not None]
    keys = np.array([fps[i].band_keys for i in found], np.uint64).view(np.int64)
    prints = np.array([fps[i].signature for i in found], np.uint32)
  elif kind == "simhash":
    found = [i for i, fp in enumerate(fps) if params.uses_simhash and fp.simhash is not None]
    bands = _simhash_bands(params.simhash_distance)
    keys = np.array([[_simhash_key(k) for k in bands.keys(fps[i].simhash)] for i in found],
                    np.int64)
    prints = np.array([fps[i].simhash for i in found], np.uint64)
  elif kind == "semantic":
    found = [i for i, fp in enumerate(fps) if "semantic" in params.levels
             and fp.embedding is not None and fp.semantic_keys is not None]
    keys = np.array([fps[i].semantic_keys for i in found], np.int64)
    prints = np.array([fps[i].embedding for i in found], np.float32)
  else:
    raise ValueError(f"Unknown bucket kind {kind!r}; expected minhash, simhash or semantic.")
  return found, keys.reshape(len(found), -1) if found else keys, prints


def similarities(kind: str, fp, others, params: DedupParams) -> list[float | None]:
  """The verified similarity of `fp` with each of `others` (None: not a duplicate).

  Args:
    kind: the bucket kind ("minhash", "simhash" or "semantic").
    fp: a fingerprint.
    others: fingerprints it is compared with (its bucket's anchors), compared
      together in one array operation.
    params: the thresholds.
  """
  if not others:
    return []
  if kind == "minhash":
    equal = np.count_nonzero(np.stack([o.signature for o in others]) == fp.signature, axis=1)
    scores = equal / fp.signature.shape[-1]
    return [float(s) if s >= params.jaccard else None for s in scores]
  if kind == "simhash":
    out = []
    for other in others:
      distance = simhash.hamming(fp.simhash, other.simhash)
      out.append(1.0 - distance / simhash.BITS if distance <= params.simhash_distance else None)
    return out
  if kind == "semantic":
    # Elementwise products summed per row in float64: the same score for a pair
    # whatever the other rows (a matrix product's rounding depends on its shape).
    matrix = np.stack([o.embedding for o in others]).astype(np.float64)
    scores = (matrix * fp.embedding.astype(np.float64)).sum(axis=1)
    return [float(s) if s >= params.semantic_threshold else None for s in scores]
  raise ValueError(f"Unknown bucket kind {kind!r}; expected minhash, simhash or semantic.")


def better(a: tuple | None, b: tuple | None) -> tuple | None:
  """The better of two (level rank, -similarity, ...) records (None: no record)."""
  if a is None:
    return b
  if b is None:
    return a
  return min(a, b)


def pair_scores(kind: str, rows: np.ndarray, a: np.ndarray, b: np.ndarray,
                params: DedupParams) -> np.ndarray:
  """float64 [pairs]: the verified similarity of rows a[i] and b[i] of `rows`, -1 if not.

  Args:
    kind: the bucket kind.
    rows: the prints of a kind (`kind_rows`), anything that gathers rows by an
      int array of row numbers (an array, or columns.Blocks).
    a, b: row numbers of the pairs.
    params: the thresholds.
  """
  if kind == "minhash":
    scores = (rows[a] == rows[b]).sum(axis=1) / rows.shape[1]
    return np.where(scores >= params.jaccard, scores, -1.0)
  if kind == "simhash":
    distance = np.bitwise_count(rows[a] ^ rows[b]).astype(np.float64)
    return np.where(distance <= params.simhash_distance, 1.0 - distance / simhash.BITS, -1.0)
  if kind == "semantic":
    # float64 products of each pair summed on its own: the score `similarities` gives.
    scores = (rows[a].astype(np.float64) * rows[b].astype(np.float64)).sum(axis=1)
    return np.where(scores >= params.semantic_threshold, scores, -1.0)
  raise ValueError(f"Unknown bucket kind {kind!r}; expected minhash, simhash or semantic.")
