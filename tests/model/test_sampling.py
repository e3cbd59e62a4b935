"""KV-cache decoding against the full forward pass, and sampling behaviour."""
import jax.numpy as jnp
import numpy as np
from flax import nnx

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
