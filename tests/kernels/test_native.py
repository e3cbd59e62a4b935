"""The native CPU kernels (MKL GEMM, fused attention) equal XLA's ops, values and gradients."""
import functools
import platform
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import logging

from midtrain_jax.kernels import cpu_attention, cpu_gemm, native, select
from midtrain_jax.model import attention, layers, rope
from midtrain_jax.parallel import sharding
from midtrain_jax.train import step as ts
from tests import helpers

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64",
    reason="the mkl wheel (and so the native kernels) is for x86-64 Linux")


@pytest.fixture(scope="module", autouse=True)
def built():
  ready, why = native.status()
  assert ready, why


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("m,k,n", [(300, 70, 50), (37, 129, 200), (1, 5, 3), (256, 0, 8)])
def test_gemm_and_its_gradients_equal_xla(m, k, n, transpose_a, transpose_b):
  rng = np.random.default_rng(m + k + n)
  a = jnp.asarray(rng.normal(size=(k, m) if transpose_a else (m, k)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(n, k) if transpose_b else (k, n)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(m, n)), jnp.float32)

  def xla(a, b):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)

  def ours(a, b):
    return cpu_gemm.matmul(a, b, transpose_a, transpose_b)

  want = xla(np.asarray(a, np.float64), np.asarray(b, np.float64))
  np.testing.assert_allclose(jax.jit(ours)(a, b), want, rtol=1e-5, atol=1e-4)
  grads = [jax.jit(jax.grad(lambda a, b, f=f: (f(a, b) * w).sum(), argnums=(0, 1)))(a, b)
           for f in (ours, xla)]
  for g, r in zip(*grads):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_bf16_gemm_is_the_float32_product_of_rounded_operands(transpose_a, transpose_b, dtype):
  m, k, n = 70, 300, 45
  rng = np.random.default_rng(7)
  a = jnp.asarray(rng.normal(size=(k, m) if transpose_a else (m, k)), dtype)
  b = jnp.asarray(rng.normal(size=(n, k) if transpose_b else (k, n)), dtype)
  g = jnp.asarray(rng.normal(size=(m, n)), jnp.float32)

  def rounded(x):
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16), np.float64)

  def op(x, transpose):
    return x.T if transpose else x

  def ours(a, b):
    return cpu_gemm.bf16_matmul(a, b, transpose_a, transpose_b)

  out = jax.jit(ours)(a, b)
  assert out.dtype == jnp.float32
  # Operands rounded to bfloat16 (a no-op for bfloat16 ones), the product and
  # its sums in float32: equal to the exact product of the rounded operands up
  # to float32 summation.
  ra, rb, rg = rounded(a), rounded(b), rounded(g)
  want = op(ra, transpose_a) @ op(rb, transpose_b)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
  _, vjp = jax.vjp(ours, a, b)
  da, db = jax.jit(vjp)(g)
  # Each gradient in its operand's dtype, from the cotangent rounded to bfloat16
  # and the float32 GEMM result (rounded once more only for bfloat16 operands).
  want_da = op(rg @ op(rb, transpose_b).T, transpose_a)
  want_db = op(op(ra, transpose_a).T @ rg, transpose_b)
  tol = dict(rtol=1e-5, atol=1e-3) if dtype == jnp.float32 else dict(rtol=2**-8, atol=0.05)
  for got, want in ((da, want_da), (db, want_db)):
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float64), want, **tol)


@pytest.mark.parametrize("shape", [(64, 48), (40, 7), (33, 10), (8, 1)])
def test_transposed_copy_is_the_transpose(shape):
  x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.bfloat16)
  np.testing.assert_array_equal(jax.jit(cpu_gemm.transposed_copy)(x), x.T)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_float32_xla_gemm_and_its_gradients_equal_a_plain_dot(transpose_a, transpose_b):
  rng = np.random.default_rng(5)
  a = jnp.asarray(rng.normal(size=(48, 40) if transpose_a else (40, 48)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(24, 48) if transpose_b else (48, 24)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(40, 24)), jnp.float32)

  def plain(a, b):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)

  def ours(a, b):
    return cpu_gemm.xla_matmul(a, b, transpose_a, transpose_b)

  np.testing.assert_allclose(jax.jit(ours)(a, b), plain(a, b), rtol=1e-5, atol=1e-5)
  grads = [jax.jit(jax.grad(lambda a, b, f=f: (f(a, b) * w).sum(), argnums=(0, 1)))(a, b)
           for f in (ours, plain)]
  for g, r in zip(*grads):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def _compiled_gemms(hlo: str) -> list[str]:
  """The 2-D dots of compiled HLO (attention's batched dots aside)."""
  return [line for line in hlo.splitlines() if " dot(" in line and "batch_dims" not in line]


