"""The decoder: embeddings, a stack of attention + SwiGLU (or MoE) blocks, output head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model import layer_stack
from midtrain_jax.model.attention import Attention
from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig
from midtrain_jax.model.layers import Dense, Embed, RMSNorm, SwiGLU, activation_dtype, output_logits
from midtrain_jax.model.moe import MoE, accumulate_aux, weighted_loss, zero_aux
from midtrain_jax.parallel import sharding

_REMAT_POLICIES = {
    "full": None,  # Save nothing inside a block; recompute it all.
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Block(nnx.Module):
  """One decoder layer.

  norm="pre" (Llama):        h = x + attn(norm(x));  y = h + mlp(norm(h))
  norm="reordered" (OLMo 2/3): h = x + norm(attn(x)); y = h + norm(mlp(h))
  """

  def __init__(self, cfg: ModelConfig, window: int, moe: bool, *, rngs: nnx.Rngs):
    self.pre_norm = cfg.norm == "pre"
    norm = functools.partial(RMSNorm, cfg.d_model, eps=cfg.norm_eps, axes=("norm",),
                             param_dtype=cfg.param_dtype, rngs=rngs)
    self.attn_norm, self.mlp_norm = norm(), norm()
    self.attn = Attention(cfg, window, rngs=rngs)
    self.is_moe = moe
    self.mlp = MoE(cfg, rngs=rngs) if moe else SwiGLU(
        cfg.d_model, cfg.mlp_dim, std=cfg.init_std,
        out_std=cfg.init_std / np.sqrt(2 * cfg.n_layers), param_dtype=cfg.param_dtype,
        rngs=rngs, dtype=cfg.compute_dtype, matmul=cfg.matmul)

  def __call__(self, x_BTD, positions_BT, segment_ids_BT, cache=None, aux=None):
    """Returns (output, new cache, aux): aux adds this layer's MoE statistics to `aux`."""
    if self.pre_norm:
      attn_out, cache = self.attn(self.attn_norm(x_BTD), positions_BT, segment_ids_BT, cache)
      h = x_BTD + attn_out
      mlp_out, aux = self._mlp(self.mlp_norm(h), segment_ids_BT, aux)
      return h + mlp_out, cache, aux
    attn_out, cache = self.attn(x_BTD, positions_BT, segment_ids_BT, cache)
    h = x_BTD + self.attn_norm(attn_out)
    mlp_out, aux = self._mlp(h, segment_ids_BT, aux)
    return h + self.mlp_norm(mlp_out), cache, aux

  def _mlp(self, x_BTD, segment_ids_BT, aux):
    if not self.is_moe:
      return self.mlp(x_BTD), aux
    out, layer_aux = self.mlp(x_BTD, segment_ids_BT)
    return out, accumulate_aux(aux, layer_aux)


class BlockGroup(nnx.Module):
  """Consecutive layers with the window pattern's windows: one step of the layer scan."""

  def __init__(self, cfg: ModelConfig, kinds, *, rngs: nnx.Rngs):
    self.blocks = nnx.List([Block(cfg, w, moe, rngs=rngs) for w, moe in kinds])

  def __call__(self, carry, positions_BT, segment_ids_BT):
    x_BTD, aux = carry
    for block in self.blocks:
      x_BTD, _, aux = block(x_BTD, positions_BT, segment_ids_BT, aux=aux)
      x_BTD = sharding.constrain(x_BTD, ("batch", "seq", None))
    return x_BTD, aux


def _stacked_groups(cfg: ModelConfig, n_groups: int, rngs: nnx.Rngs) -> BlockGroup:
  """n_groups BlockGroups with every parameter stacked on a leading axis."""
  @nnx.split_rngs(splits=n_groups)
  @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=n_groups)
  def make(rngs):
    return BlockGroup(cfg, cfg.layer_kinds()[:len(cfg.window_pattern)], rngs=rngs)
  return make(rngs)


