"""Code benchmarks in the sandbox: every canonical solution passes, wrong ones fail;
GSM8K completions through batched decoding."""
import os
import time

import pytest
from flax import nnx

from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import generative, sandbox, scoring
from midtrain_jax.model import sampling
from midtrain_jax.model.transformer import Transformer
from tests import helpers

# The jail when it runs here; else (a machine without namespaces) the same judge unisolated.
UNSAFE = sandbox.isolation_problem() is not None


def _wrong(item: benchmarks.BenchmarkItem) -> str:
  if item.benchmark == "humaneval":
    return "    return None\n"
  return f"def {item.entry_point}(*args, **kwargs):\n  return None\n"


@pytest.mark.slow
def test_every_canonical_solution_passes_and_a_wrong_one_fails():
  chosen = benchmarks.load_items("humaneval") + benchmarks.load_items("mbpp")
  assert len(chosen) == 164 + 500
  started = time.monotonic()
  # Generous: a few canonical MBPP solutions take seconds on a loaded CPU.
  results = sandbox.run_programs([generative.code_job(it, it.answer) for it in chosen],
                                 timeout_s=60.0, unsafe_exec=UNSAFE)
  seconds = time.monotonic() - started
  failed = {it.id: r for it, r in zip(chosen, results) if not r.passed}
  assert not failed, failed
  print(f"664 canonical solutions passed in {seconds:.1f}s on {os.cpu_count()} cores")
  wrong = chosen[::16]
  results = sandbox.run_programs([generative.code_job(it, _wrong(it)) for it in wrong],
                                 unsafe_exec=UNSAFE)
  passed = [it.id for it, r in zip(wrong, results) if r.passed]
  assert not passed, passed


def test_humaneval_helpers_come_from_the_prompt_not_the_program():
  item = next(it for it in benchmarks.load_items("humaneval") if it.id == "HumanEval/32")
  # find_zero's tests check poly(xs, x) == 0 with the prompt's poly: redefining poly in
  # the program (so that every x is a zero) must not help.
  cheat = "    return 0.0\n\npoly = lambda xs, x: 0.0\n"
  assert not generative.score_code(item, cheat, unsafe_exec=UNSAFE).passed
  assert generative.score_code(item, item.answer, unsafe_exec=UNSAFE).passed


def test_mbpp_programs_see_their_own_classes_through_references():
  item = next(it for it in benchmarks.load_items("mbpp") if it.id == "367")
  assert "Node(" in item.test  # The tests build the program's own tree objects.
  assert generative.score_code(item, item.answer, unsafe_exec=UNSAFE).passed
  broken = item.answer.replace("return True\r\n\treturn False", "return False\r\n\treturn False")
  assert broken != item.answer
  assert not generative.score_code(item, broken, unsafe_exec=UNSAFE).passed


def test_gsm8k_completions_equal_one_at_a_time_decoding_cut_at_the_stops():
  """GSM8K through batched decoding (batches of 2 of 5 prompts, each row stopping
  at the stop sequences or EOS) gives each prompt's completion decoded alone for
  the full length, then cut at its first stop sequence."""
  tok = tokenizer_lib.load_tokenizer("demo_spm")
  cfg = helpers.tiny_model(vocab_size=tokenizer_lib.DEMO_VOCAB_SIZE)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(1)))
  config = config_lib.base_config("tiny")
  config.eval.decode_batch = 2
  model = scoring.LoadedModel(nnx.to_pure_dict(state), graphdef, cfg, config, 0, "random")
  got = generative.gsm8k_exact_match(model, tok, items=5, max_new_tokens=24)
  sample = sampling.SampleConfig(max_new_tokens=24, eos_id=tok.eos_id)
  expected = []
  for it in benchmarks.sample_items("gsm8k", 5, 0)[:generative._SAMPLES_KEPT]:
    ids = tok.encode_prompt(f"Question: {it.question}\nAnswer:")
    row = sampling.generate(model.params, graphdef, cfg, [ids], sample)[0]
    text = tok.decode([t for t in row if t != tok.eos_id])
    expected.append(generative.truncate(text, generative.GSM8K_STOPS))
  assert any(expected), "nothing generated: the comparison would be empty"
  assert got["samples"] == expected and got["n_items"] == 5