def test_bfloat16_train_step_on_cpu_runs_every_gemm_on_bf16_operands():
  cfg = helpers.tiny_model(compute_dtype="bfloat16", attention="xla", matmul="xla")
  setup = helpers.train_setup(cfg, (1, 1, 1), jax.devices()[:1],
                              lr=helpers.small_config(1).optim.lr)
  state = ts.init_state(cfg, setup.tx, 0, setup.shardings)
  batch = sharding.host_batch_to_global(helpers.text_batch(8, 32, docs_per_row=2), setup.mesh)
  step = ts.jit_train_step(setup.graphdef, setup.tx, setup.schedule, 1e-4, setup.mesh,
                           setup.shardings)
  with jax.set_mesh(setup.mesh):
    compiled = step.__wrapped__.lower(state, batch).compile().as_text()
  dots = _compiled_gemms(compiled)
  assert dots
  # Every GEMM, weight gradients included, on bfloat16 operands with a float32
  # result: XLA widens the operands of a dot contracting the left operand's
  # leading axis, so no dot may keep that form.
  for line in dots:
    assert re.search(r"= f32\[", line), line
    assert "lhs_contracting_dims={1}" in line, line
  shapes = {m.group(1): m.group(2) for m in re.finditer(r"%([\w.\-]+) = (\w+)\[", compiled)}
  for line in dots:
    names = re.search(r"dot\(%([\w.\-]+), %([\w.\-]+)\)", line).groups()
    assert [shapes[n] for n in names] == ["bf16", "bf16"], line


