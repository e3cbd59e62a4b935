"""Quality-aware upsampling: buckets, copies per pass, sampled shares, resume, config, listing."""
import json

import grain
import numpy as np
import pytest

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.load import pipeline, upsampling
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import qau_scores
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.data.reports import listing
from midtrain_jax.data.reports import qau as qau_report
from tests import helpers
from tests.data import demo_data

# Distinct, partly fractional factors, and a task with its own.
FACTORS = (1.0, 1.5, 3.0, 6.5)
OWT_FACTORS = (1.2, 2.0, 4.0, 7.0)
WEIGHTS = {"math_synthetic": 0.6, "web_openwebtext": 0.4}


def _qau_cfg(enabled: bool = True, **overrides):
  cfg = demo_data.data_cfg(**overrides)
  cfg.qau.update(enabled=enabled, factors=FACTORS,
                 task_factors={"web_openwebtext": OWT_FACTORS})
  return cfg


def test_buckets_hold_their_quantile_of_the_documents():
  scores = np.random.default_rng(0).random(1000)
  bucket = upsampling.buckets(scores, (0.5, 0.8, 0.95))
  np.testing.assert_array_equal(np.bincount(bucket), [500, 300, 150, 50])
  order = np.argsort(scores)
  assert np.all(np.diff(bucket[order]) >= 0)  # Higher scores, higher buckets.
  assert upsampling.buckets(np.zeros(10), (0.5,)).tolist() == [0] * 5 + [1] * 5  # Ties: by rank.


def test_each_pass_holds_every_document_its_factor_times():
  factors = np.repeat([0.5, 1.0, 1.2, 2.0, 6.5], 200)
  passes = 10
  ds = upsampling.UpsampledDataset(grain.MapDataset.range(len(factors)), factors, passes, seed=3)
  drawn = np.array([ds[i] for i in range(len(ds))])
  counts = np.bincount(drawn, minlength=len(factors))
  # Over E passes a document appears floor(f * E) or ceil(f * E) times.
  assert np.all(counts >= np.floor(factors * passes))
  assert np.all(counts <= np.ceil(factors * passes))
  np.testing.assert_allclose(len(ds), factors.sum() * passes, rtol=0.01)
  first = drawn[:len(ds.pass_order(0))]
  # Within a pass: every document of factor >= 1 at least once, and shuffled.
  assert set(np.flatnonzero(factors >= 1)) <= set(first)
  assert not np.all(np.diff(first) >= 0)
  again = upsampling.UpsampledDataset(grain.MapDataset.range(len(factors)), factors, passes, seed=3)
  np.testing.assert_array_equal([again[i] for i in range(len(again) - 1, -1, -1)], drawn[::-1])
  other = upsampling.UpsampledDataset(grain.MapDataset.range(len(factors)), factors, passes, seed=4)
  assert [other[i] for i in range(50)] != drawn[:50].tolist()


def _sampling_sigma(cfg, task: str, docs_drawn: float) -> np.ndarray:
  """Standard error of each bucket's token share when `docs_drawn` documents are
  drawn without replacement from one pass of the upsampled task."""
  scored = qau_scores.ensure_scores(cfg, cfg.data_dir, [task])[task]
  bucket = upsampling.buckets(scored["scores"], cfg.qau.quantiles)
  copies = np.asarray(upsampling.factors_of(cfg.qau, task))[bucket]
  length = scored["tokens"].astype(np.float64)
  population = copies.sum()
  sigma = []
  for b in range(len(cfg.qau.quantiles) + 1):
    share = np.dot(copies, length * (bucket == b)) / np.dot(copies, length)
    z2 = np.dot(copies, (length * ((bucket == b) - share)) ** 2) / population
    mean = np.dot(copies, length) / population
    sigma.append(np.sqrt((1 - docs_drawn / population) * z2 / docs_drawn) / mean)
  return np.array(sigma)


@pytest.mark.parametrize("enabled", [True, False])
def test_sampled_bucket_shares_follow_the_factors(enabled):
  cfg = _qau_cfg(enabled, weights=WEIGHTS)
  tokens = 400_000
  rows = {r["task"]: r for r in qau_report.bucket_table(cfg, cfg.data_dir, WEIGHTS, tokens)}
  sampled = qau_report.sampled_shares(cfg, seed=0, tokens=tokens)
  for task in WEIGHTS:
    buckets = rows[task]["buckets"]
    assert [b["factor"] for b in buckets] == list(OWT_FACTORS if "web" in task else FACTORS)
    configured = np.array([b["share_after"] for b in buckets])
    before = np.array([b["share_before"] for b in buckets])
    np.testing.assert_allclose(configured, before * np.array([b["factor"] for b in buckets]) /
                               np.dot(before, [b["factor"] for b in buckets]))
    got = sampled[task]["tokens"] / sampled[task]["tokens"].sum()
    sigma = _sampling_sigma(cfg, task, sampled[task]["docs"].sum())
    want = configured if enabled else before
    assert np.all(np.abs(got - want) < 4 * sigma), (task, got, want, sigma)
    # The factors move the top bucket far beyond sampling error: the test can tell.
    assert abs(configured[-1] - before[-1]) > 6 * sigma[-1], (task, configured, before, sigma)
  assert sampled["web_c4"]["docs"].sum() == 0  # Weight 0: never drawn.


