"""Chat data for supervised fine-tuning probes, from what the demo corpus has offline.

Each task is materialised once as JSONL of chat records
(data/mixtures/chat_records.py) under the demo corpus folder:

| task                  | records                                        | benchmark  |
|-----------------------|------------------------------------------------|------------|
| sft_math_synthetic    | prompt/response: TinyMATH-style word problems, | gsm8k      |
|                       | verified answers, the response ending          | (exact     |
|                       | "The answer is N." (GSM8K's final-number form) | match)     |
| sft_code_stdlib       | messages: a function's signature and the first | humaneval  |
|                       | paragraph of its docstring -> the function's   | (pass@1)   |
|                       | source (top-level CPython stdlib functions)    |            |
| sft_instruction_alpaca| messages: the Alpaca demo instructions         | none       |

The math problems come from their own seed, so they are not the demo
anneal's `math_synthetic` documents. No GSM8K or MBPP train split ships in a
package here; the benchmarks' test splits are evaluated (evals/generative.py).
"""
import ast
import json
import random
from collections.abc import Iterator

from midtrain_jax.data.mixtures.corpora import demo, synthetic

_MATH_RECORDS = 3000
_MATH_SEED = 7
_CODE_MAX_LINES = 40
_CODE_RECORDS = 1500
_SINGLE_ANSWER = ("_linear_equation", "_word_problem", "_percent")


def _math_records() -> Iterator[dict]:
  """Word problems, equations and percentages (single-number answers), verified."""
  rng = random.Random(_MATH_SEED)
  generators = [g for g in synthetic.MATH_GENERATORS if g.__name__ in _SINGLE_ANSWER]
  emitted = 0
  while emitted < _MATH_RECORDS:
    problem, solution, answer = rng.choice(generators)(rng)
    if not synthetic.verify_math(problem, answer):
      continue
    emitted += 1
    yield {"prompt": problem, "response": f"{solution}\nThe answer is {answer}."}


def _function_request(node: ast.FunctionDef, module: str) -> str | None:
  doc = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
  if len(doc) < 30:
    return None
  signature = f"{node.name}({ast.unparse(node.args)})"
  return (f"Write a Python function `{signature}` (as in the standard library module "
          f"`{module}`): {doc}")


def _code_records() -> Iterator[dict]:
  """Top-level documented stdlib functions of at most _CODE_MAX_LINES lines."""
  emitted = 0
  for module, source, tree in demo.stdlib_modules():
    for node in tree.body:
      if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
        continue
      if node.end_lineno - node.lineno + 1 > _CODE_MAX_LINES:
        continue
      request = _function_request(node, module)
      if request is None:
        continue
      yield {"messages": [{"role": "user", "content": request},
                          {"role": "assistant",
                           "content": ast.get_source_segment(source, node)}]}
      emitted += 1
      if emitted >= _CODE_RECORDS:
        return


def _alpaca_records() -> Iterator[dict]:
  for record in json.loads(demo.sdist_member(demo.LLAMAFACTORY, "data/alpaca_en_demo.json")):
    prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
    yield {"messages": [{"role": "user", "content": prompt},
                        {"role": "assistant", "content": record["output"]}]}


_BUILDERS = {"sft_math_synthetic": _math_records, "sft_code_stdlib": _code_records,
             "sft_instruction_alpaca": _alpaca_records}
SFT_TASKS = tuple(_BUILDERS)


def materialise(task: str) -> list[str]:
  """Builds an SFT task's JSONL file once (cached) and returns its path in a list."""
  if task not in _BUILDERS:
    raise KeyError(f"{task!r} is not an SFT task; SFT tasks: {sorted(_BUILDERS)}")
  path = demo.corpus_dir() / task / f"{task}.jsonl"
  if not path.exists():
    demo.write_jsonl(path, _BUILDERS[task]())
  return [str(path)]
