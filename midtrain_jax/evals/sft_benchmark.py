"""The benchmark of an SFT probe's target, prompted as the probe was trained: in chat.

The question goes in as the user message and the model's reply is rendered
with the same chat template as the SFT data (data/chat.py), then scored as
evals/generative.py scores its plain-prompt form: GSM8K by exact match of the
reply's final number, HumanEval and MBPP by pass@1 of the reply's code in
the sandbox. The reply is cut at the template's next user turn (besides EOS).
"""
import ast
import textwrap

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import chat
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import generative, sandbox

# The SFT code data asks for a whole function by its signature and docstring.
_CODE_REQUEST = "Write a Python function as specified below.\n\n{prompt}"
_STOPS = ("<|user|>", "<|im_start|>user")


def user_message(item: benchmarks.BenchmarkItem) -> str:
  """What the user asks for an item: GSM8K's question, or the code benchmark's task."""
  if item.benchmark == "gsm8k":
    return item.question
  return _CODE_REQUEST.format(prompt=generative.code_prompt(item).strip())


def code_program(completion: str) -> str:
  """The code of a reply: a fenced block's contents when it has one, its first line
  left-aligned (a SentencePiece response starts with a space), else all dedented."""
  if "```" in completion:
    block = completion.split("```", 2)[1]
    completion = block.split("\n", 1)[1] if block.startswith("python") else block
  text = completion.strip("\n")
  first, newline, rest = text.partition("\n")
  program = first.lstrip() + newline + rest
  try:
    ast.parse(program)
  except SyntaxError:
    program = textwrap.dedent(text)
  return program.strip() + "\n"


def check_runnable(config) -> None:
  """Fails before any training when the benchmark's code cannot run isolated here
  (sandbox.SandboxUnavailable, naming eval.unsafe_exec)."""
  if config.sft.benchmark in generative.CODE_BENCHMARKS:
    sandbox.require_isolation(config.eval.unsafe_exec)


def score(model, config) -> dict:
  """Scores `config.sft.benchmark` on `config.sft.benchmark_items` of its test split.

  Args:
    model: the fine-tuned checkpoint (evals/scoring.py's LoadedModel).
    config: the probe's config (its tokenizer and `sft` section).

  Returns:
    generative.scored's dict: {metric, score, ci95, n_items, per_item, samples}.
  """
  name = config.sft.benchmark
  tok = tokenizer_lib.load_tokenizer(config.data.tokenizer)
  template = chat.template_for(tok)
  check_runnable(config)
  chosen = benchmarks.sample_items(name, config.sft.benchmark_items)
  encode = lambda text: chat.prompt_ids([{"role": "user", "content": text}], tok, template)
  replies = generative.complete(model, tok, [user_message(it) for it in chosen],
                                config.sft.max_new_tokens, _STOPS, encode=encode)
  if name == "gsm8k":
    correct = [generative.extract_final_number(r) == generative.extract_final_number(
        it.final_answer) for r, it in zip(replies, chosen)]
    return generative.scored("exact_match", chosen, correct, replies, 0,
                             config.sft.benchmark_items)
  jobs = [code_job(it, code_program(r)) for it, r in zip(chosen, replies)]
  results = sandbox.run_programs(jobs, unsafe_exec=config.eval.unsafe_exec)
  return generative.scored("pass@1", chosen, [r.passed for r in results], replies, 0,
                           config.sft.benchmark_items)


def code_job(item: benchmarks.BenchmarkItem, program: str) -> sandbox.Job:
  """A whole function as the program: HumanEval's prompt first (its imports and
  other functions), the reply's definition replacing the prompt's stub."""
  if item.benchmark == "humaneval":
    return sandbox.Job(f"{item.question}\n{program}",
                       f"{item.test}\n\ncheck({item.entry_point})\n",
                       prelude=item.question, entry_point=item.entry_point)
  return generative.code_job(item, program)
