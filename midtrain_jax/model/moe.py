"""Mixture-of-experts feed-forward: float32 router, top-k gating, two dispatch paths.

Each token picks its `top_k` experts by router probability; their gates are
the chosen probabilities renormalised to sum to one (Mixtral, OLMoE), so a
model whose experts are all equal computes exactly the dense block on every
real token (the premise of upcycling). Every expert is a SwiGLU of width
`moe_mlp_dim`.

Padding (segment id 0, the positions the loss ignores) takes no expert: it
claims no capacity slot, its routed output is zero, and it is left out of
every statistic below. So what a real token computes never depends on the
padding of a packed batch, its length or its content.

Dispatch (`model.moe.dispatch`):
  dropless  every (token, expert) assignment is computed: the assignments are
            sorted by expert and run as grouped matmuls (`grouped_matmul`:
            the Pallas megablox `gmm` kernel on TPU, `jax.lax.ragged_dot` on
            GPU, expert-aligned row blocks on CPU).
  capacity  each expert takes at most ceil(capacity_factor * tokens * k / E)
            assignments into a fixed [E, C, D] buffer (first choices of real
            tokens first, then by position; `tokens` counts the padding too,
            the shapes being static); the rest are dropped (their share of the
            block's output is zero). Static shapes, the classic TPU layout.
            Capacity is shared by the tokens of one call: a microbatch under
            gradient accumulation competes only with itself.

Auxiliary outputs (per layer, over real tokens): the load-balancing loss
E * sum_e f_e * p_e (f_e: share of assignments routed to e, p_e: mean router
probability of e; 1.0 when balanced), the router z-loss mean(logsumexp^2),
tokens per expert (so collapse shows in the logs) and router probabilities
summed per expert.

Under gradient accumulation (`train.microbatches`) the balance loss, a product
of two batch means, is not a sum over microbatches. The *reported* value is
the whole batch's: the train step sums tokens and probabilities per expert over
the microbatches and applies the formula to the totals (`batch_aux`). The
*gradient* is that of the microbatches' own balance losses weighted by their
share of the batch's real tokens: f_e carries no gradient, and its batch value
is only known after the last microbatch's forward pass, so each microbatch's
gradient uses its own f_e (exactness would take a second forward pass over the
batch). With one microbatch both are the batch's exactly. The router z-loss, a
mean over tokens, is exact in value and gradient either way.
"""
import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model.config import ModelConfig
from midtrain_jax.model.layers import SwiGLU, param

# Set by `megablox_interpret()`: the TPU kernel runs in the Pallas interpreter.
_megablox_interpret = False


@contextlib.contextmanager
def megablox_interpret():
  """Runs dropless dispatch through megablox `gmm` in interpret mode (tests on CPU).

  Read when a function is traced; slow, for tests only.
  """
  global _megablox_interpret
  previous, _megablox_interpret = _megablox_interpret, True
  try:
    yield
  finally:
    _megablox_interpret = previous


# Rows per block of the CPU grouped matmul (`blocked_grouped_matmul`).
_CPU_BLOCK_ROWS = 64


