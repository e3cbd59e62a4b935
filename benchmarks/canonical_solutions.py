"""Every canonical HumanEval and MBPP solution through the code sandbox.

  python -m benchmarks.canonical_solutions                 # all 164 + 500 programs
  python -m benchmarks.canonical_solutions --timeout_s=30  # a quieter machine

Runs each benchmark's reference solution against its own tests, as a generated
program is judged (`evals/generative.code_job` in `evals/sandbox.run_programs`),
and a wrong answer for every 16th item. Every canonical solution must pass and
every wrong one fail; the exit status says whether they did. The test suite runs
a seeded sample of these programs (tests/evals/test_generative.py); this is the
whole check, with its wall time.
"""
import argparse
import os
import sys
import time

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.evals import generative, sandbox


def wrong_answer(item: benchmarks.BenchmarkItem) -> str:
  """An answer that runs but returns None: every benchmark's tests must reject it."""
  if item.benchmark == "humaneval":
    return "    return None\n"  # The body under the prompt's signature.
  return f"def {item.entry_point}(*args, **kwargs):\n  return None\n"


def run(chosen, timeout_s: float, unsafe_exec: bool) -> tuple[dict, list[str]]:
  """Canonical solutions that fail (id: result), and wrong answers that pass (ids)."""
  results = sandbox.run_programs([generative.code_job(it, it.answer) for it in chosen],
                                 timeout_s=timeout_s, unsafe_exec=unsafe_exec)
  failed = {it.id: r for it, r in zip(chosen, results) if not r.passed}
  wrong = chosen[::16]
  results = sandbox.run_programs([generative.code_job(it, wrong_answer(it)) for it in wrong],
                                 unsafe_exec=unsafe_exec)
  return failed, [it.id for it, r in zip(wrong, results) if r.passed]


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  # Generous: a few canonical MBPP solutions take seconds on a loaded CPU.
  p.add_argument("--timeout_s", type=float, default=60.0)
  args = p.parse_args()
  unsafe = sandbox.isolation_problem() is not None
  chosen = benchmarks.load_items("humaneval") + benchmarks.load_items("mbpp")
  started = time.monotonic()
  failed, passed = run(chosen, args.timeout_s, unsafe)
  print(f"{len(chosen)} canonical solutions in {time.monotonic() - started:.1f}s on "
        f"{os.cpu_count()} cores ({'unisolated' if unsafe else 'in the jail'})")
  print(f"  canonical failing: {failed or 'none'}")
  print(f"  wrong passing: {passed or 'none'}")
  sys.exit(1 if failed or passed else 0)


if __name__ == "__main__":
  main()
