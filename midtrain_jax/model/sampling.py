"""KV-cache sampling: greedy or temperature decoding of a batch of prompts.

Prompts of different lengths are left-padded into one [B, P] block. Padding
slots carry segment id 0 and real tokens segment id 1, so the attention mask
(same segment, causal, sliding window on slot distance) hides the padding and
windows measure real distance, because slots after the padding are contiguous.
Positions restart at 0 on each prompt's first real token.

`generate` runs the whole of decoding, prefill plus a `lax.scan` over new
tokens, as one jitted function per (prompt bucket, new tokens, temperature), so
a suite of prompts compiles a handful of times. `prefill` and `decode_steps`
are the same decoding in pieces, for callers that stop a batch early
(`evals/batch_decode.py`: a host loop that checks stop sequences every few
steps): a `DecodeState` carries the caches and a done mask between them.
"""
import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.model import layer_stack
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.model.transformer import Transformer, init_cache


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  """How to decode.

  Attributes:
    max_new_tokens: tokens generated after each prompt.
    temperature: 0 for greedy decoding, else the softmax temperature.
    top_p: nucleus sampling: sample among the most likely tokens whose
      probabilities sum to `top_p` (1 = all tokens).
    eos_id: generation of a row stops after this token (-1: never).
    bucket: prompt lengths are rounded up to a multiple of this, so prompts
      of similar length share one compiled function.
  """
  max_new_tokens: int = 64
  temperature: float = 0.0
  top_p: float = 1.0
  eos_id: int = -1
  bucket: int = 64


def left_pad(prompts: Sequence[Sequence[int]], length: int, pad_id: int = 0):
  """Left-pads token lists to `length`.

  Args:
    prompts: token id lists, each at most `length` long and non-empty.
    length: the padded width P.
    pad_id: the id placed in padding slots.

  Returns:
    (tokens [B, P], segment_ids [B, P], positions [B, P]) int32 arrays.
  """
  b = len(prompts)
  tokens = np.full((b, length), pad_id, np.int32)
  segments = np.zeros((b, length), np.int32)
  positions = np.zeros((b, length), np.int32)
  for i, prompt in enumerate(prompts):
    n = len(prompt)
    if not 0 < n <= length:
      raise ValueError(f"Prompt {i} has {n} tokens; prompts need 1 to {length} tokens.")
    tokens[i, length - n:] = prompt
    segments[i, length - n:] = 1
    positions[i, length - n:] = np.arange(n)
  return tokens, segments, positions


def _pick(logits_BV, key, temperature: float, top_p: float):
  if temperature == 0.0:
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
  logits_BV = logits_BV / temperature
  if top_p < 1.0:
    # Keep the smallest set of most likely tokens whose probability reaches top_p.
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    cumulative_BV = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
    cut_B = jnp.sum(cumulative_BV < top_p, axis=-1, keepdims=True)
    threshold_B1 = jnp.take_along_axis(sorted_BV, cut_B, axis=-1)
    logits_BV = jnp.where(logits_BV >= threshold_B1, logits_BV, -jnp.inf)
  return jax.random.categorical(key, logits_BV, axis=-1).astype(jnp.int32)


class DecodeState(NamedTuple):
  """What decoding carries from one step to the next.

  Attributes:
    caches: the per-layer KV caches.
    logits_BV: the logits the next token of each row is picked from.
    pos_B: the position of each row's next token.
    done_B: rows that stopped: they emit token 0 from now on, which only their
      own row attends to, so they change no other row's results.
  """
  caches: list
  logits_BV: jax.Array
  pos_B: jax.Array
  done_B: jax.Array


def _step(model, state: DecodeState, key, temperature: float, top_p: float, eos_id: int):
  """Picks each row's next token and feeds it through the cache."""
  token_B = _pick(state.logits_BV, key, temperature, top_p)
  token_B = jnp.where(state.done_B, 0, token_B)
  done_B = state.done_B | (token_B == eos_id)
  ones_B1 = jnp.ones_like(token_B)[:, None]
  new_logits, caches = model(token_B[:, None], state.pos_B[:, None], ones_B1, state.caches)
  return DecodeState(caches, new_logits[:, 0], state.pos_B + 1, done_B), token_B


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "cache_len"))
def prefill(params, tokens_BP, segments_BP, positions_BP, done_B, *, graphdef,
            cfg: ModelConfig, cache_len: int) -> DecodeState:
  """Runs left-padded prompts into fresh caches of `cache_len` slots.

  Only the last position's logits are computed: a [B, P, V] block of
  float32 logits would dominate a batch's memory.

  Args:
    params: model params (unscanned layers: `for_decoding`).
    tokens_BP: left-padded prompts (`left_pad`).
    segments_BP: their segment ids.
    positions_BP: their positions.
    done_B: rows that start done (filler rows of a short batch).
    graphdef: the model's graph definition.
    cfg: the model config.
    cache_len: cache slots: at least the prompt width plus the steps to come.

  Returns:
    The DecodeState before the first new token.
  """
  model = nnx.merge(graphdef, params)
  caches = init_cache(cfg, tokens_BP.shape[0], cache_len, jnp.dtype(cfg.compute_dtype))
  hidden, caches = model.hidden(tokens_BP, positions_BP, segments_BP, caches)
  logits_BV = model.logits_of(hidden[:, -1:])[:, 0]
  return DecodeState(caches, logits_BV, positions_BP[:, -1] + 1, done_B)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "steps", "temperature",
                                              "top_p", "eos_id"), donate_argnums=(1,))
