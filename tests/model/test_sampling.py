"""KV-cache decoding against the full forward pass, and sampling behaviour."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import decode_parity
from midtrain_jax.model import sampling
from midtrain_jax.model.transformer import Transformer
from tests import helpers


def _model(**overrides):
  cfg = helpers.tiny_model(**overrides)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  return cfg, graphdef, nnx.to_pure_dict(state)


def _full_logits(cfg, graphdef, params, ids):
  tokens = jnp.asarray([ids], jnp.int32)
  batch = {"inputs": tokens, "positions": jnp.arange(len(ids))[None],
           "segment_ids": jnp.ones_like(tokens)}
  model = nnx.merge(graphdef, params)
  logits, _ = model(batch["inputs"], batch["positions"], batch["segment_ids"])
  return np.asarray(logits[0])


def test_generate_matches_full_forward_with_padding_and_windows():
  """Left-padded prompts of different lengths decode exactly like separate full
  forward passes, with a sliding window (8) shorter than prompt + generation."""
  cfg, graphdef, params = _model()
  stream = helpers.stdlib_bytes(400) % cfg.vocab_size
  prompts = [stream[:13].tolist(), stream[100:105].tolist(), stream[200:220].tolist()]
  sample = sampling.SampleConfig(max_new_tokens=12, bucket=8)
  out, logits = sampling.generate(params, graphdef, cfg, prompts, sample, return_logits=True)
  for i, (prompt, new) in enumerate(zip(prompts, out)):
    assert len(new) == 12
    full = _full_logits(cfg, graphdef, params, prompt + new)
    # Logits that chose new token j come from position len(prompt) - 1 + j.
    expected = full[len(prompt) - 1:len(prompt) - 1 + 12]
    np.testing.assert_allclose(logits[i], expected, atol=5e-5, rtol=1e-5)
    assert new == expected.argmax(-1).tolist()  # Greedy.


@pytest.mark.slow  # Two 30-layer decoders compile (about a minute on two cores).
def test_deep_decoding_stays_on_the_full_forward_over_64_tokens():
  """A 30-layer GQA model in float32: every logit row a token was decoded from
  (prefill, then 64 steps through the KV cache) equals the full forward pass over
  the same tokens to 1e-4 of the logits' scale, for one prompt (width 32, cache
  96) and for four prompts of four buckets' lengths left-padded to width 48 (one
  unpadded; cache 112)."""
  cfg, graphdef, params = _model(n_layers=30, window_pattern=(16, 0))
  stream = (helpers.stdlib_bytes(2000) % cfg.vocab_size).tolist()
  for starts, lengths in (((0,), (20,)), ((100, 200, 300, 400), (3, 17, 31, 48))):
    prompts = [stream[a:a + n] for a, n in zip(starts, lengths)]
    new, decoded, forward = decode_parity.decode_vs_forward(params, graphdef, cfg, prompts,
                                                            64, bucket=16)
    assert new.shape == (len(prompts), 64)
    for i in range(len(prompts)):
      scale = np.abs(forward[i]).max()
      assert np.abs(decoded[i] - forward[i]).max() <= 1e-4 * scale, (lengths[i], scale)
    assert (forward.argmax(-1) == new).all()  # Greedy picked the forward's argmax.


def test_eos_stops_a_row_and_temperature_samples_vary():
  cfg, graphdef, params = _model()
  prompt = (helpers.stdlib_bytes(50) % cfg.vocab_size)[:10].tolist()
  greedy = sampling.generate(params, graphdef, cfg, [prompt], sampling.SampleConfig(8))[0]
  eos = greedy[2]
  cut = sampling.generate(params, graphdef, cfg, [prompt], sampling.SampleConfig(8, eos_id=eos))[0]
  assert cut == greedy[:greedy.index(eos) + 1]
  hot = sampling.SampleConfig(16, temperature=5.0)
  a = sampling.generate(params, graphdef, cfg, [prompt], hot, seed=1)[0]
  b = sampling.generate(params, graphdef, cfg, [prompt], hot, seed=2)[0]
  assert a != b and a == sampling.generate(params, graphdef, cfg, [prompt], hot, seed=1)[0]


def test_left_pad_rejects_bad_prompts():
  tokens, segments, positions = sampling.left_pad([[5, 6], [7]], 3)
  np.testing.assert_array_equal(tokens, [[0, 5, 6], [0, 0, 7]])
  np.testing.assert_array_equal(segments, [[0, 1, 1], [0, 0, 1]])
  np.testing.assert_array_equal(positions, [[0, 0, 1], [0, 0, 0]])
  try:
    sampling.left_pad([[]], 3)
  except ValueError as e:
    assert "Prompt 0 has 0 tokens" in str(e)
  else:
    raise AssertionError("empty prompt accepted")
