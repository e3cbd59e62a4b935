"""The decoder: embeddings, a stack of attention + SwiGLU blocks, output head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model import layer_stack
from midtrain_jax.model.attention import Attention
from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig
from midtrain_jax.model.layers import Dense, Embed, RMSNorm, SwiGLU
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

  def __init__(self, cfg: ModelConfig, window: int, *, rngs: nnx.Rngs):
    self.pre_norm = cfg.norm == "pre"
    norm = functools.partial(RMSNorm, cfg.d_model, eps=cfg.norm_eps, axes=("norm",),
                             param_dtype=cfg.param_dtype, rngs=rngs)
    self.attn_norm, self.mlp_norm = norm(), norm()
    self.attn = Attention(cfg, window, rngs=rngs)
    self.mlp = SwiGLU(cfg.d_model, cfg.mlp_dim, std=cfg.init_std,
                      out_std=cfg.init_std / np.sqrt(2 * cfg.n_layers),
                      param_dtype=cfg.param_dtype, rngs=rngs)

  def __call__(self, x_BTD, positions_BT, segment_ids_BT, cache=None):
    if self.pre_norm:
      attn_out, cache = self.attn(self.attn_norm(x_BTD), positions_BT, segment_ids_BT, cache)
      h = x_BTD + attn_out
      return h + self.mlp(self.mlp_norm(h)), cache
    attn_out, cache = self.attn(x_BTD, positions_BT, segment_ids_BT, cache)
    h = x_BTD + self.attn_norm(attn_out)
    return h + self.mlp_norm(self.mlp(h)), cache


class BlockGroup(nnx.Module):
  """Consecutive layers with the window pattern's windows: one step of the layer scan."""

  def __init__(self, cfg: ModelConfig, windows, *, rngs: nnx.Rngs):
    self.blocks = nnx.List([Block(cfg, w, rngs=rngs) for w in windows])

  def __call__(self, x_BTD, positions_BT, segment_ids_BT):
    for block in self.blocks:
      x_BTD, _ = block(x_BTD, positions_BT, segment_ids_BT)
      x_BTD = sharding.constrain(x_BTD, ("batch", "seq", None))
    return x_BTD


def _stacked_groups(cfg: ModelConfig, n_groups: int, rngs: nnx.Rngs) -> BlockGroup:
  """n_groups BlockGroups with every parameter stacked on a leading axis."""
  @nnx.split_rngs(splits=n_groups)
  @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=n_groups)
  def make(rngs):
    return BlockGroup(cfg, cfg.window_pattern, rngs=rngs)
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
    windows = cfg.layer_windows()
    if cfg.scan_layers:
      groups = layer_stack.groups(cfg)
      if groups.n_groups:
        self.layers = _stacked_groups(cfg, groups.n_groups, rngs)
      self.tail = nnx.List([Block(cfg, w, rngs=rngs) for w in windows[groups.n_scanned:]])
    else:
      self.blocks = nnx.List([Block(cfg, w, rngs=rngs) for w in windows])
    self.final_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps, axes=("norm",),
                              param_dtype=cfg.param_dtype, rngs=rngs)
    if not cfg.tie_embeddings:
      self.lm_head = Dense((cfg.d_model,), (cfg.padded_vocab_size,), axes=("embed", "vocab"),
                           std=cfg.init_std, param_dtype=cfg.param_dtype, rngs=rngs)

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
    cfg = self.cfg
    x = sharding.constrain(self.embed(tokens_BT, jnp.dtype(cfg.compute_dtype)),
                           ("batch", "seq", None))

    def run_block(block, x, positions, segment_ids, cache):
      return block(x, positions, segment_ids, cache)

    remat = cfg.remat != "none" and caches is None
    if remat:
      run_block = nnx.remat(run_block, policy=_REMAT_POLICIES[cfg.remat])
    if cfg.scan_layers:
      if caches is not None:
        raise ValueError("Decoding runs on the unscanned layout: convert the params with "
                         "layer_stack.unscan_tree and use scan_layers=False.")
      if hasattr(self, "layers"):
        x = self._scan_groups(x, positions_BT, segment_ids_BT, remat)
      blocks = self.tail
    else:
      blocks = self.blocks
    new_caches = []
    for i, block in enumerate(blocks):
      x, cache = run_block(block, x, positions_BT, segment_ids_BT,
                           None if caches is None else caches[i])
      x = sharding.constrain(x, ("batch", "seq", None))
      new_caches.append(cache)
    x = self.final_norm(x)
    # float32 straight out of the head's dot: bf16 logits would round away the
    # small differences the loss and its gradient are made of.
    head = self.embed.attend if cfg.tie_embeddings else self.lm_head
    logits = head(x, out_dtype=jnp.float32)
    if cfg.padded_vocab_size != cfg.vocab_size:
      valid = jnp.arange(cfg.padded_vocab_size) < cfg.vocab_size
      logits = jnp.where(valid, logits, jnp.finfo(jnp.float32).min)
    return logits, (None if caches is None else new_caches)

  def _scan_groups(self, x_BTD, positions_BT, segment_ids_BT, remat: bool):
    """Runs the stacked groups as one scan (remat, when on, applies per group)."""
    body = _scan_body
    if remat:
      body = nnx.remat(body, policy=_REMAT_POLICIES[self.cfg.remat])
    scan = nnx.scan(body, in_axes=(0, nnx.Carry, None, None), out_axes=nnx.Carry)
    return scan(self.layers, x_BTD, positions_BT, segment_ids_BT)


def _scan_body(group, x_BTD, positions_BT, segment_ids_BT):
  return group(x_BTD, positions_BT, segment_ids_BT)


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
