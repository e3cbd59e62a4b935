"""Batched decoding with early stops against one-at-a-time decoding, and its batch plan."""
import dataclasses

import pytest
from flax import nnx

from midtrain_jax.evals import batch_decode
from midtrain_jax.model import sampling
from midtrain_jax.model.transformer import Transformer
from midtrain_jax.train import memory_plan
from tests import helpers

MAX_NEW = 32
STARTS, LENGTHS = (0, 100, 200, 300, 400), (3, 9, 17, 5, 30)
# Where each prompt's own stop sequence is taken from its greedy continuation.
STOP_AT = (8, 23, 28, 16, 2)


def _detok(ids) -> str:
  """A text whose tokens have 2 to 4 characters, so stops can span and split tokens."""
  return "".join(f"{i}," for i in ids)


@pytest.fixture(scope="module")
def tiny():
  cfg = helpers.tiny_model()  # float32, sliding window 8 on one of its two layers.
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  stream = (helpers.stdlib_bytes(2000) % cfg.vocab_size).tolist()
  prompts = [stream[a:a + n] for a, n in zip(STARTS, LENGTHS)]
  return cfg, graphdef, nnx.to_pure_dict(state), prompts


def _one_at_a_time(tiny, sample, stops):
  """Each prompt decoded alone for the full length, then cut after the shortest
  prefix whose text holds a stop (EOS: `generate` already cut after it)."""
  cfg, graphdef, params, prompts = tiny
  out = []
  for prompt in prompts:
    row = sampling.generate(params, graphdef, cfg, [prompt], sample)[0]
    cut = next((n for n in range(1, len(row) + 1) if any(s in _detok(row[:n]) for s in stops)),
               len(row))
    out.append(row[:cut])
  return out


def test_batched_early_stops_equal_one_at_a_time_token_for_token(tiny):
  """5 prompts of different lengths in batches of 2 (the last filled with a done
  row), stop sequences spanning two tokens and cutting into both, one row ending
  at EOS, each at a different step: the same tokens as decoding each prompt
  alone, and every batch ends within check_every steps of its last row's stop."""
  cfg, graphdef, params, prompts = tiny
  sample = sampling.SampleConfig(max_new_tokens=MAX_NEW, bucket=8)
  full = [sampling.generate(params, graphdef, cfg, [p], sample)[0] for p in prompts]
  # "52,481," of tokens 152, 481 gives the stop "2,48": part of each token.
  stops = tuple(_detok(row[k:k + 2])[1:-2] for row, k in zip(full, STOP_AT))
  # The third prompt's EOS comes before its own stop sequence.
  sample = dataclasses.replace(sample, eos_id=full[2][15])
  expected = _one_at_a_time(tiny, sample, stops)
  assert [len(e) for e in expected] == [10, 25, 16, 18, 4]  # Stops at different steps.
  assert expected[2][-1] == sample.eos_id
  # An empty stop (an EOS whose text is empty) would stop every row at once: ignored.
  got = batch_decode.decode(params, graphdef, cfg, prompts, sample, detok=_detok,
                            stops=stops + ("",), batch=2, check_every=4)
  assert got.tokens == expected
  assert got.batch == 2 and len(got.steps) == 3
  # Sorted longest first: batches (30, 17), (9, 5), (3 + a done filler row).
  order = sorted(range(5), key=lambda i: -LENGTHS[i])
  for b, steps in enumerate(got.steps):
    longest = max(len(expected[i]) for i in order[2 * b:2 * b + 2])
    assert steps == -(-longest // 4) * 4 < MAX_NEW, (b, steps, longest)


def test_no_stop_runs_every_token_and_equals_generate(tiny):
  """Without stops or EOS a row runs max_new_tokens (not a multiple of check_every)."""
  cfg, graphdef, params, prompts = tiny
  sample = sampling.SampleConfig(max_new_tokens=10, bucket=8)
  got = batch_decode.decode(params, graphdef, cfg, prompts, sample, batch=3, check_every=4)
  assert got.tokens == [sampling.generate(params, graphdef, cfg, [p], sample)[0]
                        for p in prompts]
  assert got.steps == [12, 12]


def test_first_stop_takes_the_shortest_prefix_and_eos():
  toks = [152, 481, 7, 33]
  assert batch_decode.first_stop(toks, _detok, ("2,48",), -1) == 2
  assert batch_decode.first_stop(toks, _detok, ("7,3",), 7) == 3  # EOS first.
  assert batch_decode.first_stop(toks, _detok, ("99",), -1) is None
  assert batch_decode.first_stop(toks, _detok, ("99",), 33) == 4


def test_planned_batch_fits_the_budget():
  """A row's bytes hold at least its KV cache; the budget buys whole rows."""
  cfg = dataclasses.replace(helpers.tiny_model(), window_pattern=(0,))
  row = memory_plan.decode_row_bytes(cfg, 64, 96)
  kv = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 96 * 4
  assert kv < row
  assert batch_decode.plan_batch(cfg, 64, 96, 100, memory_bytes=3.5 * row) == 3
  assert batch_decode.plan_batch(cfg, 64, 96, 2, memory_bytes=3.5 * row) == 2
  assert batch_decode.plan_batch(cfg, 64, 96, 100, memory_bytes=1.0) == 1


def test_bad_arguments_are_named():
  cfg = helpers.tiny_model()
  with pytest.raises(ValueError, match="need `detok`"):
    batch_decode.decode(None, None, cfg, [[1]], sampling.SampleConfig(4), stops=("x",))
  with pytest.raises(ValueError, match="max_new_tokens=0"):
    batch_decode.decode(None, None, cfg, [[1]], sampling.SampleConfig(0))
