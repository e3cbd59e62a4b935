"""The response loss mask in the train step: packed chat examples, as packing makes them.

Examples are (tokens, token mask) like stored chat documents (data/chat.py),
packed into rows by `packing.assemble_row`; the step's loss and gradients are
compared with a reference computed from the model's own logits (its unfused
output layer) with numpy, example by example.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from midtrain_jax.data.load import packing
from midtrain_jax.train import step as ts
from tests import helpers

SEQ, PAD = 48, 0


def _example(rng, prompt: int, response: int) -> tuple[np.ndarray, np.ndarray]:
  """`prompt` unscored tokens, then `response` scored ones (the last one its EOS)."""
  tokens = rng.integers(3, 512, prompt + response).astype(np.int32)
  return tokens, np.r_[np.zeros(prompt, np.int32), np.ones(response, np.int32)]


def _batch(rows: list[list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, np.ndarray]:
  built = [packing.assemble_row([(t, 0, m) for t, m in row], SEQ, PAD) for row in rows]
  return {k: np.stack([r[k] for r in built]) for k in ts.MODEL_INPUTS}


@pytest.fixture(scope="module")
def model():
  cfg = helpers.tiny_model()
  graphdef, _, _ = ts.abstract_model(cfg)
  params = ts.init_params(cfg, jax.random.key(0))
  value_and_grad = jax.jit(jax.value_and_grad(
      lambda p, b: ts.loss_fn(p, graphdef, b, 0.0)[0]))
  return graphdef, params, value_and_grad


def _reference_nats(graphdef, params, tokens, mask) -> tuple[float, int]:
  """Summed response-token loss of one example alone: its logits, numpy log-softmax."""
  n = len(tokens) - 1
  module = nnx.merge(graphdef, params)
  logits = np.asarray(module(jnp.asarray(tokens[None, :-1]), jnp.arange(n)[None],
                             jnp.ones((1, n), jnp.int32))[0][0], np.float64)
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                             keepdims=True))
  logp -= logits.max(-1, keepdims=True)
  scored = mask[1:] == 1
  return float(-logp[np.arange(n), tokens[1:]][scored].sum()), int(scored.sum())


def test_packed_loss_is_the_token_mean_of_each_examples_response_loss(model):
  graphdef, params, value_and_grad = model
  rng = np.random.default_rng(0)
  a, b, c = _example(rng, 9, 6), _example(rng, 5, 12), _example(rng, 14, 4)
  batch = _batch([[a, b], [c]])
  # Each packed example keeps its own mask: the row's mask is theirs, shifted to targets.
  assert list(batch["loss_mask"][0, :30]) == list(a[1][1:]) + list(b[1][1:])
  assert batch["loss_mask"][0, 30:].sum() == 0 and batch["loss_mask"][1].sum() == 4
  loss, _ = value_and_grad(params, batch)
  parts = [_reference_nats(graphdef, params, *ex) for ex in (a, b, c)]
  want = sum(n for n, _ in parts) / sum(k for _, k in parts)
  assert float(loss) == pytest.approx(want, rel=2e-5)
  # A plain mean over examples differs: the test tells token weighting from it.
  assert abs(np.mean([n / k for n, k in parts]) - want) > 1e-3


def test_prompt_targets_do_not_change_the_loss_or_the_gradients(model):
  _, params, value_and_grad = model
  rng = np.random.default_rng(1)
  batch = _batch([[_example(rng, 10, 8), _example(rng, 7, 9)], [_example(rng, 20, 6)]])
  loss, grads = value_and_grad(params, batch)
  changed = dict(batch)
  prompt = (batch["loss_mask"] == 0)
  changed["targets"] = np.where(prompt, rng.integers(0, 512, prompt.shape),
                                batch["targets"]).astype(np.int32)
  assert (changed["targets"] != batch["targets"]).sum() > 20
  loss2, grads2 = value_and_grad(params, changed)
  assert float(loss2) == float(loss)
  for g, g2 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(g2))


def test_an_all_prompt_example_contributes_nothing(model):
  graphdef, params, value_and_grad = model
  rng = np.random.default_rng(2)
  kept = _example(rng, 8, 10)
  prompt_only = _example(rng, 15, 0)
  # Alone, it has no scored target: zero loss and zero gradient.
  loss, grads = value_and_grad(params, _batch([[prompt_only]]))
  assert float(loss) == 0.0
  assert all(not np.asarray(g).any() for g in jax.tree.leaves(grads))
  # Packed beside another example: the loss and gradients are that example's alone.
  with_it = value_and_grad(params, _batch([[kept, prompt_only]]))
  without = value_and_grad(params, _batch([[kept]]))
  assert float(with_it[0]) == pytest.approx(float(without[0]), rel=1e-6)
  assert float(with_it[0]) == pytest.approx(
      _reference_nats(graphdef, params, *kept)[0] / 10, rel=2e-5)
  for g, g2 in zip(jax.tree.leaves(with_it[1]), jax.tree.leaves(without[1])):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g2), atol=1e-7, rtol=1e-5)
