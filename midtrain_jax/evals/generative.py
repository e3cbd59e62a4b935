"""Generative evaluations: GSM8K exact match and HumanEval/MBPP pass@1.

Completions come from `batch_decode.decode` (KV cache, greedy) on prompts
encoded as the model's tokenizer encodes a text (`Tokenizer.encode_prompt`:
BOS first only where it adds one), in batches of the run's
`eval.decode_batch` prompts (0: planned within `eval.decode_memory_gb`), each
row stopping at the benchmark's stop sequences or EOS; code
is scored by running the benchmark's tests against it in the operating-system
sandbox (`sandbox.py`: the program in its own namespaces, the tests in a judge
process), several programs at once. Items are the seeded stratified sample of
`items.sample_items`, the same for every model. Each scorer returns `{metric,
score, ci95, n_items, subsets, per_item, samples}`: `per_item` is {item id:
1 if correct else 0} (paired comparisons, the contamination split), `ci95` the
half-width of the score's 95% bootstrap interval over items (`stats.py`),
`samples` the first few completions for inspection (`items` = n_items, for
older readers).
"""
import re

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.evals import batch_decode, sandbox, stats
from midtrain_jax.model import sampling

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Stop sequences of the Codex HumanEval harness: a new top-level statement ends
# the function body.
CODE_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```", "\nassert ")
GSM8K_STOPS = ("\n\n", "\nQuestion:")
CODE_BENCHMARKS = ("humaneval", "mbpp")
_SAMPLES_KEPT = 3


def _normalise_number(text: str) -> str:
  text = text.replace(",", "").rstrip(".")
  try:
    value = float(text)
  except ValueError:
    return text
  return str(int(value)) if value.is_integer() else str(value)


def extract_final_number(text: str) -> str:
  """The answer of a GSM8K-style solution: after `####` if present, else the last number.

  Args:
    text: generated (or gold) solution text.

  Returns:
    The number normalised (no thousands separators, integers without ".0"),
    or "" when the text has no number.
  """
  marked = re.search(r"####\s*(" + _NUMBER.pattern + ")", text)
  if marked:
    return _normalise_number(marked.group(1))
  answer_is = re.findall(r"answer is\s*\$?(" + _NUMBER.pattern + ")", text, re.IGNORECASE)
  if answer_is:
    return _normalise_number(answer_is[-1])
  numbers = _NUMBER.findall(text)
  return _normalise_number(numbers[-1]) if numbers else ""


def truncate(text: str, stops) -> str:
  """Cuts a completion at the first stop sequence."""
  cut = min([i for i in (text.find(s) for s in stops) if i >= 0], default=len(text))
  return text[:cut]


def complete(model, tok, prompts: list[str], max_new_tokens: int, stops,
             encode=None) -> list[str]:
  """Greedy completions of `prompts`, each cut at its first stop sequence.

  `encode` (text -> token ids; default `tok.encode_prompt`) is how a prompt
  becomes tokens, e.g. rendered with a chat template (evals/sft_benchmark.py).
  """
  encode = encode or tok.encode_prompt
  sample = sampling.SampleConfig(max_new_tokens=max_new_tokens, eos_id=tok.eos_id)

  def detok(ids):
    return tok.decode([t for t in ids if t != tok.eos_id])

  settings = model.config.eval
  out = batch_decode.decode(
      model.params, model.graphdef, model.model_cfg, [encode(p) for p in prompts],
      sample, detok=detok, stops=stops, batch=settings.decode_batch,
      memory_bytes=batch_decode.memory_budget_bytes(settings.decode_memory_gb))
  return [truncate(detok(row), stops) for row in out.tokens]


def scored(metric: str, chosen, correct: list[bool], completions: list[str], seed: int,
            requested: int) -> dict:
  per_item = {it.id: int(ok) for it, ok in zip(chosen, correct)}
  total = stats.summary(per_item, {it.id: benchmarks.subset_of(it) for it in chosen})
  return {"metric": metric, "score": total["value"], "ci95": total["ci95"],
          "n_items": total["n_items"], "subsets": total["subsets"], "items": total["n_items"],
          "sample": {"requested": requested, "seed": seed}, "per_item": per_item,
          "samples": completions[:_SAMPLES_KEPT]}


def gsm8k_exact_match(model, tok, *, items: int = 8, seed: int = 0,
                      max_new_tokens: int = 64) -> dict:
  """Zero-shot GSM8K: greedy completion, exact match on the final number.

  Args:
    model: the loaded checkpoint.
    tok: its tokenizer.
    items: sample size (`items.sample_items`; 0 = all 1,319).
    seed: which sample.
    max_new_tokens: completion length.
  """
  chosen = benchmarks.sample_items("gsm8k", items, seed)
  prompts = [f"Question: {it.question}\nAnswer:" for it in chosen]
  completions = complete(model, tok, prompts, max_new_tokens, GSM8K_STOPS)
  correct = [extract_final_number(c) == _normalise_number(it.final_answer)
             for c, it in zip(completions, chosen)]
  return scored("exact_match", chosen, correct, completions, seed, items)


def code_prompt(item: benchmarks.BenchmarkItem) -> str:
  """What the model continues: the HumanEval signature, or MBPP's task + a test."""
  if item.benchmark == "humaneval":
    return item.question
  first_test = item.test.strip().splitlines()[-1] if item.test.strip() else ""
  return f'"""\n{item.question}\n{first_test}\n"""\n'