class Transformer(nnx.Module):
  """Decoder-only language model built from a frozen ModelConfig.

  Layers are `blocks` (a list), or with `cfg.scan_layers` stacked `layers`
  groups run by a scan plus an unscanned `tail` (see layer_stack.py).
  """

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = Embed(cfg.padded_vocab_size, cfg.d_model, std=cfg.init_std,
                       param_dtype=cfg.param_dtype, rngs=rngs)
    kinds = cfg.layer_kinds()
    if cfg.scan_layers:
      groups = layer_stack.groups(cfg)
      if groups.n_groups:
        self.layers = _stacked_groups(cfg, groups.n_groups, rngs)
      self.tail = nnx.List([Block(cfg, w, moe, rngs=rngs)
                            for w, moe in kinds[groups.n_scanned:]])
    else:
      self.blocks = nnx.List([Block(cfg, w, moe, rngs=rngs) for w, moe in kinds])
    self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, axes=("norm",),
                              param_dtype=cfg.param_dtype, rngs=rngs)
    if not cfg.tie_embeddings:
      self.lm_head = Dense((cfg.d_model,), (cfg.padded_vocab_size,), axes=("embed", "vocab"),
                           std=cfg.init_std, param_dtype=cfg.param_dtype, rngs=rngs,
                           dtype=cfg.compute_dtype, matmul=cfg.matmul)

  def __call__(self, tokens_BT, positions_BT, segment_ids_BT, caches=None):
    """Next-token logits.

    Args:
      tokens_BT: input token ids.
      positions_BT: position of each token within its document.
      segment_ids_BT: document id of each token (0 = padding).
      caches: None, or one KV-cache dict per layer (see Attention).

    Returns:
      (logits [B, T, padded_vocab] in float32 with padding-vocab entries masked,
       new caches or None).
    """
    logits, caches, _ = self._forward(tokens_BT, positions_BT, segment_ids_BT, caches)
    return logits, caches

  def hidden_and_aux(self, tokens_BT, positions_BT, segment_ids_BT):
    """Final hidden states (after the last norm) and the MoE auxiliary outputs:
    what the training loss takes, with `head_weight`, instead of logits.

    Returns:
      (hidden [B, T, d_model] in the compute dtype, aux): aux is {} for a dense
      model; otherwise `moe_load_balance` and `moe_router_z` averaged over the
      MoE layers, `moe_loss` (their weighted sum, what the loss adds),
      `expert_tokens` [MoE layers, E] (assignments per expert in each layer)
      and `expert_probs` [MoE layers, E] (router probabilities summed per
      expert): all over real tokens (segment id > 0) only.
    """
    x, _, aux = self._hidden(tokens_BT, positions_BT, segment_ids_BT, None)
    if aux:
      cfg = self.cfg
      n_moe = sum(cfg.layer_is_moe(i) for i in range(cfg.n_layers))
      aux = {**aux, "moe_load_balance": aux["moe_load_balance"] / n_moe,
             "moe_router_z": aux["moe_router_z"] / n_moe}
      aux["moe_loss"] = weighted_loss(cfg, aux["moe_load_balance"], aux["moe_router_z"])
    return x, aux

  def hidden(self, tokens_BT, positions_BT, segment_ids_BT, caches=None):
    """Final hidden states (after the last norm) and the updated caches: for
    callers that need the logits of a few positions only (`logits_of`)."""
    x, caches, _ = self._hidden(tokens_BT, positions_BT, segment_ids_BT, caches)
    return x, caches

  def logits_of(self, x_BTD):
    """Logits of hidden states, as `__call__` computes them."""
    return output_logits(x_BTD, self.head_weight(), self.cfg.vocab_size, self.cfg.matmul)

  def head_weight(self):
    """The output layer's weights [d_model, padded vocab] in the param dtype
    (the embedding's transpose when tied)."""
    if self.cfg.tie_embeddings:
      return self.embed.embedding[...].T
    return self.lm_head.kernel[...]

  def _forward(self, tokens_BT, positions_BT, segment_ids_BT, caches):
    x, caches, aux = self._hidden(tokens_BT, positions_BT, segment_ids_BT, caches)
    logits = output_logits(x, self.head_weight(), self.cfg.vocab_size, self.cfg.matmul)
    return logits, caches, aux

  def _hidden(self, tokens_BT, positions_BT, segment_ids_BT, caches):
    cfg = self.cfg
    x = sharding.constrain(self.embed(tokens_BT, activation_dtype(cfg.compute_dtype)),
                           ("batch", "seq", None))
    aux = zero_aux(cfg)

    def run_block(block, x, positions, segment_ids, cache, aux):
      return block(x, positions, segment_ids, cache, aux)

    remat = cfg.remat != "none" and caches is None
    if remat:
      run_block = nnx.remat(run_block, policy=_REMAT_POLICIES[cfg.remat])
    if cfg.scan_layers:
      if caches is not None:
        raise ValueError("Decoding runs on the unscanned layout: convert the params with "
                         "layer_stack.unscan_tree and use scan_layers=False.")
      if hasattr(self, "layers"):
        x, aux = self._scan_groups((x, aux), positions_BT, segment_ids_BT, remat)
      blocks = self.tail
    else:
      blocks = self.blocks
    new_caches = []
    for i, block in enumerate(blocks):
      x, cache, aux = run_block(block, x, positions_BT, segment_ids_BT,
                                None if caches is None else caches[i], aux)
      x = sharding.constrain(x, ("batch", "seq", None))
      new_caches.append(cache)
    # In the compute dtype: the output layer's GEMM operand (see activation_dtype).
    x = self.final_norm(x).astype(cfg.compute_dtype)
    return x, (None if caches is None else new_caches), aux

  def _scan_groups(self, carry, positions_BT, segment_ids_BT, remat: bool):
    """Runs the stacked groups as one scan (remat, when on, applies per group)."""
    body = _scan_body
    if remat:
      body = nnx.remat(body, policy=_REMAT_POLICIES[self.cfg.remat])
    scan = nnx.scan(body, in_axes=(0, nnx.Carry, None, None), out_axes=nnx.Carry)
    return scan(self.layers, carry, positions_BT, segment_ids_BT)


def _scan_body(group, carry, positions_BT, segment_ids_BT):
  return group(carry, positions_BT, segment_ids_BT)


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> list[dict]:
  """Empty KV caches, one per layer, for `max_len` decoding slots.

  Full-attention layers keep every slot; sliding-window layers keep a ring of
  min(window, max_len) slots with the absolute slot each one holds (-window:
  empty, never inside a window).
  """
  caches = []
  for window in cfg.layer_windows():
    size = max_len if window == FULL_ATTENTION else min(window, max_len)
    shape = (batch, size, cfg.n_kv_heads, cfg.head_dim)
    cache = {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype),
             "segment_ids": jnp.zeros((batch, size), jnp.int32),
             "index": jnp.array(0, jnp.int32)}
    if window != FULL_ATTENTION:
      cache["slot_positions"] = jnp.full((size,), -window - max_len, jnp.int32)
    caches.append(cache)
  return caches
