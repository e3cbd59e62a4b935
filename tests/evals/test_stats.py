"""The stratified item sample, bootstrap intervals and paired deltas of benchmark scores."""
import collections
import math

import numpy as np
import pytest

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.evals import stats, tables


def _subjects(chosen):
  return collections.Counter(benchmarks.subset_of(it) for it in chosen)


def test_sample_covers_every_subject_of_mmlu_and_math():
  mmlu = benchmarks.sample_items("mmlu", 32, seed=0)
  assert len(mmlu) == 57 and len(_subjects(mmlu)) == 57  # At least one per subject.
  math_items = benchmarks.sample_items("math", 32, seed=0)
  counts = _subjects(math_items)
  assert len(math_items) == 32 and set(counts) == set(benchmarks._MATH_SUBJECTS)
  # Beyond one per subject, in proportion to the subject's size (algebra is the largest).
  assert counts.most_common(1)[0][0] == "algebra"
  gsm8k = benchmarks.sample_items("gsm8k", 32, seed=0)
  assert len(gsm8k) == 32 and _subjects(gsm8k) == {"gsm8k": 32}
  assert benchmarks.subset_of(benchmarks.load_items("humaneval")[0]) == "humaneval"


def test_sample_is_deterministic_differs_with_the_seed_and_0_means_all():
  ids = [it.id for it in benchmarks.sample_items("math", 40, seed=0)]
  assert ids == [it.id for it in benchmarks.sample_items("math", 40, seed=0)]
  assert len(set(ids)) == 40
  other = [it.id for it in benchmarks.sample_items("math", 40, seed=1)]
  assert len(other) == 40 and set(other) != set(ids)
  mmlu = {it.id for it in benchmarks.sample_items("mmlu", 57, seed=0)}
  assert mmlu != {it.id for it in benchmarks.sample_items("mmlu", 57, seed=1)}
  # Canonical order, and a larger sample of the same seed extends a smaller one.
  everything = benchmarks.load_items("math")
  order = {it.id: i for i, it in enumerate(everything)}
  assert [order[i] for i in ids] == sorted(order[i] for i in ids)
  larger = {it.id for it in benchmarks.sample_items("math", 400, seed=0)}
  assert len(set(ids) - larger) <= 2
  assert len(benchmarks.sample_items("math", 0)) == len(everything) == 5000
  assert len(benchmarks.sample_items("humaneval", 10_000)) == 164
  assert benchmarks.sample_size(14042, 57, 32) == 57


def test_allocation_is_exact_and_proportional():
  sizes = {"a": 1000, "b": 300, "c": 100, "d": 1}
  counts = benchmarks._allocate(sizes, 100)
  assert sum(counts.values()) == 100 and counts["d"] == 1
  assert all(1 <= counts[s] <= sizes[s] for s in sizes)
  assert abs(counts["a"] - 1 - 96 * 999 / 1397) < 1 and abs(counts["c"] - 1 - 96 * 99 / 1397) < 1


def test_ci_of_an_accuracy_matches_the_binomial_standard_error():
  values = [1] * 120 + [0] * 280  # p = 0.3 over 400 items.
  expected = stats.Z95 * math.sqrt(0.3 * 0.7 / 400)
  assert math.isclose(stats.ci95(values), expected, rel_tol=0.05)
  summary = stats.summary({str(i): v for i, v in enumerate(values)})
  assert summary["value"] == pytest.approx(0.3) and summary["n_items"] == 400
  assert summary["subsets"] == 1 and summary["ci95"] == stats.ci95(values)  # Seeded.
  assert stats.summary({"a": 1})["ci95"] is None  # One item: no interval, not 0.


def test_ci_of_bpb_covers_the_true_ratio_about_95_percent_of_the_time():
  rng = np.random.default_rng(0)
  true_bpb, covered, trials = 0.8, 0, 200
  for _ in range(trials):
    n_bytes = rng.integers(20, 400, size=100)
    # Per-item BPB varies a lot around the truth; nats and bytes stay together.
    nats = n_bytes * true_bpb * math.log(2) * rng.gamma(4.0, 0.25, size=100)
    values = [[float(a), int(b)] for a, b in zip(nats, n_bytes)]
    value, half = stats.point(values), stats.ci95(values, samples=400)
    covered += abs(value - true_bpb) <= half
  assert 0.89 <= covered / trials <= 0.99, covered


