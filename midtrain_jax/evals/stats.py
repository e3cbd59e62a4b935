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

A stratified sample (items drawn per subject, `benchmark_data/items.py:
stratified_indices`) is resampled the way it was drawn: within each stratum,
keeping every stratum's size (the stratified bootstrap). Resampling the pooled
items instead lets a replicate hold more of an easy subject and fewer of a hard
one, variation the sample design never has, so the plain interval is too wide
when subjects differ. The point estimate of a stratified sample is either
micro (every item weighs the same: the ratio of the pooled sums) or macro
(every stratum weighs the same: the mean of the per-stratum scores, as MMLU
averages its subjects); `summary` names which in its `average` field. A
stratum of one item shows no variance of its own (resampling it always gives
it back), so one-item strata are resampled together as one stratum (collapsed
strata): a sample of one item per subject, as MMLU's smallest, gets the plain
bootstrap.

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


def _groups(strata, n: int) -> list[np.ndarray]:
  """Positions of each stratum (in order of first appearance); one group without strata."""
  if strata is None:
    return [np.arange(n)]
  if len(strata) != n:
    raise ValueError(f"{len(strata)} strata labels for {n} values: give one per value.")
  by: dict[object, list[int]] = {}
  for i, label in enumerate(strata):
    by.setdefault(label, []).append(i)
  return [np.asarray(v) for v in by.values()]


def _statistic(num: np.ndarray, den: np.ndarray, groups: list[np.ndarray] | None
               ) -> np.ndarray:
  """Ratio of sums over the last axis (micro), or the mean of per-group ratios (macro)."""
  if groups is None:
    return num.sum(-1) / np.maximum(den.sum(-1), 1e-12)
  return np.mean([num[..., g].sum(-1) / np.maximum(den[..., g].sum(-1), 1e-12)
                  for g in groups], axis=0)


def point(values: list, strata=None, macro: bool = False) -> float:
  """The score of per-item values: BPB of [nats, bytes] pairs, else their mean.

  Args:
    values: per-item values.
    strata: one stratum label per value (needed for `macro`).
    macro: the mean of the per-stratum scores instead of the pooled one.
  """
  if not values:
    return math.nan
  num, den = _columns(values)
  return float(_statistic(num, den, _groups(strata, len(num)) if macro else None))


def _draw(rng, groups: list[np.ndarray], count: int) -> np.ndarray:
  """[count, n] resampled positions: within each group, keeping its size (stratified)."""
  parts = [g[rng.integers(0, len(g), size=(count, len(g)))] for g in groups]
  return np.concatenate(parts, axis=1)


def _layout(strata, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """(resampling groups, the columns of each stratum in a draw).

  Strata of two or more items are resampled alone; one-item strata together
  (collapsed). A draw lays the groups side by side, so a stratum's columns are
  its block, or its single column in the collapsed block.
  """
  strata_groups = _groups(strata, n)
  groups = [g for g in strata_groups if len(g) > 1]
  singles = [g for g in strata_groups if len(g) == 1]
  if singles:
    groups.append(np.concatenate(singles))
  bounds = np.cumsum([0] + [len(g) for g in groups])
  columns = [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
  if singles:
    columns = columns[:-1] + [np.array([c]) for c in columns[-1]]
  return groups, columns


def _replicates(num_a, den_a, num_b=None, den_b=None, *, samples: int, seed: int,
                strata=None, macro: bool = False) -> np.ndarray:
  """Bootstrap replicates of num_a/den_a (minus num_b/den_b, on the same draws).

  With `strata` each replicate resamples within every stratum, keeping the
  stratum sizes (`_layout`); the macro statistic reads each stratum's columns
  of the draw.
  """
  groups, columns = _layout(strata, len(num_a))
  columns = columns if macro else None
  rng = np.random.default_rng(seed)
  out = []
  for start in range(0, samples, _CHUNK):
    idx = _draw(rng, groups, min(_CHUNK, samples - start))
    stat = _statistic(num_a[idx], den_a[idx], columns)
    if num_b is not None:
      stat = stat - _statistic(num_b[idx], den_b[idx], columns)
    out.append(stat)
  return np.concatenate(out)


def ci95(values: list, *, strata=None, macro: bool = False, samples: int = BOOTSTRAP_SAMPLES,
         seed: int = BOOTSTRAP_SEED) -> float:
  """Half-width of the 95% interval of `point(values, strata, macro)` (bootstrap over items).

  Args:
    values: per-item values: [nats, bytes] pairs (BPB) or numbers (accuracy).
    strata: one stratum label per value when the items were sampled per stratum:
      the bootstrap then resamples within each stratum (see the module docstring).
    macro: the score is the mean of the per-stratum scores.
    samples: bootstrap replicates.
    seed: seed of the replicates.

  Returns:
    1.96 x the bootstrap standard error; NaN for fewer than two items.
  """
  if len(values) < 2:
    return math.nan
  num, den = _columns(values)
  return float(Z95 * _replicates(num, den, samples=samples, seed=seed, strata=strata,
                                 macro=macro).std())


def average_label(n_items: int, n_strata: int, macro: bool) -> str:
  """How a score averages its items: "macro over N subjects" or "micro over N items"."""
  if macro:
    return f"macro over {n_strata} subject{'s' if n_strata != 1 else ''}"
  return f"micro over {n_items} item{'s' if n_items != 1 else ''}"


def summary(per_item: Mapping[str, object], subsets: Mapping[str, str] | None = None,
            macro: bool = False) -> dict:
  """{value, n_items, subsets, ci95, average} of per-item values.

  Args:
    per_item: {item id: [nats, bytes] or 0/1}.
    subsets: {item id: subject} of a sample stratified over subjects: the
      interval comes from the stratified bootstrap; None counts one subset.
    macro: the score is the mean over subjects (needs `subsets`), else the
      pooled (micro) score of the items.

  Returns:
    The score, the number of items and of distinct subjects among them, the
    95% half-width (None where it cannot be estimated) and `average`, which
    says how the score averages (`average_label`).
  """
  if macro and not subsets:
    raise ValueError("A macro average needs the subsets (subjects) of the items.")
  values = list(per_item.values())
  strata = [subsets[i] for i in per_item] if subsets else None
  n_subsets = len(set(strata)) if strata else int(bool(per_item))
  return {"value": _finite(point(values, strata, macro)), "n_items": len(values),
          "subsets": n_subsets, "ci95": _finite(ci95(values, strata=strata, macro=macro)),
          "average": average_label(len(values), n_subsets, macro)}


def paired_delta(a: Mapping[str, object], b: Mapping[str, object], *,
                 subsets: Mapping[str, str] | None = None, macro: bool = False,
                 samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
  """Score of run `a` minus that of run `b` over the items both scored, with its interval.

  Args:
    a, b: per-item values of the two runs (same kind).
    subsets: {item id: subject} of a stratified sample: resample within subjects.
    macro: scores are means over subjects (needs `subsets`).
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
  strata = [subsets[i] for i in common] if subsets else None
  delta = point(values_a, strata, macro) - point(values_b, strata, macro)
  if len(common) < 2:
    return {"delta": delta, "ci95": None, "n_common": 1, "significant": None}
  reps = _replicates(*_columns(values_a), *_columns(values_b), samples=samples, seed=seed,
                     strata=strata, macro=macro)
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
