"""Attention kernel switch: unavailable kernels fall back to xla with a warning;
fused kernels run per shard on sharded meshes and match the reference."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging
from flax import nnx
from jax.extend import core as jex_core
from jax.sharding import PartitionSpec as P

from midtrain_jax.kernels import select
from midtrain_jax.model import attention, attention_kernels
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.parallel import sharding
from midtrain_jax.train import step as ts
from tests import helpers
from tests.model.test_model import _logits

# Splash works on blocks of 128 tokens: two blocks per row, so the kernel skips
# blocks (window) and meets a document boundary inside a block.
SEQ = 256


@pytest.mark.parametrize("requested,platform,expected", [
    ("xla", "cpu", "xla"), ("reference", "cpu", "reference"),
    ("cudnn", "gpu", "cudnn"), ("cudnn", "cuda", "cudnn"), ("cudnn", "cpu", "xla"),
    ("cudnn", "tpu", "xla"), ("splash", "cpu", "xla"), ("splash", "gpu", "xla"),
])
def test_resolve(requested, platform, expected):
  choice = select.choose(requested, platform=platform, device_count=1, dtype="float32")
  assert choice.attention == expected


@pytest.mark.parametrize("requested", ["cudnn", "splash"])
def test_unavailable_kernel_falls_back_to_xla_with_warning(requested, monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
  select.clear_cache()
  cfg = helpers.tiny_model()
  batch = helpers.text_batch(2, 32, vocab=cfg.vocab_size, docs_per_row=2)
  got = _logits(dataclasses.replace(cfg, attention=requested), batch)
  assert any(f"model.attention={requested!r} is not available on cpu" in w and
             "falling back to 'xla'" in w for w in warnings), warnings
  xla = _logits(dataclasses.replace(cfg, attention="xla"), batch)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(xla))
  reference = _logits(dataclasses.replace(cfg, attention="reference"), batch)
  np.testing.assert_allclose(np.asarray(got), np.asarray(reference), atol=2e-5, rtol=2e-5)


def test_interpret_switch_is_scoped():
  def chosen():
    return select.here("splash", dtype="float32").attention
  with attention_kernels.splash_interpret():
    assert chosen() == "splash"
  assert chosen() == "xla"


def _qkv(batch: int, heads: int, kv_heads: int, head_dim: int = 64, dtype=jnp.float32):
  """Random q, k, v and packed segment ids (three documents of uneven length)."""
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (batch, SEQ, heads, head_dim), dtype)
  k = jax.random.normal(keys[1], (batch, SEQ, kv_heads, head_dim), dtype)
  v = jax.random.normal(keys[2], (batch, SEQ, kv_heads, head_dim), dtype)
  segment_ids = np.ones((batch, SEQ), np.int32)
  segment_ids[:, 100:] = 2
  segment_ids[:, 200:] = 3
  return q, k, v, jnp.asarray(segment_ids)


@functools.partial(jax.jit, static_argnames=("implementation", "window"))
def _attend(q, k, v, segment_ids, *, implementation: str, window: int):
  """`attention_kernels.attend` jitted (eager dispatch costs seconds per call on CPU)."""
  slots = jnp.arange(q.shape[1])
  mask = attention.attention_mask(slots, slots, segment_ids, segment_ids, window)
  return attention_kernels.attend(q, k, v, mask, segment_ids, window, q.shape[-1] ** -0.5,
                                  implementation, attention.reference_attention)


def _mesh(data=2, fsdp=2, tensor=2):
  return sharding.make_mesh(dict(data=data, fsdp=fsdp, tensor=tensor))


def _shard_map_out_specs(fn, *args):
  """out_specs of every shard_map in `fn`'s program, nested ones included (tracing only)."""
  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "shard_map":
        yield eqn.params["out_specs"]
      for param in eqn.params.values():
        if isinstance(param, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
          yield from walk(getattr(param, "jaxpr", param))
  return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


@pytest.mark.parametrize("window,batch,kv_heads,batch_axes", [
    # Full attention; one KV head for two tensor shards: repeated.
    (0, 4, 1, ("data", "fsdp")),
    # Sliding window; a KV head per tensor shard (GQA groups of 2); batch 2
    # splits over `data` only and is replicated over `fsdp`.
    (16, 2, 2, "data"),
])
def test_splash_per_shard_matches_reference(window, batch, kv_heads, batch_axes):
  """Splash (Pallas interpret mode) in shard_map on data 2 x fsdp 2 x tensor 2."""
  q, k, v, segment_ids = _qkv(batch, heads=4, kv_heads=kv_heads)
  want = _attend(q, k, v, segment_ids, implementation="reference", window=window)
  splash = functools.partial(_attend, implementation="splash", window=window)
  with attention_kernels.splash_interpret(), jax.set_mesh(_mesh()):
    got = splash(q, k, v, segment_ids)
    assert _shard_map_out_specs(splash, q, k, v, segment_ids) == [
        (P(batch_axes, None, "tensor", None),)]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-6, rtol=2e-5)