def _bpb_run(rng, n=200, scale=1.0):
  n_bytes = rng.integers(20, 400, size=n)
  nats = n_bytes * math.log(2) * rng.lognormal(0.0, 0.6, size=n)  # Items differ a lot.
  return {f"item/{i}": [float(a) * scale, int(b)] for i, (a, b) in enumerate(zip(nats, n_bytes))}


def test_paired_delta_finds_a_small_consistent_change_and_not_noise():
  rng = np.random.default_rng(1)
  base = _bpb_run(rng)
  better = {i: [nats * 0.97 * rng.uniform(0.99, 1.01), b] for i, (nats, b) in base.items()}
  paired = stats.paired_delta(better, base)
  assert paired["significant"] and paired["delta"] < 0 and paired["n_common"] == 200
  # The change is far smaller than either run's own interval: pairing is what finds it.
  assert abs(paired["delta"]) < stats.summary(base)["ci95"]
  same = stats.paired_delta(base, dict(base))
  assert same == {"delta": 0.0, "ci95": 0.0, "n_common": 200, "significant": False}
  # The same values on other items (a shuffle): equal score, wide paired interval.
  ids = list(base)
  shuffled = dict(zip(ids, [base[i] for i in rng.permutation(ids)]))
  noise = stats.paired_delta(shuffled, base)
  assert not noise["significant"] and noise["ci95"] > 0.01
  # Only the items both runs scored count.
  part = stats.paired_delta({i: better[i] for i in ids[:50]}, base)
  assert part["n_common"] == 50
  assert stats.paired_delta({"x": 1}, {"y": 0})["delta"] is None


def test_comparison_table_prints_the_interval_and_marks_significance():
  rng = np.random.default_rng(2)
  base = _bpb_run(rng)
  better = {i: [nats * 0.9, b] for i, (nats, b) in base.items()}
  accuracy = {i: int(k % 3 == 0) for k, i in enumerate(base)}

  def results(per_item):
    return {"benchmark_bpb": {"gsm8k": {"bpb": stats.point(list(per_item.values())),
                                        "per_item": per_item}},
            "generative": {"gsm8k": {"score": 1 / 3, "per_item": accuracy}}}

  named = {"web": results(base), "twin": results(dict(base)), "mix": results(better)}
  rows = {r["run"]: r for r in tables.comparison_rows(named, baseline="web")}
  assert rows["mix"]["sig/delta_bench/gsm8k"] and not rows["twin"]["sig/delta_bench/gsm8k"]
  assert rows["mix"]["delta_bench/gsm8k"] == pytest.approx(
      stats.point(list(better.values())) - stats.point(list(base.values())))
  text = tables.format_comparison(named, baseline="web")
  line = next(line for line in text.splitlines() if line.startswith("gsm8k BPB"))
  mix = rows["mix"]
  assert line.split()[2:] == ["200", "+0.000", "±", "0.000", f"{mix['delta_bench/gsm8k']:+.3f}",
                              "±", f"{mix['ci95/delta_bench/gsm8k']:.3f}", "*"]
  assert tables.SIGNIFICANCE_LEGEND in text
  # Results without per-item values (older files, averages) print the bare delta.
  old = {"a": {"benchmark_bpb": {"gsm8k": {"bpb": 1.0}}},
         "b": {"benchmark_bpb": {"gsm8k": {"bpb": 0.9}}}}
  text = tables.format_table(tables.comparison_rows(old, "a"), ["delta_bench/gsm8k"])
  assert "-0.100" in text and "±" not in text and tables.SIGNIFICANCE_LEGEND not in text


def test_comparison_splits_the_delta_into_clean_and_contaminated_items():
  rng = np.random.default_rng(3)
  control = _bpb_run(rng)
  leaked = set(list(control)[:40])
  leak = {i: [nats * (0.6 if i in leaked else 1.0), b] for i, (nats, b) in control.items()}

  def results(per_item, dirty, status="recorded"):
    record = {"status": status, "contaminated_ids": sorted(dirty)}
    return {"benchmark_bpb": {"gsm8k": {"bpb": stats.point(list(per_item.values())),
                                        "per_item": per_item, "contamination": record}}}

  named = {"control": results(control, set()), "leak": results(leak, leaked)}
  row = tables.comparison_rows(named, baseline="control")[1]
  assert row["sig/delta_bench/gsm8k"] and row["delta_bench/gsm8k"] < 0
  assert row["sig/delta_bench/gsm8k/contaminated"]
  assert row["n/delta_bench/gsm8k/contaminated"] == 40
  assert row["delta_bench/gsm8k/clean"] == 0 and not row["sig/delta_bench/gsm8k/clean"]
  assert row["n/delta_bench/gsm8k/clean"] == 160
  text = tables.format_comparison(named, baseline="control")
  assert "gsm8k BPB, contaminated items  40" in text and "gsm8k BPB, clean items" in text
  # Without a record for both runs there is no split (never a guess).
  named["control"] = results(control, set(), status="unknown")
  assert "delta_bench/gsm8k/clean" not in tables.comparison_rows(named, "control")[1]


