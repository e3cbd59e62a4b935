"""Code benchmarks in the sandbox: sampled canonical solutions pass, wrong ones fail;
GSM8K completions through batched decoding."""
import random

from flax import nnx

from benchmarks import canonical_solutions
from midtrain_jax import config as config_lib
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import generative, sandbox, scoring
from midtrain_jax.model import sampling
from midtrain_jax.model.transformer import Transformer
from tests import helpers

# The jail when it runs here; else (a machine without namespaces) the same judge unisolated.
UNSAFE = sandbox.isolation_problem() is not None


# Programs per benchmark in the suite's sample; the whole set (164 + 500, minutes of
# sandboxed runs) is `python -m benchmarks.canonical_solutions`.
_SAMPLED = 40


def test_sampled_canonical_solutions_pass_and_wrong_ones_fail():
  """A seeded sample of 40 HumanEval and 40 MBPP canonical solutions passes in the
  sandbox, and a wrong answer to every 16th of them fails. The full 664-program
  check is `python -m benchmarks.canonical_solutions` (same judge, same timeout)."""
  humaneval, mbpp = benchmarks.load_items("humaneval"), benchmarks.load_items("mbpp")
  assert (len(humaneval), len(mbpp)) == (164, 500)
  rng = random.Random(0)  # Fixed: the same programs every run.
  chosen = rng.sample(humaneval, _SAMPLED) + rng.sample(mbpp, _SAMPLED)
  chosen += [it for it in mbpp if it.id == "367"]  # Classes built by its own tests.
  # Generous: a few canonical MBPP solutions take seconds on a loaded CPU.
  failed, passed = canonical_solutions.run(chosen, timeout_s=60.0, unsafe_exec=UNSAFE)
  assert not failed, failed
  assert not passed, passed
  assert len(chosen[::16]) == 6  # Wrong answers to both benchmarks were judged.


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