def blocked_grouped_matmul(lhs_MK, rhs_EKN, group_sizes_E, block: int = _CPU_BLOCK_ROWS):
  """Grouped matmul as one batched GEMM over row blocks that each belong to one expert.

  Each group's rows are padded to whole blocks of `block` rows (at most
  M / block + E blocks in all, a static bound), every block is multiplied by
  its expert's matrix (gathered per block), and the rows are read back. XLA's
  CPU `ragged_dot` computes every row against every expert (E times the
  FLOPs); this does the work once plus the padding, at the cost of one weight
  copy per block: the path for CPU-sized models.
  """
  m, n_experts = lhs_MK.shape[0], rhs_EKN.shape[0]
  n_blocks = -(-m // block) + n_experts
  sizes = group_sizes_E.astype(jnp.int32)
  blocks_per_group = -(-sizes // block)
  group_end = jnp.cumsum(sizes)
  padded_start = (jnp.cumsum(blocks_per_group) - blocks_per_group) * block
  group_M = jnp.searchsorted(group_end, jnp.arange(m), side="right")
  dest_M = padded_start[group_M] + jnp.arange(m) - (group_end - sizes)[group_M]
  lhs_blocks = jnp.zeros((n_blocks * block, lhs_MK.shape[1]), lhs_MK.dtype).at[dest_M].set(
      lhs_MK).reshape(n_blocks, block, -1)
  block_expert = jnp.minimum(jnp.searchsorted(jnp.cumsum(blocks_per_group),
                                              jnp.arange(n_blocks), side="right"),
                             n_experts - 1)
  out = jnp.einsum("bmk,bkn->bmn", lhs_blocks, rhs_EKN[block_expert])
  return out.reshape(n_blocks * block, -1)[dest_M]


def grouped_matmul(lhs_MK, rhs_EKN, group_sizes_E):
  """Rows of `lhs` grouped by expert (contiguous, in expert order) times their expert's matrix.

  The kernel by backend: megablox `gmm` on TPU, `ragged_dot` on GPU, row
  blocks on CPU (`blocked_grouped_matmul`); all compute the same product.
  """
  if jax.default_backend() == "cpu" and not _megablox_interpret:
    return blocked_grouped_matmul(lhs_MK, rhs_EKN, group_sizes_E)
  if _megablox_interpret or jax.default_backend() == "tpu":
    from jax.experimental.pallas.ops.tpu import megablox  # noqa: PLC0415 (TPU-only kernel)
    # Tiles must divide every dimension; 128 where the shape allows (TPU lanes).
    tiling = tuple(math.gcd(dim, 128) for dim in (lhs_MK.shape[0], lhs_MK.shape[1],
                                                  rhs_EKN.shape[2]))
    return megablox.gmm(lhs_MK, rhs_EKN, group_sizes_E, preferred_element_type=lhs_MK.dtype,
                        tiling=tiling, interpret=_megablox_interpret)
  return jax.lax.ragged_dot(lhs_MK, rhs_EKN, group_sizes_E)


def route(x_ND, router_DE, top_k: int):
  """Router logits, probabilities and the renormalised top-k choice, all float32.

  Returns:
    (logits [N, E], probs [N, E], experts [N, k] int32, gates [N, k]).
  """
  logits_NE = jnp.matmul(x_ND.astype(jnp.float32), router_DE.astype(jnp.float32))
  probs_NE = jax.nn.softmax(logits_NE, axis=-1)
  top_p_NK, experts_NK = jax.lax.top_k(probs_NE, top_k)
  gates_NK = top_p_NK / top_p_NK.sum(axis=-1, keepdims=True)
  return logits_NE, probs_NE, experts_NK.astype(jnp.int32), gates_NK


def _swiglu_grouped(xs_MD, weights, sizes_E):
  gate_EDF, up_EDF, down_EFD = weights
  h_MF = jax.nn.silu(grouped_matmul(xs_MD, gate_EDF, sizes_E)) * grouped_matmul(
      xs_MD, up_EDF, sizes_E)
  return grouped_matmul(h_MF, down_EFD, sizes_E)


def _real_gates(gates_NK, real_N):
  """Gates with padding's zeroed (no mask: every token is real)."""
  return gates_NK if real_N is None else jnp.where(real_N[:, None], gates_NK, 0)


def dropless(x_ND, experts_NK, gates_NK, weights, real_N=None):
  """Every assignment computed: sort by expert, grouped matmuls, unsort, gate, sum over k.

  Padding (`real_N` False) is computed with the rest (the shapes are static) but
  gated to zero.
  """
  gates_NK = _real_gates(gates_NK, real_N)
  n_experts = weights[0].shape[0]
  n, k = experts_NK.shape
  flat_M = experts_NK.reshape(-1)
  order_M = jnp.argsort(flat_M, stable=True)
  sizes_E = jnp.bincount(flat_M, length=n_experts).astype(jnp.int32)
  ys_MD = _swiglu_grouped(x_ND[order_M // k], weights, sizes_E)
  # Back to (token, choice) order by the inverse permutation: a gather, not a scatter-add.
  ys_NKD = ys_MD[jnp.argsort(order_M)].reshape(n, k, -1)
  return jnp.einsum("nkd,nk->nd", ys_NKD, gates_NK.astype(ys_NKD.dtype))


def capacity(x_ND, experts_NK, gates_NK, weights, capacity_factor: float, real_N=None):
  """Fixed [E, C, D] expert buffers; assignments past an expert's capacity are dropped.

  Padding (`real_N` False; None: every token is real) claims no slot and is
  never kept, so real tokens after it in the batch keep theirs.
  """
  gate_EDF, up_EDF, down_EFD = weights
  n_experts = gate_EDF.shape[0]
  n, k = experts_NK.shape
  slots = max(1, math.ceil(capacity_factor * n * k / n_experts))
  real_M = jnp.ones((n * k,), bool) if real_N is None else jnp.tile(real_N, k)
  # Choice-major order: every token's first choice claims a slot before any second choice.
  flat_M = experts_NK.T.reshape(-1)
  onehot_ME = jax.nn.one_hot(flat_M, n_experts, dtype=jnp.int32) * real_M[:, None]
  position_M = (jnp.cumsum(onehot_ME, axis=0) * onehot_ME).sum(-1) - 1
  kept_M = real_M & (position_M < slots)
  token_M = jnp.tile(jnp.arange(n), k)
  slot_M = jnp.where(kept_M, flat_M * slots + position_M, n_experts * slots)
  buffer = jnp.zeros((n_experts * slots, x_ND.shape[1]), x_ND.dtype)
  buffer_ECD = buffer.at[slot_M].set(x_ND[token_M], mode="drop").reshape(
      n_experts, slots, -1)
  h_ECF = jax.nn.silu(jnp.einsum("ecd,edf->ecf", buffer_ECD, gate_EDF)) * jnp.einsum(
      "ecd,edf->ecf", buffer_ECD, up_EDF)
  out_MD = jnp.einsum("ecf,efd->ecd", h_ECF, down_EFD).reshape(n_experts * slots, -1)
  ys_MD = jnp.where(kept_M[:, None], out_MD[jnp.minimum(slot_M, n_experts * slots - 1)], 0)
  ys_KND = ys_MD.reshape(k, n, -1)
  return jnp.einsum("knd,nk->nd", ys_KND, gates_NK.astype(ys_KND.dtype))


def load_balance(tokens_E, prob_sums_E, n_real, top_k: int):
  """E * sum_e f_e * p_e from per-expert totals over `n_real` real tokens.

  Args:
    tokens_E: assignments per expert [..., E] (f_e = tokens_e / (n_real * top_k)).
    prob_sums_E: router probabilities summed per expert [..., E] (p_e = sum / n_real).
    n_real: real tokens the totals were taken over.
    top_k: experts per token.

  Returns:
    The loss [...] (1.0 when balanced; 0 without real tokens).
  """
  n = jnp.maximum(n_real, 1.0)
  return tokens_E.shape[-1] * jnp.sum(tokens_E / (n * top_k) * (prob_sums_E / n), axis=-1)


def aux_stats(logits_NE, probs_NE, experts_NK, segment_ids_N) -> dict:
  """Load-balancing loss, router z-loss and per-expert totals over real tokens.

  f_e (the load fractions) carries no gradient, as top-k is piecewise constant;
  the balance loss's gradient flows through the router probabilities.
  """
  n_experts, k = probs_NE.shape[1], experts_NK.shape[1]
  real_N = (segment_ids_N > 0).astype(jnp.float32)
  n_real = real_N.sum()
  assigned_NE = jax.nn.one_hot(experts_NK, n_experts, dtype=jnp.float32).sum(axis=1)
  tokens_E = (assigned_NE * real_N[:, None]).sum(axis=0)
  prob_sums_E = (probs_NE * real_N[:, None]).sum(axis=0)
  log_z_N = jax.nn.logsumexp(logits_NE, axis=-1)
  return {"moe_load_balance": load_balance(tokens_E, prob_sums_E, n_real, k),
          "moe_router_z": jnp.sum(jnp.square(log_z_N) * real_N) / jnp.maximum(n_real, 1.0),
          "expert_tokens": tokens_E, "expert_probs": prob_sums_E}


def weighted_loss(cfg: ModelConfig, balance, router_z):
  """What the training loss adds: the configured weights times the two aux losses."""
  return cfg.moe_load_balance_loss * balance + cfg.moe_router_z_loss * router_z


def batch_aux(cfg: ModelConfig, expert_tokens_LE, expert_probs_LE, router_z_sum, n_real) -> dict:
  """A batch's aux losses from totals summed over its microbatches.

  Args:
    cfg: the model config (top_k and the loss weights).
    expert_tokens_LE: assignments per MoE layer and expert, summed.
    expert_probs_LE: router probabilities per MoE layer and expert, summed.
    router_z_sum: the router z-loss (mean over layers) summed over real tokens.
    n_real: the batch's real tokens.

  Returns:
    {moe_load_balance, moe_router_z, moe_loss}: per-layer values averaged over
    the MoE layers, as `Transformer.hidden_and_aux` gives for the whole batch.
  """
  balance = load_balance(expert_tokens_LE, expert_probs_LE, n_real, cfg.moe_top_k).mean()
  router_z = router_z_sum / jnp.maximum(n_real, 1.0)
  return {"moe_load_balance": balance, "moe_router_z": router_z,
          "moe_loss": weighted_loss(cfg, balance, router_z)}


def zero_aux(cfg: ModelConfig) -> dict:
  """The aux accumulator before any MoE layer (an empty dict for a dense model).

  Losses are summed over layers; `expert_tokens` and `expert_probs` have one
  row per MoE layer.
  """
  if not cfg.moe_experts:
    return {}
  n_moe = sum(cfg.layer_is_moe(i) for i in range(cfg.n_layers))
  rows = jnp.zeros((n_moe, cfg.moe_experts), jnp.float32)
  return {"moe_load_balance": jnp.zeros((), jnp.float32),
          "moe_router_z": jnp.zeros((), jnp.float32),
          "expert_tokens": rows, "expert_probs": rows}


def accumulate_aux(acc: dict, layer: dict) -> dict:
  """Adds one MoE layer's statistics to the accumulator.

  Per-layer rows go through a shift register: each layer drops the oldest
  row and appends its own, so after all n MoE layers (unscanned or inside the
  layer scan alike) the rows are in layer order.
  """
  shift = lambda key: jnp.concatenate([acc[key][1:], layer[key][None]])
  return {"moe_load_balance": acc["moe_load_balance"] + layer["moe_load_balance"],
          "moe_router_z": acc["moe_router_z"] + layer["moe_router_z"],
          "expert_tokens": shift("expert_tokens"), "expert_probs": shift("expert_probs")}


class MoE(nnx.Module):
  """A mixture of SwiGLU experts (plus optional always-on shared experts)."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, f, e = cfg.d_model, cfg.expert_mlp_dim, cfg.moe_experts
    normal = functools.partial(nnx.initializers.normal)
    self.router = param(rngs, normal(cfg.init_std), (d, e), ("embed", "expert"),
                        cfg.param_dtype)
    out_std = cfg.init_std / np.sqrt(2 * cfg.n_layers)
    self.gate = param(rngs, normal(cfg.init_std), (e, d, f), ("expert", "embed", "mlp"),
                      cfg.param_dtype)
    self.up = param(rngs, normal(cfg.init_std), (e, d, f), ("expert", "embed", "mlp"),
                    cfg.param_dtype)
    self.down = param(rngs, normal(out_std), (e, f, d), ("expert", "mlp", "embed"),
                      cfg.param_dtype)
    self.shared = (SwiGLU(d, cfg.moe_shared_experts * f, std=cfg.init_std, out_std=out_std,
                          param_dtype=cfg.param_dtype, rngs=rngs, dtype=cfg.compute_dtype,
                          matmul=cfg.matmul)
                   if cfg.moe_shared_experts else None)

  def __call__(self, x_BTD, segment_ids_BT):
    """Returns (output [B, T, D], aux dict of this layer; see module docstring).

    Tokens of segment id 0 are padding: they take no expert (module docstring).
    """
    cfg = self.cfg
    b, t, d = x_BTD.shape
    x_ND = x_BTD.reshape(b * t, d)
    real_N = segment_ids_BT.reshape(-1) > 0
    logits_NE, probs_NE, experts_NK, gates_NK = route(x_ND, self.router[...], cfg.moe_top_k)
    # Experts compute in the compute dtype (activations may be wider on CPU).
    weights = tuple(w[...].astype(cfg.compute_dtype) for w in (self.gate, self.up, self.down))
    tokens_ND = x_ND.astype(cfg.compute_dtype)
    if cfg.moe_dispatch == "capacity":
      y_ND = capacity(tokens_ND, experts_NK, gates_NK, weights, cfg.moe_capacity_factor,
                      real_N)
    else:
      y_ND = dropless(tokens_ND, experts_NK, gates_NK, weights, real_N)
    y_BTD = y_ND.reshape(b, t, d).astype(x_BTD.dtype)
    if self.shared is not None:
      y_BTD = y_BTD + self.shared(x_BTD)
    return y_BTD, aux_stats(logits_NE, probs_NE, experts_NK, segment_ids_BT.reshape(-1))
