"""Batched decoding that scales: bounded batches sorted by length, each row stopping
at its own stop sequence or EOS, each batch ending when all its rows have.

Prompts are sorted longest first and decoded `batch` at a time (a fixed size,
or the most rows whose KV cache and prefill activations fit a memory budget:
`plan_batch`); results come back in the order given. A short last batch is
filled with rows that start done, so every batch of a prompt bucket runs one
compiled function. A batch is prefilled once (`sampling.prefill`), then a
host loop runs `check_every` decoding steps at a time on the device
(`sampling.decode_steps`) and, between them, decodes each live row's new tokens
to text: a row stops at the shortest prefix of its tokens whose text contains
a stop sequence (a stop may span several tokens, or be part of one), or at EOS
(kept). Stopped rows emit padding that only their own row sees, so a row's
tokens are the same in any batch, and the batch ends when every row has
stopped (or at `max_new_tokens`).
"""
import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from midtrain_jax.model import sampling
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.train import memory_plan

# A planned batch uses at most this share of the free memory (the rest: XLA's
# temporaries, fragmentation and what the caller holds).
PLANNED_FRACTION = 0.5
# More rows than this per planned batch gain little and delay the first result.
MAX_PLANNED_BATCH = 256
CHECK_EVERY = 8


@dataclasses.dataclass(frozen=True)
class Decoded:
  """Decoding results, in the prompts' order.

  Attributes:
    tokens: each prompt's new tokens, up to and including the one that
      completed a stop sequence, or EOS.
    batch: rows per batch.
    steps: decoding steps each batch ran (a multiple of `check_every`, at most
      `max_new_tokens` rounded up to one): fewer than `max_new_tokens` when all
      its rows stopped early.
  """
  tokens: list[list[int]]
  batch: int
  steps: list[int]


def free_memory_bytes(device=None) -> float:
  """Bytes free on `device` (default: the first): its allocator's limit less what is
  in use, or on CPU the host's available memory."""
  device = device or jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  try:
    with open("/proc/meminfo") as f:
      fields = dict(line.split(":", 1) for line in f)
    return float(fields["MemAvailable"].split()[0]) * 1024
  except (OSError, KeyError, ValueError):
    return float(memory_plan.chip_memory("cpu"))


