"""OLMES scoring: lm-eval-harness encoding, loglikelihoods through the KV cache, metrics."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import loglikelihood, olmes, scoring
from midtrain_jax.train import step as ts
from tests import helpers


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.load_tokenizer(tokenizer_lib.DEMO_SPM)


def test_encoding_moves_trailing_whitespace_and_splits_the_joint_tokens(tok):
  # The context's trailing space starts the continuation, as lm-eval-harness does.
  assert loglikelihood.encode_pair(tok, "Answer: ", "Paris") == \
      loglikelihood.encode_pair(tok, "Answer:", " Paris")
  context, cont = loglikelihood.encode_pair(tok, "Total: 12", "345 apples")
  # The demo vocabulary starts a text with BOS (Tokenizer.start_ids); only the context has it.
  assert context == [tok.bos_id] + tok.encode("Total: 12")
  assert context[1:] + cont == tok.encode("Total: 12345 apples")  # Digits merge across the cut.
  assert loglikelihood.encode_pair(tok, "", " yes") == ([tok.eos_id], tok.encode(" yes"))
  assert loglikelihood.encode_pair(tok, "  ", "x")[0] == [tok.eos_id]  # All whitespace.


def _loaded(**overrides) -> scoring.LoadedModel:
  cfg = helpers.tiny_model(**overrides)
  graphdef, _, _ = ts.abstract_model(cfg)
  params = jax.device_get(ts.init_params(cfg, jax.random.key(3)))
  return scoring.LoadedModel(params, graphdef, cfg, None, 0, "")


def _full_forward_logprobs(model, pairs) -> list[float]:
  """Each (context, continuation)'s loglikelihood from its whole sequence run at once.

  All sequences go through one jitted forward, right-padded to the longest: the
  model is causal, so a position's logits never see the padding after it (and one
  compiled shape, not an eager run per length, keeps this fast)."""
  width = max(len(ctx) + len(cont) for ctx, cont in pairs)
  ids = np.zeros((len(pairs), width), np.int32)
  for r, (ctx, cont) in enumerate(pairs):
    ids[r, :len(ctx) + len(cont)] = list(ctx) + list(cont)
  positions = np.tile(np.arange(width, dtype=np.int32), (len(pairs), 1))
  forward = jax.jit(lambda p, x, pos: nnx.merge(model.graphdef, p)(x, pos, jnp.ones_like(x))[0])
  logp = jax.nn.log_softmax(np.asarray(forward(model.params, ids, positions), np.float64),
                            axis=-1)
  return [float(sum(logp[r, len(ctx) - 1 + j, t] for j, t in enumerate(cont)))
          for r, (ctx, cont) in enumerate(pairs)]


def _full_forward_logprob(model, ctx, cont) -> float:
  return _full_forward_logprobs(model, [(ctx, cont)])[0]


def test_cached_context_scoring_equals_the_full_forward():
  """Shared contexts run once, continuations against copies of their cache: each
  request's loglikelihood equals that of its whole sequence run at once (window
  layers shorter than the context, GQA, batches of mixed lengths and choice counts)."""
  model = _loaded()
  rng = np.random.default_rng(0)
  contexts = [list(rng.integers(3, 500, size=n)) for n in (5, 40, 13, 70, 2)]
  encoded = [(contexts[i % 5], list(rng.integers(3, 500, size=1 + (i * 7) % 11)))
             for i in range(23)]
  scored = loglikelihood.loglikelihoods(model, encoded, max_len=128, batch=2, choices=3,
                                        bucket=16)
  for (_, cont), s, full in zip(encoded, scored, _full_forward_logprobs(model, encoded)):
    assert s.tokens == len(cont)
    assert abs(s.logprob - full) < 2e-4


def test_a_context_longer_than_the_window_is_cut_from_the_left():
  model = _loaded()
  ctx, cont = list(range(3, 103)), [7, 8, 9]
  (scored,) = loglikelihood.loglikelihoods(model, [(ctx, cont)], max_len=32, bucket=16)
  assert abs(scored.logprob - _full_forward_logprob(model, ctx[-29:], cont)) < 2e-4
  with pytest.raises(ValueError, match="Request 0: its continuation has 0 tokens"):
    loglikelihood.loglikelihoods(model, [(ctx, [])])


def test_a_long_continuation_in_the_batch_does_not_cut_another_context():
  """Each context keeps what the window leaves beside its own continuations (as
  lm-eval's rolling windows need: a long context with a short continuation
  batched with a short context and a long one)."""
  model = _loaded()
  encoded = [(list(range(3, 50)), [7, 8]), ([2], list(range(60, 108)))]
  scored = loglikelihood.loglikelihoods(model, encoded, max_len=49, batch=2, bucket=16)
  for s, full in zip(scored, _full_forward_logprobs(model, encoded)):
    assert abs(s.logprob - full) < 2e-4


def _task(labels, uncond=True, macro=False) -> olmes_tasks.Task:
  docs = []
  for i, label in enumerate(labels):
    choices = tuple(olmes_tasks.Request("Q:", c) for c in (" a", " bbbbbbbb", " c"))
    docs.append(olmes_tasks.Doc(str(i), label, choices,
                                tuple(olmes_tasks.Request("Answer:", c.continuation)
                                      for c in choices) if uncond else None,
                                f"s{i % 2}" if macro else "t"))
  return olmes_tasks.Task("t:rc", "t/rc", "acc_per_char", "test", 0, tuple(docs), macro)


def _scores(values):
  return [loglikelihood.Scored(v, 1, False) for v in values]


def test_a_model_that_knows_the_gold_answer_scores_one_on_every_metric():
  task = _task([0, 2, 1, 2])
  scored = []
  for doc in task.docs:
    gold = [0.0 if k == doc.label else -50.0 for k in range(3)]
    scored += _scores(gold) + _scores([-1.0, -1.0, -1.0])
  chosen = olmes.predictions(task, scored)
  assert sorted(chosen) == sorted(olmes_tasks.METRICS)
  for by_doc in chosen.values():
    assert all(by_doc[d.doc_id] == d.label for d in task.docs)


def test_pmi_subtracts_the_unconditioned_requests_and_length_normalises_by_characters():
  task = _task([1])
  # Raw prefers " a"; per character prefers the long " bbbbbbbb" (9 characters);
  # the unconditioned " c" is so unlikely that PMI picks it.
  chosen = olmes.predictions(task, _scores([-2.0, -8.0, -3.0]) + _scores([-1.0, -8.0, -30.0]))
  assert (chosen["acc_raw"]["0"], chosen["acc_per_char"]["0"], chosen["acc_uncond"]["0"]) == \
      (0, 1, 2)
  assert "acc_uncond" not in olmes.predictions(_task([1], uncond=False), _scores([-2, -9, -3]))


def test_mmlu_style_scores_average_over_subjects():
  task = _task([0] * 6, macro=True)  # Items 0, 2, 4 in s0; 1, 3, 5 in s1.
  summary = olmes._summary(task, {"0": 1, "2": 1, "4": 1, "1": 0, "3": 0, "5": 1})
  assert summary["value"] == pytest.approx((1.0 + 1 / 3) / 2) and summary["ci95"] > 0
  assert summary["average"] == "macro over 2 subjects"
  micro = olmes._summary(_task([0] * 6), {str(i): int(i < 4) for i in range(6)})
  assert micro["value"] == pytest.approx(4 / 6) and micro["average"] == "micro over 6 items"


def test_the_command_lists_tasks_and_names_a_bad_one(tmp_path):
  listing = subprocess.run([sys.executable, "-m", "midtrain_jax.evaluate", "--list_tasks"],
                           capture_output=True, text=True, cwd=helpers.REPO_ROOT, check=True)
  assert "arc_easy:rc" in listing.stdout.split() and "mmlu:mc" in listing.stdout.split()
  bad = subprocess.run([sys.executable, "-m", "midtrain_jax.evaluate",
                        f"--from={tmp_path}/missing.gguf", "--suite=arc_easy:rc"],
                       capture_output=True, text=True, cwd=helpers.REPO_ROOT, check=False)
  assert bad.returncode != 0 and "missing.gguf does not exist" in bad.stderr


def test_a_checkpoint_whose_tokenizer_is_gone_is_named(tmp_path):
  import ml_collections
  model = _loaded()
  model.config = ml_collections.ConfigDict({"data": {"tokenizer": str(tmp_path / "t.json")}})
  model.path = "runs/x"
  with pytest.raises(FileNotFoundError, match=r"runs/x: its tokenizer .*t.json.* is missing"):
    olmes.model_tokenizer(model)
