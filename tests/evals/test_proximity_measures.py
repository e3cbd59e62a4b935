"""The model-free proximity measure: Jensen-Shannon divergence of token distributions,
against scipy, and the order it gives constructed sources of known closeness."""
import numpy as np
import pytest
from scipy.spatial import distance

from midtrain_jax.evals import proximity_measures as proximity
from tests.helpers import small_config

VOCAB = 64


def test_js_divergence_matches_scipy():
  rng = np.random.default_rng(0)
  p, q = rng.random(VOCAB), rng.random(VOCAB)
  p[:5] = 0.0  # Zeros on one side only.
  expected = distance.jensenshannon(p, q, base=2) ** 2
  assert proximity.js_divergence(p, q) == pytest.approx(expected, rel=1e-12)
  assert proximity.js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
  disjoint = np.r_[np.ones(4), np.zeros(4)], np.r_[np.zeros(4), np.ones(4)]
  assert proximity.js_divergence(*disjoint) == pytest.approx(1.0)


def test_token_distributions_count_unigrams_and_in_document_bigrams():
  docs = [np.array([1, 2, 1]), np.array([3])]
  unigram, bigram = proximity.token_distributions(docs, 4, bigram_buckets=1 << 20)
  np.testing.assert_allclose(unigram, [0, 0.5, 0.25, 0.25])
  # (1, 2) and (2, 1); no bigram across the two documents.
  keys = [(1 * 1_000_003 + 2) % (1 << 20), (2 * 1_000_003 + 1) % (1 << 20)]
  assert sorted(np.flatnonzero(bigram)) == sorted(keys)
  np.testing.assert_allclose(bigram[keys], [0.5, 0.5])


def test_mixed_sources_sit_between_their_parts():
  rng = np.random.default_rng(1)
  target = rng.dirichlet(np.ones(VOCAB))
  unrelated = rng.dirichlet(np.ones(VOCAB) * 0.1)
  half = proximity.mixed([target, unrelated], [1.0, 1.0])
  js = [proximity.js_divergence(s, target) for s in (target, half, unrelated)]
  assert js[0] < js[1] < js[2]


def test_parse_source():
  assert proximity.parse_source("math_synthetic+web_c4") == {"math_synthetic": 0.5,
                                                               "web_c4": 0.5}
  with pytest.raises(ValueError, match="Unknown task 'nope'"):
    proximity.parse_source("nope")
  with pytest.raises(ValueError, match="names a task twice"):
    proximity.parse_source("web_c4+web_c4")


def test_constructed_sources_of_real_text_are_ordered():
  # Target: math held-out; sources: math's training split, half math and half
  # code, code alone (the demo mixture, prepared by the session fixture).
  config = small_config(1)
  data_cfg, vocab = config.data, config.model.vocab_size
  options = proximity.ProximityOptions(max_tokens=30_000)
  target = proximity.source_distributions(data_cfg, {"math_synthetic": 1.0}, vocab, options,
                                          split="heldout")
  sources = [{"math_synthetic": 1.0}, {"math_synthetic": 0.5, "code_python_stdlib": 0.5},
             {"code_python_stdlib": 1.0}]
  measured = [proximity.distances(proximity.source_distributions(data_cfg, s, vocab, options),
                                  target) for s in sources]
  for key in ("js_unigram", "js_bigram"):
    values = [m[key] for m in measured]
    assert values[0] < values[1] < values[2], (key, values)