def test_splash_per_shard_gradients_match_reference():
  """The backward kernels (what the train step runs) under shard_map, GQA included."""
  q, k, v, segment_ids = _qkv(4, heads=4, kv_heads=2)
  weights = jnp.sin(jnp.arange(q.size, dtype=jnp.float32)).reshape(q.shape)

  def grads(implementation):
    loss = lambda q, k, v: (_attend(q, k, v, segment_ids, implementation=implementation,
                                    window=16) * weights).sum()
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)

  want = grads("reference")
  with attention_kernels.splash_interpret(), jax.set_mesh(_mesh()):
    got = grads("splash")
  for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=5e-5, rtol=1e-4)


def test_splash_model_logits_match_reference_on_sharded_mesh():
  """The tiny model (a window layer and a full layer, packed documents) jitted with
  sharded parameters and batch gives the reference logits with splash."""
  cfg = helpers.tiny_model()
  mesh = _mesh()
  batch = helpers.text_batch(4, SEQ, vocab=cfg.vocab_size, docs_per_row=3)
  _, abstract, axes = ts.abstract_model(cfg)
  params = jax.device_put(nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)))),
                          ts.param_shardings(abstract, axes, mesh))
  inputs = {key: jax.device_put(value, sharding.batch_sharding(mesh))
            for key, value in batch.items()}

  def logits(attention_kind):
    # The kernel choice lives in the (static) graph definition.
    graphdef = ts.abstract_model(dataclasses.replace(cfg, attention=attention_kind))[0]
    forward = lambda params, b: nnx.merge(graphdef, params)(
        b["inputs"], b["positions"], b["segment_ids"])[0]
    with jax.set_mesh(mesh):
      return np.asarray(jax.jit(forward)(params, inputs)), _shard_map_out_specs(
          forward, params, inputs)

  want, no_kernels = logits("reference")
  with attention_kernels.splash_interpret():
    got, kernels = logits("splash")
  assert not no_kernels
  # Both layers (window 8 and full) ran splash per shard.
  assert kernels == [(P(("data", "fsdp"), None, "tensor", None),)] * cfg.n_layers
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.skipif(jax.default_backend() != "gpu",
                    reason="cuDNN attention needs a GPU; the tests run on CPU unless "
                           "JAX_PLATFORMS=cuda and CUDA_VISIBLE_DEVICES expose one")
@pytest.mark.parametrize("window", [0, 16])
@pytest.mark.parametrize("under_mesh", [False, True])
def test_cudnn_matches_reference(window, under_mesh):
  """cuDNN (bfloat16, its flash kernel's dtype) with packed documents and GQA."""
  batch = 2 * jax.device_count()
  q, k, v, segment_ids = _qkv(batch, heads=4, kv_heads=2, dtype=jnp.bfloat16)
  want = _attend(q, k, v, segment_ids, implementation="reference", window=window)
  run = functools.partial(_attend, implementation="cudnn", window=window)
  if under_mesh:
    # Heads split over two GPUs where there are (one KV head per shard).
    with jax.set_mesh(_mesh(data=-1, fsdp=1, tensor=2 if jax.device_count() % 2 == 0 else 1)):
      got = run(q, k, v, segment_ids)
  else:
    got = run(q, k, v, segment_ids)
  np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32),
                             atol=2e-2, rtol=2e-2)
