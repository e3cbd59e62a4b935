"""Decontamination recall on held-out, realistically edited benchmark items.

    python -m benchmarks.decontam_robustness [--split=test] [--per_kind=100]
        [--clean_per_kind=400] [--benchmarks=gsm8k,...] [--index_benchmarks=...]
        [--show_misses=0]

Plants real items of the TEST (or TUNING) split into ordinary text with the
edits of `benchmarks/decontam_harness/`, scans them with an index of
every benchmark item except a held-out clean pool, and prints recall per edit
kind and benchmark, then the false-positive rate on clean near-topic text of
the same split: held-out items rendered like leaks, synthetic math problems,
program traces, web pages, Python source, instructions and docstring Q&A from
the demo corpus. The last line is `recall=R false_positive_rate=F`: recall
over all planted documents, the share of clean documents with any hit.
A few seconds on two cores with the defaults.
"""
import argparse
import json
import time

from benchmarks.decontam_harness import cases as harness_cases
from benchmarks.decontam_harness import edits, report, splits
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data.mixtures.corpora import demo
from midtrain_jax.decontam import decontaminator, params

_CHUNK = 4000  # Characters per code document, about a web page.


def _records(task: str):
  for path in demo.materialise(task):
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          yield json.loads(line)


def demo_texts() -> dict[str, list[str]]:
  """Clean documents of the demo corpus, by kind."""
  web = [r["text"] for task in ("web_c4", "web_wikipedia", "web_openwebtext")
         for r in _records(task) if len(r["text"]) >= 200]
  code = [r["text"][i:i + _CHUNK] for r in _records("code_python_stdlib")
          for i in range(0, len(r["text"]), _CHUNK)]
  return {
      "clean_web": web,
      "clean_code": code,
      "clean_instructions": [demo.alpaca_text(r)
                             for r in _records("instruction_alpaca")],
      "clean_docstring_qa": [demo.qa_text(r) for r in _records("qa_python_docs")],
      "clean_math_synthetic": [r["text"] for r in _records("math_synthetic")],
      "clean_program_traces": [r["text"]
                               for r in _records("thinking_program_traces")],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--benchmarks", default=",".join(benchmarks.EVAL_SUITE),
                      help="benchmarks whose items are planted")
  parser.add_argument("--index_benchmarks",
                      default=",".join(benchmarks.DEFAULT_SUITE),
                      help="benchmarks in the index (production: all)")
  parser.add_argument("--split", default="test", choices=("tune", "test"))
  parser.add_argument("--per_kind", type=int, default=100,
                      help="items per benchmark and edit kind")
  parser.add_argument("--clean_per_kind", type=int, default=400,
                      help="clean documents per benchmark pool and text kind")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--show_misses", type=int, default=0,
                      help="print this many missed items and false hits")
  args = parser.parse_args()
  names = args.benchmarks.split(",")
  index_names = args.index_benchmarks.split(",")

  start = time.perf_counter()
  index = splits.suite_index(index_names, names, params.DecontamParams(), seed=args.seed)
  deco = decontaminator.Decontaminator(index)
  items = {n: benchmarks.load_items(n) for n in names}
  texts = demo_texts()
  ctx = edits.Context(web=texts["clean_web"], code=texts["clean_code"])
  cases = harness_cases.make_cases(items, ctx, args.split, args.per_kind, seed=args.seed)
  clean = harness_cases.clean_cases(items, ctx, texts, args.split, args.clean_per_kind,
                                    seed=args.seed)
  outcome = report.evaluate(deco, cases + clean)
  print(f"{args.split} split: {len(cases)} planted documents, {len(clean)} "
        f"clean; index of {index.num_items:,} items "
        f"({time.perf_counter() - start:.1f} s)")
  print(report.format_report(outcome))
  for case in outcome.misses[:args.show_misses]:
    print(f"--- missed {case.kind} {case.benchmark}/{case.item_id}")
  for case, hits in outcome.false_hits[:args.show_misses]:
    print(f"--- false hit in {case.kind}/{case.benchmark}: {hits}")
  print(f"recall={outcome.recall():.4f} "
        f"false_positive_rate={outcome.false_positive_rate():.4f}")


if __name__ == "__main__":
  main()
