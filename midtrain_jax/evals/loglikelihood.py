"""Loglikelihoods of continuations given contexts, encoded as lm-eval-harness encodes them.

Encoding (`encode_pair`, lm-eval-harness's `_encode_pair`), so figures compare
with the field's:

* trailing whitespace of the context moves to the start of the continuation;
* the continuation's tokens are those of tokenize(context + continuation)
  after the first len(tokenize(context)) of them;
* no special tokens, except a BOS before the context when the model's
  tokenizer adds one (`Tokenizer.start_ids`);
* an empty context is the EOS token, and the continuation is tokenized alone;
* a context longer than the window (`max_len` minus the continuation) is cut
  from the left.

Scoring (`loglikelihoods`): requests are grouped by their context tokens. Each
distinct context runs once, longest first and batched, filling a KV cache;
every continuation of that context is then scored as a short chunk against a
copy of its cache. A k-choice item costs one context and k short
continuations, not k contexts.
"""
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from midtrain_jax.evals.scoring import LoadedModel
from midtrain_jax.model import layer_stack
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.model.transformer import Transformer, init_cache
from midtrain_jax.parallel import sharding

_CONTINUATION_BUCKET = 64


@dataclasses.dataclass(frozen=True)
class Scored:
  """One request's result.

  Attributes:
    logprob: summed log-probability of the continuation's tokens (nats).
    tokens: the continuation's tokens.
    greedy: every continuation token is the model's most likely one.
  """
  logprob: float
  tokens: int
  greedy: bool


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
  """(context tokens, continuation tokens) of one request (module docstring)."""
  spaces = len(context) - len(context.rstrip())
  if spaces:
    context, continuation = context[:-spaces], context[-spaces:] + continuation
  if not context:
    return [tok.eos_id], tok.encode(continuation)
  whole = tok.encode(context + continuation)
  context_ids = tok.encode(context)
  return tok.start_ids() + context_ids, whole[len(context_ids):]


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _width(n: int, bucket: int) -> int:
  """A padded length for n tokens: a power of two (at least 8) up to `bucket`, then a
  multiple of it, so short rows ("Answer:", a few answer tokens) are not padded to
  a long bucket and the number of compiled shapes stays small."""
  if n > bucket:
    return _round_up(n, bucket)
  return max(8, 1 << (n - 1).bit_length())


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg"))
def _score(params, ctx_BP, ctx_segments_BP, ctx_positions_BP, row_context_R, cont_RC,
           cont_segments_RC, cont_positions_RC, *, graphdef, cfg: ModelConfig):
  """(log-probability [R, C], is-argmax [R, C]) of each continuation token."""
  model = nnx.merge(graphdef, params)
  b, p = ctx_BP.shape
  caches = init_cache(cfg, b, p + cont_RC.shape[1], jnp.dtype(cfg.compute_dtype))
  x_BPD, caches = model.hidden(ctx_BP, ctx_positions_BP, ctx_segments_BP, caches)
  last_BV = model.logits_of(x_BPD[:, -1:])[:, 0]
  # Each continuation row gets a copy of its context's cache (batch-major arrays only).
  caches = jax.tree.map(lambda a: a[row_context_R] if a.ndim >= 2 else a, caches)
  y_RCD, _ = model.hidden(cont_RC, cont_positions_RC, cont_segments_RC, caches)
  logits_RCV = model.logits_of(y_RCD)
  # Token j of a continuation is predicted by the logits before it: the context's
  # last position for j = 0, the continuation's position j - 1 after that.
  predicted_RCV = jnp.concatenate([last_BV[row_context_R][:, None], logits_RCV[:, :-1]], 1)
  logp_RCV = jax.nn.log_softmax(predicted_RCV.astype(jnp.float32), axis=-1)
  logp_RC = jnp.take_along_axis(logp_RCV, cont_RC[..., None], axis=-1)[..., 0]
  return logp_RC, jnp.argmax(predicted_RCV, axis=-1) == cont_RC


def _run_score(params, blocks, graphdef, cfg: ModelConfig, mesh):
  """`_score` on one device, or under `mesh` (its activation constraints need it) with
  the blocks replicated over it, every process passing the same ones. A one-device
  mesh constrains nothing: it takes the plain path, whose compiled programs an offline
  evaluation in the same process (a workflow's report) then reuses."""
  if mesh is None or mesh.size == 1:
    return _score(params, *blocks, graphdef=graphdef, cfg=cfg)
  blocks = jax.device_put(blocks, sharding.replicated(mesh))
  with jax.set_mesh(mesh):
    return _score(params, *blocks, graphdef=graphdef, cfg=cfg)


def _model_for_decoding(model: LoadedModel):
  """(params, graphdef, cfg) with the layers as a list (the KV cache is per layer)."""
  if not model.model_cfg.scan_layers:
    return model.params, model.graphdef, model.model_cfg
  cfg = dataclasses.replace(model.model_cfg, scan_layers=False)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  return layer_stack.unscan_tree(model.params, model.model_cfg), graphdef, cfg


