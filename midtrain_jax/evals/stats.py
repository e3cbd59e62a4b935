"""Uncertainty of benchmark scores: bootstrap intervals over items, paired deltas.

Every benchmark result keeps its per-item values (`per_item`): for BPB
`{item id: [nats, bytes]}`, for generative evals `{item id: 0 or 1}`. The score
is a statistic of them, and its uncertainty comes from resampling items:

* BPB is a ratio of sums (nats / ln 2 / bytes): a replicate resamples items and
  keeps each item's nats and bytes together;
* accuracy is the mean of the 0/1 values.

`ci95` is 1.96 times the bootstrap standard error (a normal interval), so
`value ± ci95` is exactly the interval a report prints, and a delta is
significant exactly when `|delta| > ci95`. It measures how much the score
would move on another draw of items of the same benchmark; with only a few
items, or an accuracy of 0 or 1, it is itself rough (look at `n_items`).

A comparison of two runs uses the items both scored: the paired bootstrap
resamples item ids once per replicate for both runs, so differences in item
difficulty cancel and a small consistent change is detected. Bootstrap
replicates are drawn from a fixed seed: the same inputs give the same interval.
"""
import math
from collections.abc import Mapping

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
LN2 = math.log(2.0)
# Bootstrap replicates drawn at once: bounds memory at ~8 MB per 1,000 items.
_CHUNK = 1000


def _columns(values: list) -> tuple[np.ndarray, np.ndarray]:
  """(numerators, denominators): bits and bytes of [nats, bytes] pairs; else values and ones."""
  if values and isinstance(values[0], (list, tuple)):
    array = np.asarray(values, np.float64).reshape(len(values), 2)
    return array[:, 0] / LN2, array[:, 1]
  array = np.asarray(values, np.float64)
  return array, np.ones_like(array)


def point(values: list) -> float:
  """The score of per-item values: BPB of [nats, bytes] pairs, else their mean."""
  if not values:
    return math.nan
  num, den = _columns(values)
  return float(num.sum() / max(den.sum(), 1e-12))


def _replicates(num_a, den_a, num_b=None, den_b=None, *, samples: int, seed: int
                ) -> np.ndarray:
  """Bootstrap replicates of num_a/den_a (minus num_b/den_b, on the same draws)."""
  n = len(num_a)
  rng = np.random.default_rng(seed)
  out = []
  for start in range(0, samples, _CHUNK):
    idx = rng.integers(0, n, size=(min(_CHUNK, samples - start), n))
    stat = num_a[idx].sum(1) / np.maximum(den_a[idx].sum(1), 1e-12)
    if num_b is not None:
      stat = stat - num_b[idx].sum(1) / np.maximum(den_b[idx].sum(1), 1e-12)
    out.append(stat)
  return np.concatenate(out)


def ci95(values: list, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
         ) -> float:
  """Half-width of the 95% interval of `point(values)` (bootstrap over items).

  Args:
    values: per-item values: [nats, bytes] pairs (BPB) or numbers (accuracy).
    samples: bootstrap replicates.
    seed: seed of the replicates.

  Returns:
    1.96 x the bootstrap standard error; NaN for fewer than two items.
  """
  if len(values) < 2:
    return math.nan
  num, den = _columns(values)
  return float(Z95 * _replicates(num, den, samples=samples, seed=seed).std())


def summary(per_item: Mapping[str, object], subsets: Mapping[str, str] | None = None) -> dict:
  """{value, n_items, subsets, ci95} of per-item values.

  Args:
    per_item: {item id: [nats, bytes] or 0/1}.
    subsets: {item id: subject}; None counts one subset.

  Returns:
    The score, the number of items and of distinct subjects among them, and
    the 95% half-width (None where it cannot be estimated).
  """
  values = list(per_item.values())
  n_subsets = len({subsets[i] for i in per_item}) if subsets else int(bool(per_item))
  return {"value": _finite(point(values)), "n_items": len(values), "subsets": n_subsets,
          "ci95": _finite(ci95(values))}


def paired_delta(a: Mapping[str, object], b: Mapping[str, object], *,
                 samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
  """Score of run `a` minus that of run `b` over the items both scored, with its interval.

  Args:
    a, b: per-item values of the two runs (same kind).
    samples: bootstrap replicates.
    seed: seed of the replicates.

  Returns:
    {delta, ci95, n_common, significant}: delta on the common items, the
    half-width of its paired 95% interval, how many items are shared, and
    whether the interval excludes zero (None when it cannot be estimated).
  """
  common = sorted(set(a) & set(b))
  if not common:
    return {"delta": None, "ci95": None, "n_common": 0, "significant": None}
  values_a, values_b = [a[i] for i in common], [b[i] for i in common]
  delta = point(values_a) - point(values_b)
  if len(common) < 2:
    return {"delta": delta, "ci95": None, "n_common": 1, "significant": None}
  reps = _replicates(*_columns(values_a), *_columns(values_b), samples=samples, seed=seed)
  half = float(Z95 * reps.std())
  return {"delta": delta, "ci95": half, "n_common": len(common),
          "significant": bool(abs(delta) > half)}


def split(per_item: Mapping[str, object], chosen: set[str],
          subsets: Mapping[str, str] | None = None) -> tuple[dict, dict]:
  """(summary of the items not in `chosen`, summary of those in it)."""
  inside = {i: v for i, v in per_item.items() if i in chosen}
  outside = {i: v for i, v in per_item.items() if i not in chosen}
  return summary(outside, subsets), summary(inside, subsets)


def _finite(x: float) -> float | None:
  # JSON has no NaN: an empty or one-item score is null.
  return None if x is None or not math.isfinite(x) else float(x)
