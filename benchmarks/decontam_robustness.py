"""Decontamination recall on held-out, realistically edited benchmark items.

    python -m benchmarks.decontam_robustness [--split=tune|test|both]
        [--per_kind=100] [--clean_per_kind=400] [--educational_per_kind=150]
        [--benchmarks=gsm8k,...] [--index_benchmarks=...]
        [--params=answer_min_info=0,...] [--show_misses=0]

Plants real benchmark items into ordinary text with the edits of
`benchmarks/decontam_harness/`, scans them with an index of every benchmark
item except a held-out clean pool, and prints recall per edit kind and
benchmark, then the false-positive rate on clean near-topic text of the same
split: held-out items rendered like leaks, synthetic math problems, program
traces, web pages, Python source, instructions and docstring Q&A from the
demo corpus, and educational text (textbook functions, utility modules, code
tutorials, math lessons). The last line is `<split>: recall=R false_positive_rate=F`:
recall over all planted documents, the share of clean documents with any hit.

Every rule and threshold of `DecontamParams` is chosen on the TUNE split
(the default): try a candidate with `--params`, read its misses and false
hits with `--show_misses`. The TEST split holds other items, other clean
documents and other textbook exercises; `--split=both` prints its figures
beside the tune split's, and they are only reported, never used to choose
or inspected case by case (`--show_misses` refuses it). A few seconds on two
cores with the defaults once the index is cached.
"""
import argparse
import dataclasses
import json
import time

import numpy as np

from benchmarks.decontam_harness import cases as harness_cases
from benchmarks.decontam_harness import edits, report, splits, textbook
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


def _overrides(text: str) -> dict:
  """`a=1,b=0.5` -> {"a": 1, "b": 0.5}, typed like the `DecontamParams` fields."""
  types = {f.name: type(f.default) for f in dataclasses.fields(params.DecontamParams)}
  out = {}
  for pair in filter(None, text.split(",")):
    name, _, value = pair.partition("=")
    if name not in types:
      raise SystemExit(f"--params: {name!r} is no DecontamParams field; fields: "
                       f"{', '.join(types)}")
    out[name] = types[name](value)
  return out


def evaluate_split(deco, items, texts, ctx, split: str, args) -> report.Report:
  """Planted and clean documents of one split, scanned."""
  cases = harness_cases.make_cases(items, ctx, split, args.per_kind, seed=args.seed)
  clean = harness_cases.clean_cases(items, ctx, texts, split, args.clean_per_kind,
                                    seed=args.seed)
  clean += harness_cases.educational_cases(split, args.educational_per_kind, args.seed)
  return report.evaluate(deco, cases + clean)


def _yardstick(config, chosen, seed: int) -> str:
  """How textbook function bodies score against `answer_min_info`, per split."""
  background = splits.suite_background()
  parts = []
  for split in chosen:
    info = textbook.body_information(split, 1000, background, seed)
    share = np.mean(info >= config.answer_min_info)
    parts.append(f"{split}: median {np.median(info):.2f}, {share:.0%} at or above")
  return (f"textbook function bodies vs answer_min_info={config.answer_min_info:g} "
          f"(answers need more information than textbook code): {'; '.join(parts)}")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--benchmarks", default=",".join(benchmarks.EVAL_SUITE),
                      help="benchmarks whose items are planted")
  parser.add_argument("--index_benchmarks",
                      default=",".join(benchmarks.DEFAULT_SUITE),
                      help="benchmarks in the index (production: all)")
  parser.add_argument("--split", default="tune", choices=("tune", "test", "both"),
                      help="tune: where rules are chosen; test: reported only")
  parser.add_argument("--per_kind", type=int, default=100,
                      help="items per benchmark and edit kind")
  parser.add_argument("--clean_per_kind", type=int, default=400,
                      help="clean documents per benchmark pool and text kind")
  parser.add_argument("--educational_per_kind", type=int, default=150,
                      help="textbook code, utility, tutorial and math-lesson documents "
                           "per kind")
  parser.add_argument("--params", default="",
                      help="DecontamParams overrides, e.g. answer_min_info=0")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--show_misses", type=int, default=0,
                      help="print this many missed items and false hits (tune split only)")
  return parser


def main():
  args = _parser().parse_args()
  if args.show_misses and args.split == "test":
    raise SystemExit("--show_misses reads tune-split cases only: the test split is "
                     "reported, never inspected case by case (use --split=tune or both)")
  names = args.benchmarks.split(",")
  index_names = args.index_benchmarks.split(",")
  config = params.from_overrides(**_overrides(args.params))

  start = time.perf_counter()
  index = splits.suite_index(index_names, names, config, seed=args.seed)
  deco = decontaminator.Decontaminator(index)
  items = {n: benchmarks.load_items(n) for n in names}
  texts = demo_texts()
  ctx = edits.Context(web=texts["clean_web"], code=texts["clean_code"])
  chosen = ("tune", "test") if args.split == "both" else (args.split,)
  outcome = {split: evaluate_split(deco, items, texts, ctx, split, args) for split in chosen}
  print(f"index of {index.num_items:,} items; {time.perf_counter() - start:.1f} s")
  for split, result in outcome.items():
    print(f"--- {split} split: {sum(v[1] for v in result.found.values())} planted "
          f"documents, {sum(v[1] for v in result.flagged.values())} clean")
    print(report.format_report(result))
  if len(outcome) > 1:
    print(report.format_side_by_side(outcome))
  if config.answer_min_info:
    print(_yardstick(config, chosen, args.seed))
  tune = outcome.get("tune")
  for case in (tune.misses if tune else [])[:args.show_misses]:
    print(f"--- missed {case.kind} {case.benchmark}/{case.item_id}")
  for case, hits in (tune.false_hits if tune else [])[:args.show_misses]:
    print(f"--- false hit in {case.kind}/{case.benchmark}: {hits}")
  print(" ".join(f"{split}: recall={r.recall():.4f} false_positive_rate="
                 f"{r.false_positive_rate():.4f}" for split, r in outcome.items()))


if __name__ == "__main__":
  main()