def decode_steps(params, state: DecodeState, key, *, graphdef, cfg: ModelConfig, steps: int,
                 temperature: float, top_p: float, eos_id: int):
  """`steps` more tokens of every row (a `lax.scan`); the state is donated.

  Returns:
    (the new DecodeState, tokens [B, steps]: 0 once a row is done).
  """
  del cfg  # Part of the cache key: the graphdef alone does not name the dtypes.
  model = nnx.merge(graphdef, params)

  def step(state, key_t):
    return _step(model, state, key_t, temperature, top_p, eos_id)

  state, tokens_NB = jax.lax.scan(step, state, jax.random.split(key, steps))
  return state, tokens_NB.T


def for_decoding(params, graphdef, cfg: ModelConfig):
  """(params, graphdef, cfg) with the layers as a list: the KV cache is per layer."""
  if not cfg.scan_layers:
    return params, graphdef, cfg
  params = layer_stack.unscan_tree(params, cfg)
  cfg = dataclasses.replace(cfg, scan_layers=False)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  return params, graphdef, cfg


def bucket_width(prompts: Sequence[Sequence[int]], bucket: int) -> int:
  """The padded width of `prompts`: the longest rounded up to a multiple of `bucket`."""
  return -(-max(len(p) for p in prompts) // bucket) * bucket


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "max_new_tokens",
                                              "temperature", "top_p", "eos_id"))
def _generate(params, tokens_BP, segments_BP, positions_BP, key, *, graphdef,
              cfg: ModelConfig, max_new_tokens: int, temperature: float, top_p: float,
              eos_id: int):
  """Prefill + scan decoding; returns (new tokens [B, N], step logits [B, N, V])."""
  model = nnx.merge(graphdef, params)
  b, p = tokens_BP.shape
  caches = init_cache(cfg, b, p + max_new_tokens, jnp.dtype(cfg.compute_dtype))
  logits, caches = model(tokens_BP, positions_BP, segments_BP, caches)
  state = DecodeState(caches, logits[:, -1], positions_BP[:, -1] + 1, jnp.zeros((b,), bool))

  def step(state, key_t):
    new_state, token_B = _step(model, state, key_t, temperature, top_p, eos_id)
    return new_state, (token_B, state.logits_BV)

  keys = jax.random.split(key, max_new_tokens)
  _, (tokens_NB, logits_NBV) = jax.lax.scan(step, state, keys)
  return tokens_NB.T, jnp.swapaxes(logits_NBV, 0, 1)


def generate(params, graphdef, cfg: ModelConfig, prompts: Sequence[Sequence[int]],
             sample: SampleConfig, seed: int = 0, return_logits: bool = False):
  """Continues each prompt with the KV cache.

  Args:
    params: model params (nested dict, as in checkpoints).
    graphdef: the model's graph definition (`train.step.abstract_model`).
    cfg: the model config.
    prompts: token id lists, each as the model's tokenizer starts a text
      (`Tokenizer.encode_prompt`: BOS first only where it adds one).
    sample: decoding settings.
    seed: sampling seed (unused when greedy).
    return_logits: also return the logits each new token was picked from.

  Returns:
    A list of generated token lists, cut after `sample.eos_id` (kept) and
    nothing after it; with `return_logits`, also an array [B, N, V].
  """
  if sample.max_new_tokens <= 0:
    raise ValueError(f"max_new_tokens={sample.max_new_tokens} must be positive.")
  params, graphdef, cfg = for_decoding(params, graphdef, cfg)
  width = bucket_width(prompts, sample.bucket)
  tokens, segments, positions = left_pad(prompts, width)
  new, logits = _generate(params, tokens, segments, positions, jax.random.key(seed),
                          graphdef=graphdef, cfg=cfg, max_new_tokens=sample.max_new_tokens,
                          temperature=float(sample.temperature), top_p=float(sample.top_p),
                          eos_id=sample.eos_id)
  out = []
  for row in np.asarray(new).tolist():
    if sample.eos_id in row:
      row = row[:row.index(sample.eos_id) + 1]
    out.append(row)
  return (out, np.asarray(logits)) if return_logits else out
