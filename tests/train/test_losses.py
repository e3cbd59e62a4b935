"""The fused output layer + cross entropy equals the plain one: values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from midtrain_jax.parallel import sharding
from midtrain_jax.train import losses
from midtrain_jax.train import step as ts
from tests import helpers


def _reference(x_BTD, w_DV, targets_BT, weights_BT, z_loss, vocab_size):
  """Materialised logits, jax.nn.logsumexp: the textbook loss."""
  logits = jnp.einsum("btd,dv->btv", x_BTD, w_DV.astype(x_BTD.dtype),
                      preferred_element_type=jnp.float32)
  logits = jnp.where(jnp.arange(w_DV.shape[1]) < vocab_size, logits, -jnp.inf)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  ce = log_z - jnp.take_along_axis(logits, targets_BT[..., None], axis=-1)[..., 0]
  total = (weights_BT * (ce + z_loss * jnp.square(log_z))).sum()
  return total, ce, log_z


def _inputs(seed, b=4, t=24, d=16, v=40, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(b, t, d)), dtype)
  w = jnp.asarray(rng.normal(size=(d, v)) * 0.5, jnp.float32)
  targets = jnp.asarray(rng.integers(0, v - 3, (b, t)), jnp.int32)
  weights = jnp.asarray(rng.random((b, t)) > 0.2, jnp.float32)  # some padding
  return x, w, targets, weights


def test_chunk_len_divides_seq_within_budget():
  assert losses.chunk_len(16, 256, 8192, budget=8 << 20) == 16  # 16 x 16 x 8192 x 4 B = 8 MiB
  assert losses.chunk_len(4, 1024, 8192, budget=8 << 20) == 64
  assert losses.chunk_len(1, 96, 100352, budget=2 << 20) == 4   # largest divisor that fits
  assert losses.chunk_len(64, 7, 10 ** 6) == 1       # nothing fits: one position per chunk
  for b, t, v in [(3, 60, 500), (8, 128, 1000)]:
    c = losses.chunk_len(b, t, v, budget=100_000)
    assert t % c == 0 and b * c * v * 4 <= 100_000


@pytest.mark.parametrize("z_loss", [0.0, 1e-3])
@pytest.mark.parametrize("budget", [4 * 40 * 4, 4 * 6 * 40 * 4, 1 << 30])  # 24, 4 and 1 chunk(s)
def test_fused_equals_reference_values_and_gradients(monkeypatch, z_loss, budget):
  monkeypatch.setattr(losses, "_CHUNK_BYTES", budget)
  x, w, targets, weights = _inputs(0)
  vocab = 37  # the last 3 columns are padding

  def fused(x, w):
    return losses.loss_sums(x, w, targets, weights, z_loss, vocab)[0]

  def plain(x, w):
    return _reference(x, w, targets, weights, z_loss, vocab)[0]

  value, (dx, dw) = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))(x, w)
  ref_value, (ref_dx, ref_dw) = jax.value_and_grad(plain, argnums=(0, 1))(x, w)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(dx, ref_dx, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dw, ref_dw, rtol=1e-4, atol=1e-5)
  assert np.all(np.asarray(dw)[:, vocab:] == 0)  # padding columns learn nothing
  # The reported parts add up, and a scaled cotangent scales the gradient.
  total, ce_sum, z_sum = losses.loss_sums(x, w, targets, weights, z_loss, vocab)
  np.testing.assert_allclose(total, ce_sum + z_loss * z_sum, rtol=1e-6)
  dx3 = jax.grad(lambda x: 3.0 * fused(x, w))(x)
  np.testing.assert_allclose(dx3, 3.0 * ref_dx, rtol=1e-4, atol=1e-5)


def test_token_losses_equal_reference(monkeypatch):
  monkeypatch.setattr(losses, "_CHUNK_BYTES", 4 * 3 * 40 * 4)  # 8 chunks
  x, w, targets, weights = _inputs(1)
  ce, log_z = losses.token_losses(x, w, targets, 40)
  _, ref_ce, ref_log_z = _reference(x, w, targets, weights, 0.0, 40)
  np.testing.assert_allclose(ce, ref_ce, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_z, ref_log_z, rtol=1e-5, atol=1e-5)


def test_bfloat16_inputs_match_reference_within_bf16():
  x, w, targets, weights = _inputs(2, dtype=jnp.bfloat16)
  grad = jax.grad(lambda x, w: losses.loss_sums(x, w, targets, weights, 0.0, 40)[0],
                  argnums=(0, 1))
  dx, dw = grad(x, w)
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
  ref_dx, ref_dw = jax.grad(lambda x, w: _reference(x, w, targets, weights, 0.0, 40)[0],
                            argnums=(0, 1))(x.astype(jnp.float32), w)
  np.testing.assert_allclose(np.asarray(dx, np.float32), ref_dx, rtol=0.05, atol=0.02)
  np.testing.assert_allclose(dw, ref_dw, rtol=0.05, atol=0.05)


def test_sharded_equals_single_device_and_chunks_follow_the_rows_per_device(monkeypatch):
  x, w, targets, weights = _inputs(3, b=8)
  # 2 positions of 8 rows fit the budget; the 2 rows a device holds on a batch
  # split 4 ways (data 2 x fsdp 2) take 8 positions per chunk.
  monkeypatch.setattr(losses, "_CHUNK_BYTES", 8 * 2 * 40 * 4)
  assert losses._n_chunks(x, w) == 12
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})

  def grads(x, w, t, wt):
    return jax.value_and_grad(lambda x, w: losses.loss_sums(x, w, t, wt, 1e-3, 37)[0],
                              argnums=(0, 1))(x, w)

  with jax.set_mesh(mesh):
    assert sharding.batch_shards() == 4 and losses._n_chunks(x, w) == 3
    put = lambda a, axes: jax.device_put(a, sharding.named_sharding(mesh, axes, a.shape))
    sharded = jax.jit(grads)(put(x, ("batch", "seq", None)), put(w, ("embed", "vocab")),
                             put(targets, ("batch", "seq")), put(weights, ("batch", "seq")))
  single = jax.jit(grads)(x, w, targets, weights)
  for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_model_loss_and_gradients_equal_the_materialised_loss(tied):
  """Through the model: tied or untied head, padded vocabulary, packed documents, z-loss."""
  cfg = helpers.tiny_model(tie_embeddings=tied, vocab_size=500)
  assert cfg.padded_vocab_size > cfg.vocab_size
  params = ts.init_params(cfg, jax.random.key(0))
  graphdef = ts.abstract_model(cfg)[0]
  batch = {k: jnp.asarray(v) for k, v in helpers.text_batch(4, 32, vocab=500,
                                                               docs_per_row=2).items()}

  def materialised(params):
    logits, _ = nnx.merge(graphdef, params)(batch["inputs"], batch["positions"],
                                           batch["segment_ids"])
    w = (batch["segment_ids"] > 0).astype(jnp.float32)
    total, _, _ = _reference_from_logits(logits, batch["targets"], w, 1e-3)
    return total

  fused = lambda params: ts.loss_sums(params, graphdef, batch, 1e-3)[0]
  value, grads = jax.jit(jax.value_and_grad(fused))(params)
  ref_value, ref_grads = jax.jit(jax.value_and_grad(materialised))(params)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def _reference_from_logits(logits, targets, weights, z_loss):
  log_z = jax.nn.logsumexp(logits, axis=-1)
  ce = log_z - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return (weights * (ce + z_loss * jnp.square(log_z))).sum(), ce, log_z
