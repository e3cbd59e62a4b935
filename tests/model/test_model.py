"""Model correctness: attention kernels vs the reference, packing isolation, masks."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from midtrain_jax.model import attention
from midtrain_jax.model.transformer import Transformer
from tests import helpers


def _logits(cfg, batch, seed=0):
  model = Transformer(cfg, rngs=nnx.Rngs(seed))
  logits, _ = model(jnp.asarray(batch["inputs"]), jnp.asarray(batch["positions"]),
                    jnp.asarray(batch["segment_ids"]))
  return np.asarray(logits)


def test_mask_is_causal_windowed_and_per_document():
  pos = jnp.arange(6)
  seg = jnp.array([[1, 1, 1, 2, 2, 2]])
  mask = np.asarray(attention.attention_mask(pos, pos, seg, seg, window=2))[0, 0]
  expected = np.array([[1, 0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0],
                       [0, 1, 1, 0, 0, 0],
                       [0, 0, 0, 1, 0, 0],
                       [0, 0, 0, 1, 1, 0],
                       [0, 0, 0, 0, 1, 1]], bool)
  np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("norm", ["reordered", "pre"])
def test_xla_attention_matches_reference(norm):
  batch = helpers.text_batch(2, 32, docs_per_row=3)
  cfg = helpers.tiny_model(norm=norm)
  fast = _logits(cfg, batch)
  ref = _logits(dataclasses.replace(cfg, attention="reference"), batch)
  np.testing.assert_allclose(fast, ref, atol=2e-5, rtol=1e-5)


def test_packed_documents_do_not_see_each_other():
  """A document's logits are the same packed with others or alone."""
  cfg = helpers.tiny_model()
  packed = helpers.text_batch(1, 32, docs_per_row=2)
  second = {k: v[:, 16:] for k, v in packed.items()}
  second["segment_ids"] = np.ones_like(second["segment_ids"])
  np.testing.assert_allclose(_logits(cfg, packed)[:, 16:], _logits(cfg, second),
                             atol=2e-5, rtol=1e-5)


def test_sliding_window_limits_context():
  """With window 4, changing a token 4+ positions back leaves a logit unchanged."""
  cfg = helpers.tiny_model(window_pattern=(4,), last_layer_full=False, n_layers=1)
  batch = helpers.text_batch(1, 16)
  changed = {k: v.copy() for k, v in batch.items()}
  changed["inputs"][0, 3] = (changed["inputs"][0, 3] + 1) % cfg.vocab_size
  a, b = _logits(cfg, batch), _logits(cfg, changed)
  np.testing.assert_allclose(a[0, 7:], b[0, 7:], atol=1e-6)  # Token 3 is out of view.
  assert np.abs(a[0, 3:7] - b[0, 3:7]).max() > 1e-4  # Still in view.


def test_last_layer_full_and_pattern():
  cfg = helpers.tiny_model(n_layers=6, window_pattern=(8, 8, 0))
  assert cfg.layer_windows() == (8, 8, 0, 8, 8, 0)
  cfg = helpers.tiny_model(n_layers=5, window_pattern=(8, 8, 8, 0))
  assert cfg.layer_windows() == (8, 8, 8, 0, 0)


def test_tied_embeddings_and_padded_vocab():
  cfg = helpers.tiny_model(tie_embeddings=True, vocab_size=500)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  assert not hasattr(model, "lm_head")
  logits = _logits(cfg, helpers.text_batch(1, 8, vocab=500))
  assert logits.shape[-1] == 512
  assert (logits[..., 500:] < -1e30).all()  # Padding rows never predicted.


@pytest.mark.parametrize("remat", ["full", "save_dots"])
def test_remat_keeps_gradients(remat):
  from midtrain_jax.train import step as ts
  batch = {k: jnp.asarray(v) for k, v in helpers.text_batch(2, 16).items()}
  grads = {}
  for policy in ("none", remat):
    cfg = helpers.tiny_model(remat=policy)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    # Jitted, as the train step runs it (and one compile, not an eager dispatch per op).
    grads[policy] = jax.jit(jax.grad(lambda p, g=graphdef: ts.loss_fn(p, g, batch, 1e-4)[0]))(
        nnx.to_pure_dict(params))
  for a, b in zip(jax.tree.leaves(grads["none"]), jax.tree.leaves(grads[remat])):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_bfloat16_compute_is_close_to_float32():
  batch = helpers.text_batch(1, 16)
  cfg = helpers.tiny_model()
  f32 = _logits(cfg, batch)
  bf16 = _logits(dataclasses.replace(cfg, compute_dtype="bfloat16"), batch)
  # Relative to how much the logits vary: an absolute bound says nothing when a
  # small initialisation makes every logit nearly zero.
  spread = f32.std()
  err = np.abs(f32 - bf16)
  print(f"spread {spread:.4f} max err {err.max():.4f} rms err {np.sqrt((err**2).mean()):.4f}")
  assert spread > 0.1
  assert err.max() < 0.1 * spread and np.sqrt((err**2).mean()) < 0.02 * spread
  # And they agree on what comes next.
  assert (f32.argmax(-1) == bf16.argmax(-1)).mean() > 0.9
  # The head's dot returns float32 (preferred_element_type), not logits
  # rounded to bfloat16 and widened afterwards.
  on_bf16_grid = bf16 == bf16.astype(jnp.bfloat16).astype(np.float32)
  assert on_bf16_grid.mean() < 0.5


def test_bfloat16_on_cpu_keeps_the_residual_stream_in_float32():
  # Like PyTorch's CPU autocast: GEMM operands in bfloat16, activations float32.
  cfg = dataclasses.replace(helpers.tiny_model(), compute_dtype="bfloat16")
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  batch = helpers.text_batch(1, 16)
  inputs = [jnp.asarray(batch[k]) for k in ("inputs", "positions", "segment_ids")]
  jaxpr = jax.make_jaxpr(lambda: model.hidden_and_aux(*inputs))()
  residual = (1, 16, cfg.d_model)
  adds = [e.outvars[0].aval for e in jaxpr.jaxpr.eqns
          if e.primitive.name == "add" and e.outvars[0].aval.shape == residual]
  assert len(adds) >= 2 * cfg.n_layers
  assert {a.dtype for a in adds} == {jnp.dtype(jnp.float32)}
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "custom_vjp_call"]
  assert dots
  hidden, _ = model.hidden_and_aux(*inputs)
  assert hidden.dtype == jnp.bfloat16  # the output layer's GEMM operand


def test_kv_cache_decoding_matches_full_forward():
  """Prefill + token-by-token decoding reproduce the full forward's logits,
  sliding-window layers included (window 8 < 24 tokens)."""
  from midtrain_jax.model.transformer import init_cache
  cfg = helpers.tiny_model()
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  batch = helpers.text_batch(2, 24)
  tokens = jnp.asarray(batch["inputs"])
  positions = jnp.asarray(batch["positions"])
  ones = jnp.ones_like(tokens)
  full, _ = model(tokens, positions, ones)
  caches = init_cache(cfg, batch=2, max_len=32)
  prefill, caches = model(tokens[:, :10], positions[:, :10], ones[:, :10], caches)
  steps = [prefill]
  for t in range(10, 24):
    logits, caches = model(tokens[:, t:t + 1], positions[:, t:t + 1], ones[:, t:t + 1], caches)
    steps.append(logits)
  np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=3e-5, rtol=1e-5)