def _stratified_sample(rng):
  """Three subjects of very different accuracy (0.05, 0.5, 0.95), 60/100/40 items each."""
  sizes, means = (60, 100, 40), (0.05, 0.5, 0.95)
  values, strata = [], []
  for k, (n, p) in enumerate(zip(sizes, means)):
    values += rng.binomial(1, p, size=n).tolist()
    strata += [f"s{k}"] * n
  return values, strata


def test_stratified_bootstrap_matches_the_analytic_standard_error_and_is_narrower():
  values, strata = _stratified_sample(np.random.default_rng(4))
  n = len(values)
  array, labels = np.asarray(values, float), np.asarray(strata)
  # Stratified standard error of the pooled mean: sum_h (n_h / n)^2 var_h / n_h, with
  # the plug-in variance (ddof 0), which is what resampling n_h of n_h draws has.
  analytic = math.sqrt(sum((np.sum(labels == s) / n) ** 2 * array[labels == s].var()
                           / np.sum(labels == s) for s in set(strata)))
  stratified = stats.ci95(values, strata=strata, samples=8000)
  plain = stats.ci95(values, samples=8000)
  assert math.isclose(stratified, stats.Z95 * analytic, rel_tol=0.05), (stratified, analytic)
  assert math.isclose(plain, stats.Z95 * array.std() / math.sqrt(n), rel_tol=0.05)
  # Between-subject variance no longer counts: sqrt(0.149 / 0.248) = 0.78 expected.
  assert stratified < 0.9 * plain
  # The macro average: mean of subject means; its SE sums var_h / n_h / H^2.
  macro = stats.ci95(values, strata=strata, macro=True, samples=8000)
  analytic_macro = math.sqrt(sum(array[labels == s].var() / np.sum(labels == s)
                                 for s in set(strata))) / 3
  assert math.isclose(macro, stats.Z95 * analytic_macro, rel_tol=0.05)
  assert stats.point(values, strata, macro=True) == pytest.approx(
      np.mean([array[labels == s].mean() for s in ("s0", "s1", "s2")]))


def test_summary_names_its_average_and_resamples_within_subjects():
  values, strata = _stratified_sample(np.random.default_rng(5))
  per_item = {str(i): v for i, v in enumerate(values)}
  subsets = dict(zip(per_item, strata))
  micro = stats.summary(per_item, subsets)
  assert micro["average"] == "micro over 200 items" and micro["subsets"] == 3
  assert micro["ci95"] == stats.ci95(values, strata=strata)
  macro = stats.summary(per_item, subsets, macro=True)
  assert macro["average"] == "macro over 3 subjects"
  assert macro["value"] == pytest.approx(stats.point(values, strata, macro=True))
  with pytest.raises(ValueError, match="macro average needs the subsets"):
    stats.summary(per_item, macro=True)
  with pytest.raises(ValueError, match="one per value"):
    stats.ci95(values, strata=strata[:-1])
  # Paired deltas resample within subjects too: a constant shift has no spread.
  shifted = {i: v for i, v in per_item.items()}
  shifted["0"] = 1 - shifted["0"]
  d = stats.paired_delta(shifted, per_item, subsets=subsets)
  assert d["n_common"] == 200 and d["ci95"] > 0


def test_one_item_strata_are_resampled_together():
  values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
  # One item per subject (MMLU's smallest sample): the plain bootstrap, not a zero interval.
  singles = [f"s{i}" for i in range(10)]
  assert stats.ci95(values, strata=singles) == stats.ci95(values) > 0
  assert stats.ci95(values, strata=singles, macro=True) == pytest.approx(stats.ci95(values))
  # Mixed: the two-item strata alone, the singletons pooled; still a positive interval.
  mixed = ["a", "a", "b", "b"] + singles[4:]
  assert 0 < stats.ci95(values, strata=mixed) <= stats.ci95(values)
