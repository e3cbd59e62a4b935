"""Next-token cross entropy fused with the output layer.

The logits of a whole batch are the step's largest buffer ([tokens, vocab] in
float32: 134 MB for 4096 tokens of an 8k vocabulary, 1.6 GB at OLMo's 100k).
Here they are made and consumed one chunk of positions at a time: each chunk's
logits give its log-partition and target logit, and, in training, at once the
gradient of the summed loss with respect to them, which is turned into the
chunk's input gradient and added into the output weight's gradient before the
next chunk is made. So no [tokens, vocab] buffer is ever written to memory,
the backward pass does not read the logits back, and the GEMM FLOPs are the
unfused ones (no recomputation). The gradient is taken in the forward pass
because the loss is a weighted sum (the weights known up front); the backward
pass only scales it by the incoming cotangent.
"""
import functools

import jax
import jax.numpy as jnp

from midtrain_jax.model.layers import dot_2d, output_logits
from midtrain_jax.parallel import sharding

# Bytes of one chunk's float32 logits per device: large enough for efficient
# GEMMs and few dW accumulations (8 MiB was no faster on CPU; 32 MiB was as fast
# as the unfused loss), small next to the [tokens, vocab] buffers it replaces.
_CHUNK_BYTES = 32 << 20


def chunk_len(batch: int, seq: int, vocab: int, budget: int | None = None) -> int:
  """Positions per chunk: the largest divisor of `seq` whose [batch, chunk, vocab]
  float32 logits fit in `budget` bytes (default `_CHUNK_BYTES`; at least 1).
  `batch` is the rows one device holds."""
  budget = _CHUNK_BYTES if budget is None else budget
  fits = [c for c in range(1, seq + 1) if seq % c == 0 and batch * c * vocab * 4 <= budget]
  return max(fits, default=1)


def _n_chunks(x_BTD, w_DV) -> int:
  b, t = x_BTD.shape[:2]
  rows = max(1, b // sharding.batch_shards())  # per device, under a mesh
  return t // chunk_len(rows, t, w_DV.shape[1])


def _chunks(x, n: int):
  """[B, T, ...] -> [n, B, T / n, ...]: the scanned axis first, batch kept whole
  (it is the sharded one)."""
  b, t = x.shape[:2]
  return x.reshape((b, n, t // n) + x.shape[2:]).swapaxes(0, 1)


def _unchunk(x):
  n, b, c = x.shape[:3]
  return x.swapaxes(0, 1).reshape((b, n * c) + x.shape[3:])


def _partition(logits, targets_BC):
  """(exp(logits - peak), its sum over the vocabulary, log-partition, target
  logit) of one chunk."""
  peak = logits.max(axis=-1, keepdims=True)
  exp = jnp.exp(logits - peak)
  exp_sum = exp.sum(axis=-1)
  log_z = jnp.log(exp_sum) + peak[..., 0]
  target = jnp.take_along_axis(logits, targets_BC[..., None], axis=-1)[..., 0]
  return exp, exp_sum, log_z, target


def token_losses(x_BTD, w_DV, targets_BT, vocab_size: int, matmul: str = "xla"):
  """Per-token cross entropy and log-partition ([B, T] float32 each), for evaluation.

  Args:
    x_BTD: final hidden states (after the last norm), in the compute dtype.
    w_DV: output weights [d_model, padded vocab] (cast to x's dtype for the GEMM).
    targets_BT: next-token ids.
    vocab_size: real vocabulary size; columns beyond it are padding.
    matmul: the `model.matmul` setting (layers.dot_2d).
  """
  n = _n_chunks(x_BTD, w_DV)

  def one(chunk):
    x, targets = chunk
    _, _, log_z, target = _partition(output_logits(x, w_DV, vocab_size, matmul), targets)
    return log_z - target, log_z

  ce, log_z = jax.lax.map(one, (_chunks(x_BTD, n), _chunks(targets_BT, n)))
  return _unchunk(ce), _unchunk(log_z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def loss_sums(x_BTD, w_DV, targets_BT, weights_BT, z_loss: float, vocab_size: int,
              matmul: str = "xla"):
  """Weighted loss sums of the output layer, differentiable in x and w (GEMMs on
  the `matmul` kernel: layers.dot_2d).

  Returns:
    (total, ce_sum, z_sum): total = sum(weights * (ce + z_loss * log_z^2)) is
    the differentiable output; ce_sum and z_sum (its two parts) are for
    reporting and carry no gradient.
  """
  (total, ce_sum, z_sum), _ = _forward(x_BTD, w_DV, targets_BT, weights_BT, z_loss, vocab_size,
                                       matmul)
  return total, ce_sum, z_sum


def _forward(x_BTD, w_DV, targets_BT, weights_BT, z_loss, vocab_size, matmul="xla"):
  n = _n_chunks(x_BTD, w_DV)
  w = w_DV.astype(x_BTD.dtype)

  def one(dw_DV, chunk):
    x, targets, weights = chunk
    exp, exp_sum, log_z, target = _partition(output_logits(x, w, vocab_size, matmul), targets)
    # d/dlogits of weights * (log_z - target + z_loss * log_z^2).
    scale = weights * (1.0 + 2.0 * z_loss * log_z)
    dlogits = exp * (scale / exp_sum)[..., None]
    dlogits = dlogits - weights[..., None] * jax.nn.one_hot(targets, w.shape[1], dtype=exp.dtype)
    dlogits = dlogits.astype(x.dtype)
    # 2-D GEMMs over the chunk's rows (see matmul_2d: XLA's CPU backend runs a
    # dot contracting both batch and position axes several times slower).
    rows, dlogit_rows = x.reshape(-1, x.shape[-1]), dlogits.reshape(-1, w.shape[1])
    dx = dot_2d(dlogit_rows, w, jnp.float32, transpose_b=True, matmul=matmul).reshape(x.shape)
    dw_DV = dw_DV + dot_2d(rows, dlogit_rows, jnp.float32, transpose_a=True, matmul=matmul)
    sums = ((weights * (log_z - target)).sum(), (weights * jnp.square(log_z)).sum())
    return dw_DV, (dx.astype(x.dtype), sums)

  dw, (dx, (ce, z)) = jax.lax.scan(
      one, jnp.zeros(w_DV.shape, jnp.float32),
      (_chunks(x_BTD, n), _chunks(targets_BT, n), _chunks(weights_BT.astype(jnp.float32), n)))
  ce_sum, z_sum = ce.sum(), z.sum()
  return (ce_sum + z_loss * z_sum, ce_sum, z_sum), (_unchunk(dx), dw.astype(w_DV.dtype))


def _loss_sums_bwd(z_loss, vocab_size, matmul, grads, cotangents):
  del z_loss, vocab_size, matmul
  dx, dw = grads
  g = cotangents[0]  # only `total` is differentiable
  return dx * g.astype(dx.dtype), (dw * g).astype(dw.dtype), None, None


loss_sums.defvjp(_forward, _loss_sums_bwd)