def _context_block(contexts: list[tuple[int, ...]], rows: int, bucket: int):
  """Left-padded contexts [rows, P]: tokens, segment ids (0 = padding), positions."""
  width = _width(max(len(c) for c in contexts), bucket)
  tokens = np.zeros((rows, width), np.int32)
  segments = np.zeros((rows, width), np.int32)
  positions = np.zeros((rows, width), np.int32)
  for i, ctx in enumerate(contexts):
    tokens[i, width - len(ctx):] = ctx
    segments[i, width - len(ctx):] = 1
    positions[i, width - len(ctx):] = np.arange(len(ctx))
  return tokens, segments, positions


def _continuation_block(rows: list[tuple[int, Sequence[int]]], context_lengths: list[int],
                        num_rows: int):
  """Right-padded continuations [R, C] after their contexts, and each row's context."""
  width = _width(max(len(c) for _, c in rows), _CONTINUATION_BUCKET)
  tokens = np.zeros((num_rows, width), np.int32)
  segments = np.zeros((num_rows, width), np.int32)
  positions = np.zeros((num_rows, width), np.int32)
  row_context = np.zeros((num_rows,), np.int32)
  for r, (ctx, cont) in enumerate(rows):
    tokens[r, :len(cont)] = cont
    segments[r, :len(cont)] = 1
    positions[r] = context_lengths[ctx] + np.arange(width)
    row_context[r] = ctx
  return tokens, segments, positions, row_context


def loglikelihoods(model: LoadedModel, encoded: Sequence[tuple[Sequence[int], Sequence[int]]],
                   *, max_len: int = 2048, batch: int = 4, choices: int = 0, bucket: int = 128,
                   mesh=None, log: Callable[[str], None] | None = None) -> list[Scored]:
  """Scores (context tokens, continuation tokens) pairs (module docstring).

  Every forward pass has one shape per context length bucket: `batch` contexts,
  each with up to `choices` continuations (a context with more, such as the
  short "Answer:" of unconditioned requests, is run again for the rest).

  Args:
    model: the loaded checkpoint (one device, or its params sharded over `mesh`).
    encoded: `encode_pair` results.
    max_len: the window: context + continuation tokens fed at most.
    batch: contexts per forward pass.
    choices: continuations per context and pass (0: the most that a context
      with at most 8 has).
    bucket: context lengths are padded to a multiple of this (fewer compilations).
    mesh: the mesh `model.params` are sharded over (training's layout); each
      block then runs under it, replicated, as the train step runs (None: one
      device).
    log: progress printer (None: silent).

  Returns:
    One Scored per pair, in order.
  """
  params, graphdef, cfg = _model_for_decoding(model)
  groups: dict[tuple[int, ...], list[int]] = {}
  for i, (ctx, cont) in enumerate(encoded):
    if not cont or len(cont) >= max_len:
      raise ValueError(f"Request {i}: its continuation has {len(cont)} tokens; it needs 1 to "
                       f"{max_len - 1} (the window is {max_len}).")
    groups.setdefault(tuple(ctx), []).append(i)
  # Rows per context: what an item's contexts hold (a shared one, like the
  # unconditioned "Answer:", is split into runs of that many).
  choices = choices or max((len(m) for m in groups.values() if len(m) <= 8), default=8)
  # (context, up to `choices` of its requests), longest contexts first.
  work = [(ctx, members[k:k + choices]) for ctx, members in groups.items()
          for k in range(0, len(members), choices)]
  work.sort(key=lambda w: len(w[0]), reverse=True)
  out: list[Scored | None] = [None] * len(encoded)
  started, done = time.time(), 0
  for start in range(0, len(work), batch):
    chunk = work[start:start + batch]
    rows = [(j, encoded[i][1]) for j, (_, members) in enumerate(chunk) for i in members]
    # Each context keeps what the window leaves beside its own longest
    # continuation (not the chunk's: another row's long one must not cut it).
    contexts = [ctx[-(max_len - max(len(encoded[i][1]) for i in members)):]
                for ctx, members in chunk]
    ctx_block = _context_block(contexts + [(0,)] * (batch - len(chunk)), batch, bucket)
    cont_block = _continuation_block(rows, [len(c) for c in contexts], batch * choices)
    logp, greedy = jax.device_get(_run_score(params, (*ctx_block, cont_block[3],
                                                       *cont_block[:3]), graphdef, cfg, mesh))
    for r, i in enumerate(i for _, members in chunk for i in members):
      n = len(encoded[i][1])
      out[i] = Scored(float(logp[r, :n].sum()), n, bool(greedy[r, :n].all()))
    done += len(rows)
    if log and (start // batch) % 25 == 24:
      log(f"[loglikelihood] {done}/{len(encoded)} requests ({time.time() - started:.0f}s)")
  return out