def plan_batch(cfg: ModelConfig, prompt_len: int, cache_len: int, n_prompts: int,
               memory_bytes: float = 0.0) -> int:
  """The most rows a decoding batch may hold within a memory budget.

  Args:
    cfg: the model config.
    prompt_len: the padded prompt width of the widest batch.
    cache_len: cache slots per row (prompt width + new tokens).
    n_prompts: prompts to decode (no batch needs more rows).
    memory_bytes: the budget; 0 = `PLANNED_FRACTION` of the device's free memory.

  Returns:
    A batch size from 1 to min(n_prompts, MAX_PLANNED_BATCH).
  """
  budget = memory_bytes or PLANNED_FRACTION * free_memory_bytes()
  rows = int(budget // memory_plan.decode_row_bytes(cfg, prompt_len, cache_len))
  return max(1, min(rows, n_prompts, MAX_PLANNED_BATCH))


def first_stop(tokens: Sequence[int], detok: Callable[[list[int]], str],
               stops: Sequence[str], eos_id: int, start: int = 0) -> int | None:
  """How many of `tokens` a row keeps: up to the first EOS, or the shortest prefix
  whose text contains a stop sequence; None when neither occurs.

  Args:
    tokens: a row's new tokens.
    detok: token ids -> text.
    stops: stop sequences.
    eos_id: the EOS id (-1: none).
    start: prefixes up to this long were already checked.
  """
  tokens = list(tokens)
  eos = tokens.index(eos_id, start) + 1 if eos_id in tokens[start:] else None
  end = eos or len(tokens)
  if stops and any(s in detok(tokens[:end]) for s in stops):
    for n in range(start + 1, end + 1):
      if any(s in detok(tokens[:n]) for s in stops):
        return n
  return eos


def _decode_batch(model, prompts, sample: sampling.SampleConfig, detok, stops, rows: int,
                  width: int, check_every: int, seed: int) -> tuple[list[list[int]], int]:
  """Decodes up to `rows` prompts in one batch; returns (their tokens, steps run)."""
  params, graphdef, cfg = model
  live = len(prompts)
  padded = list(prompts) + [prompts[-1]] * (rows - live)
  tokens, segments, positions = sampling.left_pad(padded, width)
  chunks = -(-sample.max_new_tokens // check_every)
  done = np.arange(rows) >= live
  state = sampling.prefill(params, tokens, segments, positions, jnp.asarray(done),
                           graphdef=graphdef, cfg=cfg, cache_len=width + chunks * check_every)
  new = np.zeros((rows, 0), np.int32)
  kept: list[int | None] = [None] * live
  key, steps = jax.random.key(seed), 0
  while steps < sample.max_new_tokens and not done.all():
    state, chunk = sampling.decode_steps(
        params, state, jax.random.fold_in(key, steps), graphdef=graphdef, cfg=cfg,
        steps=check_every, temperature=float(sample.temperature),
        top_p=float(sample.top_p), eos_id=sample.eos_id)
    new = np.concatenate([new, np.asarray(chunk)], axis=1)
    for i in np.flatnonzero(~done):
      kept[i] = first_stop(new[i].tolist(), detok, stops, sample.eos_id, start=steps)
      done[i] = kept[i] is not None
    steps += check_every
    if done.any():  # Rows stopped by a stop sequence stop on the device too.
      state = state._replace(done_B=jnp.asarray(done))
  limit = sample.max_new_tokens
  return [new[i, :min(kept[i] or limit, limit)].tolist() for i in range(live)], steps


def decode(params, graphdef, cfg: ModelConfig, prompts: Sequence[Sequence[int]],
           sample: sampling.SampleConfig, *, detok: Callable[[list[int]], str] | None = None,
           stops: Sequence[str] = (), batch: int = 0, memory_bytes: float = 0.0,
           check_every: int = CHECK_EVERY, seed: int = 0) -> Decoded:
  """Decodes `prompts` in bounded batches, each row stopping at a stop sequence or EOS.

  Args:
    params: model params.
    graphdef: the model's graph definition.
    cfg: the model config.
    prompts: token id lists (`Tokenizer.encode_prompt`).
    sample: decoding settings (`max_new_tokens`, temperature, `eos_id`, bucket).
    detok: token ids -> text, to find stop sequences (needed when `stops` is set).
    stops: stop sequences: a row stops once its text contains one (empty ones,
      such as the text of an EOS that decodes to nothing, are ignored).
    batch: rows per batch; 0 = planned (`plan_batch` within `memory_bytes`).
    memory_bytes: the planned batch's budget (0: half the device's free memory).
    check_every: decoding steps between stop checks (each a device round trip).
    seed: sampling seed (unused when greedy); a row's samples depend on its batch.

  Returns:
    The Decoded results, in the order of `prompts`.
  """
  if sample.max_new_tokens <= 0:
    raise ValueError(f"max_new_tokens={sample.max_new_tokens} must be positive.")
  if batch < 0 or check_every <= 0:
    raise ValueError(f"batch={batch} must be >= 0 (0: planned) and check_every="
                     f"{check_every} positive.")
  stops = tuple(s for s in stops if s)
  if stops and detok is None:
    raise ValueError(f"Stop sequences {tuple(stops)} need `detok` to read the tokens as text.")
  if not prompts:
    return Decoded([], batch, [])
  model = sampling.for_decoding(params, graphdef, cfg)
  order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
  if not batch:
    width = sampling.bucket_width(prompts, sample.bucket)
    cache = width + -(-sample.max_new_tokens // check_every) * check_every
    batch = plan_batch(model[2], width, cache, len(prompts), memory_bytes)
  out: list[list[int]] = [[] for _ in prompts]
  steps = []
  for start in range(0, len(order), batch):
    rows = order[start:start + batch]
    chosen = [prompts[i] for i in rows]
    width = sampling.bucket_width(chosen, sample.bucket)
    tokens, n = _decode_batch(model, chosen, sample, detok, stops, batch, width,
                              check_every, seed + start)
    for i, row in zip(rows, tokens):
      out[i] = row
    steps.append(n)
  return Decoded(out, batch, steps)


def memory_budget_bytes(gigabytes: float) -> float:
  """`eval.decode_memory_gb` in bytes (0 stays 0: planned from free memory)."""
  return float(gigabytes) * 2**30 if gigabytes else 0.0

