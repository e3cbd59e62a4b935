"""An SFT probe's benchmark: chat replies turned into programs and answers, then scored."""
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.evals import generative, sandbox, sft_benchmark

UNSAFE = sandbox.isolation_problem() is not None


def _fenced(code: str) -> str:
  return f" Here is the function:\n```python\n{code}```\nIt returns the result."


def test_whole_function_replies_pass_humaneval_and_wrong_ones_fail():
  chosen = benchmarks.sample_items("humaneval", 6)
  # A reply in the SFT data's form: the whole function, fenced or bare.
  replies = [_fenced(it.question + it.answer) if i % 2 else it.question + it.answer
             for i, it in enumerate(chosen)]
  jobs = [sft_benchmark.code_job(it, sft_benchmark.code_program(r))
          for it, r in zip(chosen, replies)]
  assert all(r.passed for r in sandbox.run_programs(jobs, timeout_s=60.0, unsafe_exec=UNSAFE))
  # A function that returns nothing fails its tests.
  stubs = [sft_benchmark.code_job(
      it, sft_benchmark.code_program(it.question + "    return None\n")) for it in chosen]
  assert not any(r.passed for r in sandbox.run_programs(stubs, unsafe_exec=UNSAFE))


def test_user_messages_and_code_extraction():
  (item,) = benchmarks.sample_items("gsm8k", 1)
  assert sft_benchmark.user_message(item) == item.question
  (code,) = benchmarks.sample_items("humaneval", 1)
  assert generative.code_prompt(code).strip() in sft_benchmark.user_message(code)
  # SentencePiece starts a response with a space: the program is left-aligned.
  assert sft_benchmark.code_program(" def f(x):\n    return x\n") == "def f(x):\n    return x\n"
  assert sft_benchmark.code_program(_fenced("def g():\n  return 1\n")) == (
      "def g():\n  return 1\n")
