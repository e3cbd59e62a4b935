"""The decoder: embeddings, a stack of attention + SwiGLU blocks, output head."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model.attention import Attention
from midtrain_jax.model.config import ModelConfig
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


class Transformer(nnx.Module):
  """Decoder-only language model built from a frozen ModelConfig."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = Embed(cfg.padded_vocab_size, cfg.d_model, std=cfg.init_std,
                       param_dtype=cfg.param_dtype, rngs=rngs)
    self.blocks = nnx.List([Block(cfg, w, rngs=rngs) for w in cfg.layer_windows()])
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

    if cfg.remat != "none" and caches is None:
      run_block = nnx.remat(run_block, policy=_REMAT_POLICIES[cfg.remat])
    new_caches = []
    for i, block in enumerate(self.blocks):
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


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> list[dict]:
  """Empty KV caches, one per layer, for `max_len` decoding slots."""
  shape = (batch, max_len, cfg.n_kv_heads, cfg.head_dim)
  return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype),
           "segment_ids": jnp.zeros((batch, max_len), jnp.int32),
           "index": jnp.array(0, jnp.int32)} for _ in range(cfg.n_layers)]