def test_dense_layers_in_bf16_on_cpu_use_the_float32_result_gemm():
  a, b = jnp.ones((8, 16), jnp.float32), jnp.ones((16, 4), jnp.float32)
  hlo = jax.jit(functools.partial(layers.dot_2d, operand_dtype=jnp.bfloat16)).lower(a, b)
  assert "(tensor<8x16xbf16>, tensor<16x4xbf16>) -> tensor<8x4xf32>" in hlo.as_text()
  # The result stays in a's dtype: float32 activations take no rounding.
  assert layers.dot_2d(a, b, operand_dtype=jnp.bfloat16).dtype == jnp.float32
  assert layers.dot_2d(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_auto_runs_the_gemm_on_mkl_on_intel_cpus_only(monkeypatch):
  for vendor, request, on_mkl in [("GenuineIntel", "auto", True), ("AuthenticAMD", "auto", False),
                                  ("AuthenticAMD", "cpu_native", True),
                                  ("GenuineIntel", "xla", False)]:
    monkeypatch.setattr(native, "cpu_vendor", lambda v=vendor: v)
    select.clear_cache()
    choice = select.choose(request, request, platform="cpu", device_count=1, dtype="float32")
    assert (choice.matmul == "cpu_native") == on_mkl, (vendor, request)
    # The fused attention applies wherever the kernels do.
    assert (choice.attention == "cpu_native") == (request != "xla"), (vendor, request)
  select.clear_cache()


# (batch, seq, query heads, KV heads, head dim, window): GQA groups of 1-6,
# sequences that are and are not multiples of the kernel's 64-row blocks,
# windows shorter and longer than a block.
ATTENTION_CASES = [(2, 96, 4, 2, 16, 0), (2, 128, 4, 4, 32, 24), (1, 200, 6, 1, 8, 0),
                   (3, 64, 2, 1, 64, 7), (1, 160, 2, 2, 16, 100)]


@pytest.mark.parametrize("rotated", [False, True])
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("b,t,n,kv,h,window", ATTENTION_CASES)
def test_attention_and_its_gradients_equal_the_reference(b, t, n, kv, h, window, packed,
                                                         rotated):
  rng = np.random.default_rng(t + window)
  q = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(b, t, kv, h)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(b, t, kv, h)), jnp.float32)
  # Packed: documents of random lengths, one run of ids each. Otherwise ids
  # coming back after others (the kernel's per-key path).
  ids = rng.integers(1, 4, (b, t))
  segment_ids = jnp.asarray(np.sort(ids, axis=1) if packed else ids, jnp.int32)
  scale = float(1 / np.sqrt(h))
  slots = jnp.arange(t)
  mask = attention.attention_mask(slots, slots, segment_ids, segment_ids, window)
  # RoPE inside the kernel: arbitrary positions, YaRN-scaled frequencies and scale.
  positions = jnp.asarray(rng.integers(0, 4 * t, (b, t)), jnp.int32)
  inv_freq = rope.inverse_frequencies(h, 10_000.0, yarn_factor=4.0, original_len=64)
  tables = rope.rotation_tables(positions, inv_freq, rope.yarn_attention_scale(4.0))

  def reference(q, k, v):
    if rotated:
      q, k = rope.rotate(q, *tables), rope.rotate(k, *tables)
    return attention.reference_attention(q, k, v, mask, scale)

  def ours(q, k, v):
    return cpu_attention.attention(q, k, v, segment_ids, window, scale,
                                   tables if rotated else None)

  np.testing.assert_allclose(jax.jit(ours)(q, k, v), jax.jit(reference)(q, k, v),
                             rtol=1e-5, atol=2e-6)
  w = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
  grads = [jax.jit(jax.grad(lambda *x, f=f: (f(*x) * w).sum(), argnums=(0, 1, 2)))(q, k, v)
           for f in (ours, reference)]
  for g, r in zip(*grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def _train_step_on(mesh_shape, kernels: str, **model):
  """(HLO text of the train step, its losses over two steps, the first step's gradients)
  with `kernels` the value of both model.attention and model.matmul."""
  cfg = helpers.tiny_model(attention=kernels, matmul=kernels, **model)
  setup = helpers.train_setup(cfg, mesh_shape, jax.devices()[:int(np.prod(mesh_shape))],
                              lr=helpers.small_config(1).optim.lr)
  mesh, graphdef = setup.mesh, setup.graphdef
  state = ts.init_state(cfg, setup.tx, 0, setup.shardings)
  batch = sharding.host_batch_to_global(helpers.text_batch(8, 32, docs_per_row=2), mesh)
  step = ts.jit_train_step(graphdef, setup.tx, setup.schedule, 1e-4, mesh, setup.shardings)
  with jax.set_mesh(mesh):
    hlo = step.__wrapped__.lower(state, batch).as_text()
    grads = jax.jit(jax.grad(lambda p: ts.loss_fn(p, graphdef, batch, 1e-4)[0]))(state.params)
  losses = []
  for _ in range(2):
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  return hlo, losses, jax.device_get(grads)


def test_train_step_on_native_kernels_equals_xla():
  hlo, losses, grads = _train_step_on((1, 1, 1), "cpu_native")
  assert "midtrain_cpu_gemm" in hlo and "midtrain_cpu_attention_bwd" in hlo
  ref_hlo, ref_losses, ref_grads = _train_step_on((1, 1, 1), "xla")
  assert "midtrain_cpu" not in ref_hlo
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_sharded_programs_keep_xla_ops():
  # XLA cannot partition a custom call; a mesh of several devices uses its dots.
  hlo, _, _ = _train_step_on((2, 2, 2), "auto")
  assert "midtrain_cpu" not in hlo


def test_bfloat16_keeps_xla_gemms():
  choice = select.choose("auto", "auto", platform="cpu", device_count=1, dtype="bfloat16")
  assert choice == select.Choice("cpu_native", "xla", choice.notes)


def test_bfloat16_train_step_attends_in_the_fused_kernel():
  hlo, losses, grads = _train_step_on((1, 1, 1), "auto", compute_dtype="bfloat16")
  assert "midtrain_cpu_attention_bwd" in hlo and "midtrain_cpu_gemm" not in hlo
  ref_hlo, ref_losses, ref_grads = _train_step_on((1, 1, 1), "xla", compute_dtype="bfloat16")
  assert "midtrain_cpu" not in ref_hlo
  # The kernel attends in float32, XLA's path rounds probabilities to bfloat16:
  # equal to bfloat16 precision.
  np.testing.assert_allclose(losses, ref_losses, rtol=2e-3)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=0.1, atol=0.02 * float(np.abs(b).max()))


def test_unknown_kernel_is_named():
  with pytest.raises(ValueError, match="model.attention='fast'"):
    select.choose("fast", platform="cpu", device_count=1, dtype="float32")
  with pytest.raises(ValueError, match="model.matmul='mkl'"):
    select.choose(matmul="mkl", platform="cpu", device_count=1, dtype="float32")


def test_cpu_native_without_mkl_says_why(monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
  monkeypatch.setattr(native, "mkl_runtime", lambda: None)
  native.status.cache_clear()
  select.clear_cache()
  try:
    choice = select.choose("cpu_native", "cpu_native", platform="cpu", device_count=1,
                           dtype="float32")
    assert (choice.attention, choice.matmul) == ("xla", "xla")
    assert len(warnings) == 2 and all("MKL is not installed" in w and "[cpu]" in w and
                                      "falling back to 'xla'" in w for w in warnings), warnings
    # `auto` falls back silently where the extra is not installed.
    choice = select.choose("auto", "auto", platform="cpu", device_count=1, dtype="float32")
    assert (choice.attention, choice.matmul) == ("xla", "xla") and len(warnings) == 2
  finally:
    native.status.cache_clear()
    select.clear_cache()