def test_resume_with_qau_gives_identical_batches():
  cfg = _qau_cfg(seq_len=128, batch_size=4, loader_shards=2)
  first = pipeline.make_train_iterator(cfg, seed=5)
  for _ in range(7):
    next(first)
  state = json.loads(json.dumps(first.get_state()))  # As stored in a checkpoint.
  expected = [next(first) for _ in range(10)]
  resumed = pipeline.make_train_iterator(cfg, seed=5)
  resumed.set_state(state)
  for want, got in zip(expected, [next(resumed) for _ in range(10)]):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
  plain = pipeline.make_train_iterator(_qau_cfg(False, seq_len=128, batch_size=4,
                                                loader_shards=2), seed=5)
  assert not np.array_equal(next(plain)["inputs"], next(pipeline.make_train_iterator(
      cfg, seed=5))["inputs"])  # QAU changed the data.


@pytest.mark.slow  # Three short training runs (~40 s on two cores).
def test_training_resumes_exactly_with_qau(tmp_path):
  def config(steps):
    c = helpers.small_config(steps, data_dir=demo_data.prepared_dir(), prepare_if_missing=False)
    c.data.qau.update(enabled=True, factors=FACTORS)
    c.eval.batches = 0
    return c
  # The preparation scores the documents (the loader only reads the scores).
  preparation.ensure_prepared(config(1).data, log=lambda _: None)
  helpers.assert_resumes_exactly(config, tmp_path)


@pytest.mark.parametrize("key, value, message", [
    ("quantiles", (0.5, 0.5), "data.qau.quantiles=.*strictly increasing"),
    ("quantiles", (0.0, 0.5), "data.qau.quantiles"),
    ("quantiles", (0.5, 1.2), "data.qau.quantiles"),
    ("factors", (1.0, 2.0, 0.0, 7.0), r"data.qau.factors=.*> 0"),
    ("factors", (1.0, -2.0, 3.0, 7.0), "data.qau.factors"),
    ("factors", (1.0, 2.0, 7.0), r"data.qau.factors=.*4 finite numbers"),
    ("factors", (1.0, 2.0, float("inf"), 7.0), "data.qau.factors"),
    ("task_factors", {"web_c4": (1.0, 2.0)}, "data.qau.task_factors.web_c4"),
    ("negative_tasks", ("web_c4", "web_wikipedia"), "both positive_tasks and negative_tasks"),
    ("positive_tasks", (), "data.qau.positive_tasks"),
    ("scorer_docs", 0, "data.qau.scorer_docs"),
])
def test_bad_qau_settings_fail_naming_the_key(key, value, message):
  c = config_lib.base_config("tiny")
  c.data.qau[key] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c)


def test_unknown_task_in_task_factors_fails_before_any_data_work():
  cfg = _qau_cfg()
  cfg.qau.task_factors = {"web_c5": FACTORS}
  with pytest.raises(ValueError, match="data.qau.task_factors.web_c5: Unknown task"):
    pipeline.make_train_iterator(cfg, seed=0)


def test_listing_shows_tokens_before_and_after_qau_and_epochs_per_bucket():
  cfg = _qau_cfg()
  budget = 2_000_000
  text = listing.listing("dolmino_demo", cfg.data_dir, cfg, budget)
  assert "QUALITY-AWARE UPSAMPLING" in text and f"epochs at {budget:,} tokens" in text
  scored = qau_scores.ensure_scores(cfg, cfg.data_dir, ["web_openwebtext"])["web_openwebtext"]
  bucket = upsampling.buckets(scored["scores"], cfg.qau.quantiles)
  per_bucket = np.bincount(bucket, weights=scored["tokens"])
  after = int(round(np.dot(per_bucket, OWT_FACTORS)))
  before = layout.read_stats(cfg.data_dir, "web_openwebtext")["train_tokens"]
  line = next(t for t in text.splitlines() if t.strip().startswith("web_openwebtext ") and
              "passes" in t)
  assert f"{before:,}" in line and f"{after:,}" in line
  # Passes at the budget: the task's share of it over its upsampled tokens, then x factor.
  rates = catalog.get_mixture("dolmino_demo").rates
  passes = budget * rates["web_openwebtext"] / sum(rates.values()) / after
  assert f"{passes:.2f} passes" in line
  top = text.splitlines()[text.splitlines().index(line) + 4]
  assert top.split()[0] == "q0.95-1.00" and top.split()[-1] == f"{7.0 * passes:.2f}"
  no_qau = listing.listing("dolmino_demo", cfg.data_dir)
  assert "QUALITY-AWARE" not in no_qau


def test_listing_header_shows_the_scorers_heldout_accuracy():
  cfg = _qau_cfg()
  lines = qau_report.listing_lines(cfg, cfg.data_dir, catalog.get_mixture("dolmino_demo").rates)
  heldout = qau_report.scorer_heldout(cfg.data_dir)
  assert heldout["docs"] > 500 and heldout["accuracy"] > 0.88
  assert lines[0].startswith("QUALITY-AWARE UPSAMPLING")
  assert f"scorer held-out accuracy {heldout['accuracy']:.3f} on {heldout['docs']:,} docs" in \
      lines[0]