def code_job(item: benchmarks.BenchmarkItem, completion: str) -> sandbox.Job:
  """The program and the tests that pass iff `completion` solves `item`.

  HumanEval: the program is the prompt plus the completion; the judge also runs
  the prompt (its helper functions are the benchmark's, not the program's), then
  the benchmark's `check(entry_point)`. MBPP: the program is the completion, the
  tests its asserts (after the item's setup code).
  """
  if item.benchmark == "humaneval":
    return sandbox.Job(f"{item.question}{completion}\n",
                       f"{item.test}\n\ncheck({item.entry_point})\n",
                       prelude=item.question, entry_point=item.entry_point)
  return sandbox.Job(f"{completion}\n", f"{item.test}\n", entry_point=item.entry_point)


def score_code(item: benchmarks.BenchmarkItem, completion: str, *, timeout_s: float = 5.0,
               memory_mb: int = 512, unsafe_exec: bool = False) -> sandbox.ExecResult:
  """Runs the item's tests against a completion in the sandbox (`sandbox.py`)."""
  return sandbox.run_programs([code_job(item, completion)], timeout_s=timeout_s,
                              memory_mb=memory_mb, unsafe_exec=unsafe_exec)[0]


def code_pass_at_1(model, tok, benchmark: str, *, items: int = 8, seed: int = 0,
                   max_new_tokens: int = 128, unsafe_exec: bool = False) -> dict:
  """Greedy pass@1 on HumanEval or MBPP (sample as for `gsm8k_exact_match`).

  Raises:
    sandbox.SandboxUnavailable: before generating anything, when the operating-system
      sandbox cannot run here and `unsafe_exec` is False.
  """
  if benchmark not in CODE_BENCHMARKS:
    raise ValueError(f"pass@1 needs a code benchmark {CODE_BENCHMARKS}, not {benchmark!r}.")
  sandbox.require_isolation(unsafe_exec)
  chosen = benchmarks.sample_items(benchmark, items, seed)
  completions = complete(model, tok, [code_prompt(it) for it in chosen], max_new_tokens,
                          CODE_STOPS)
  results = sandbox.run_programs([code_job(it, c) for it, c in zip(chosen, completions)],
                                 unsafe_exec=unsafe_exec)
  statuses = [r.status for r in results]
  out = scored("pass@1", chosen, [r.passed for r in results], completions, seed, items)
  out["statuses"] = {s: statuses.count(s) for s in set(statuses)}
  return out


GENERATIVE = {
    "gsm8k": gsm8k_exact_match,
    "humaneval": lambda model, tok, items, seed=0, unsafe_exec=False: code_pass_at_1(
        model, tok, "humaneval", items=items, seed=seed, unsafe_exec=unsafe_exec),
    "mbpp": lambda model, tok, items, seed=0, unsafe_exec=False: code_pass_at_1(
        model, tok, "mbpp", items=items, seed=seed, unsafe_exec=unsafe_exec),
}
