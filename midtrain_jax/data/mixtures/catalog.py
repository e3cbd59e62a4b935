"""What every task and mixture is, in plain Python (no TensorFlow).

The spec types are in specs.py; a user's own tasks and mixture come from a
YAML/JSON file named where a mixture name goes (mixture_file.py).
`seqio_tasks.py` turns these specs into seqio Tasks and Mixtures; the training
pipeline reads them here so the hot path never imports seqio. Mixture rates
are token fractions (normalised when used).
"""
from collections.abc import Callable

from midtrain_jax.data.mixtures import chat_records, mixture_file
from midtrain_jax.data.mixtures.corpora import demo as demo_corpus
from midtrain_jax.data.mixtures.corpora import sft as sft_corpus
from midtrain_jax.data.mixtures.specs import CAPABILITIES as CAPABILITIES  # Re-exported.
from midtrain_jax.data.mixtures.specs import MixtureSpec, TaskSpec
from midtrain_jax.documents import readers as sources


def _demo_files(task: str) -> Callable[..., list[str]]:
  def files(data_cfg=None) -> list[str]:
    del data_cfg  # The demo corpus lives in the cache, whatever the config.
    return demo_corpus.materialise(task)
  return files


def _olmo3_files(folder: str, task: str) -> Callable[..., list[str]]:
  def files(data_cfg) -> list[str]:
    if task in data_cfg.source_paths:
      return [data_cfg.source_paths[task]]
    if not data_cfg.source_root:
      raise ValueError(
          f"Task {task} reads the OLMo 3 Dolmino files: set "
          f"--config.data.source_root=DIR_OR_GS_URL (one folder per task, "
          f"'{folder}/' here) or --config.data.source_paths.{task}=PATTERN.")
    return [f"{data_cfg.source_root.rstrip('/')}/{folder}/*.jsonl*"]
  return files


_TEXT = sources.field_text("text")
_DEMO = [
    TaskSpec("web_c4", "web", _demo_files("web_c4"), _TEXT, 4,
             "C4 sample shipped in the llamafactory 0.9.5 sdist", "ODC-BY"),
    TaskSpec("web_wikipedia", "web", _demo_files("web_wikipedia"), _TEXT, 4,
             "Wikipedia articles (llamafactory 0.9.5) and snippets (evals "
             "3.0.1.post1)", "CC BY-SA 3.0"),
    TaskSpec("web_openwebtext", "web", _demo_files("web_openwebtext"), _TEXT, 4,
             "OpenWebText snippets shipped in the evals 3.0.1.post1 wheel", "CC0"),
    TaskSpec("code_python_stdlib", "code", _demo_files("code_python_stdlib"), _TEXT, 4,
             "CPython standard library source of the running interpreter",
             "PSF-2.0", fim=True),
    TaskSpec("qa_python_docs", "qa", _demo_files("qa_python_docs"), demo_corpus.qa_text, 4,
             "Question/answer pairs from CPython standard library docstrings",
             "PSF-2.0"),
    TaskSpec("instruction_alpaca", "instruction", _demo_files("instruction_alpaca"),
             demo_corpus.alpaca_text, 4,
             "Alpaca demo instructions shipped in the llamafactory 0.9.5 sdist",
             "CC BY-NC 4.0"),
    TaskSpec("math_synthetic", "math", _demo_files("math_synthetic"), _TEXT, 8,
             "Generated TinyMATH-style problems with verified answers", "Apache-2.0"),
    TaskSpec("thinking_program_traces", "thinking",
             _demo_files("thinking_program_traces"), _TEXT, 8,
             "Generated program-tracing reasoning, verified by execution",
             "Apache-2.0"),
]


def _sft_files(task: str) -> Callable[..., list[str]]:
  def files(data_cfg=None) -> list[str]:
    del data_cfg  # Built into the demo corpus folder, whatever the config.
    return sft_corpus.materialise(task)
  return files


# Chat tasks for supervised fine-tuning probes (corpora/sft.py): loss on responses only.
_SFT = [
    TaskSpec("sft_math_synthetic", "math", _sft_files("sft_math_synthetic"),
             chat_records.record_text, 1,
             "Generated TinyMATH-style problems as prompt/response, verified answers",
             "Apache-2.0", chat=True),
    TaskSpec("sft_code_stdlib", "code", _sft_files("sft_code_stdlib"),
             chat_records.record_text, 1,
             "CPython standard library functions requested by their docstrings",
             "PSF-2.0", chat=True),
    TaskSpec("sft_instruction_alpaca", "instruction", _sft_files("sft_instruction_alpaca"),
             chat_records.record_text, 1,
             "Alpaca demo instructions shipped in the llamafactory 0.9.5 sdist, as chat",
             "CC BY-NC 4.0", chat=True),
]

# OLMo 3 Dolmino mix (~100B tokens): (task, folder, capability, billions, epochs).
_OLMO3 = [
    ("olmo3_tinymath", "tinymath", "math", 5.0, 2),
    ("olmo3_cranemath", "cranemath", "math", 3.0, 2),
    ("olmo3_megamatt", "megamatt", "math", 2.0, 2),
    ("olmo3_dolmino_math", "dolmino_math", "math", 4.0, 2),
    ("olmo3_stack_edu_fim", "stack_edu", "code", 10.0, 1),
    ("olmo3_cranecode", "cranecode", "code", 5.0, 1),
    ("olmo3_reddit_flashcards", "reddit_to_flashcards", "qa", 3.0, 1),
    ("olmo3_wiki_rcqa", "wiki_to_rcqa", "qa", 4.0, 1),
    ("olmo3_nemotron_qa", "nemotron", "qa", 2.0, 1),
    ("olmo3_tulu3_sft", "tulu3_sft", "instruction", 2.0, 1),
    ("olmo3_flan", "flan", "instruction", 3.0, 1),
    ("olmo3_meta_reasoning", "meta_reasoning", "thinking", 2.0, 1),
    ("olmo3_program_verifiable", "program_verifiable", "thinking", 1.0, 1),
    ("olmo3_omr_rewrite", "omr_rewrite", "thinking", 1.0, 1),
    ("olmo3_web", "web", "web", 50.0, 1),
]
_OLMO3_TASKS = [
    TaskSpec(name, capability, _olmo3_files(folder, name), _TEXT, epochs,
             f"OLMo 3 Dolmino mix, {folder}/ under data.source_root",
             "see the Dolmino mix data card", fim=capability == "code",
             olmo3_tokens_b=billions)
    for name, folder, capability, billions, epochs in _OLMO3]

TASKS: dict[str, TaskSpec] = {t.name: t for t in _DEMO + _OLMO3_TASKS + _SFT}

# Demo rates mirror the Dolmino shape: half web, the rest by capability.
_DEMO_RATES = {
    "web_c4": 0.15, "web_wikipedia": 0.15, "web_openwebtext": 0.2,
    "code_python_stdlib": 0.15, "math_synthetic": 0.12, "qa_python_docs": 0.08,
    "instruction_alpaca": 0.08, "thinking_program_traces": 0.07,
}


def _build_mixtures() -> dict[str, MixtureSpec]:
  mixtures = [
      MixtureSpec("dolmino_demo", dict(_DEMO_RATES),
                  "Demo Dolmino mix from package data: all six capabilities"),
      MixtureSpec("web_only", {k: v for k, v in _DEMO_RATES.items()
                               if TASKS[k].capability == "web"},
                  "Web-only baseline of the demo corpus"),
      MixtureSpec("dolmino_olmo3", {t.name: t.olmo3_tokens_b for t in _OLMO3_TASKS},
                  "OLMo 3 Dolmino mix, rates proportional to its token counts"),
  ]
  # One chat task each: what an SFT probe (configs/sft.py) trains and evaluates on.
  mixtures += [MixtureSpec(f"sft/{task.name}", {task.name: 1.0},
                           f"Supervised fine-tuning on {task.name} (loss on responses)")
               for task in _SFT]
  for family, web_rates in (("demo", {k: v for k, v in _DEMO_RATES.items()
                                      if TASKS[k].capability == "web"}),
                            ("olmo3", {"olmo3_web": 1.0})):
    web_total = sum(web_rates.values())
    family_tasks = _DEMO if family == "demo" else _OLMO3_TASKS
    for task in family_tasks:
      if task.capability == "web":
        continue
      rates = {name: 0.5 * rate / web_total for name, rate in web_rates.items()}
      rates[task.name] = 0.5
      mixtures.append(MixtureSpec(f"microanneal/{task.name}", rates,
                                  f"Microanneal: 50% {task.name} + 50% web"))
  return {m.name: m for m in mixtures}


MIXTURES: dict[str, MixtureSpec] = _build_mixtures()


# Tasks of the mixture files loaded so far (the latest version of each file wins).
_FILE_TASKS: dict[str, TaskSpec] = {}


def load_file(name: str) -> tuple[dict[str, TaskSpec], dict[str, MixtureSpec]]:
  """Loads the mixture file a `data.mixture` value names and makes its tasks known.

  Returns:
    The file's ({task: TaskSpec}, {mixture: MixtureSpec}) (see mixture_file.load).

  Raises:
    mixture_file.MixtureFileError: on a bad file or a task named like a built-in one.
  """
  path = mixture_file.split(name)[0]
  tasks, mixtures = mixture_file.load(path)
  clash = sorted(set(tasks) & set(TASKS))
  if clash:
    raise mixture_file.MixtureFileError(
        f"{path}: task {clash[0]!r}: the name is taken by a built-in task; rename it.")
  _FILE_TASKS.update(tasks)
  return tasks, mixtures


def get_mixture(name: str) -> MixtureSpec:
  """Returns a mixture by name (seqio's "microanneal:x" spelling works too).

  A name ending in .yaml/.yml/.json (optionally `#microanneal/<task>`) is a
  mixture file: see mixture_file.py.
  """
  if mixture_file.is_mixture_file(name):
    return mixture_file.pick(name, load_file(name)[1])
  name = name.replace(":", "/")
  if name not in MIXTURES:
    raise ValueError(f"Unknown mixture {name!r}. Known mixtures: {sorted(MIXTURES)}")
  return MIXTURES[name]


def check_tasks(names, key: str) -> None:
  """Fails naming `key.<name>` for the first of `names` that is no known task."""
  for name in names:
    try:
      get_task(name)
    except ValueError as e:
      raise ValueError(f"{key}.{name}: {e}") from None


def get_task(name: str) -> TaskSpec:
  """Returns a task by name (built-in, or of a mixture file loaded before), or raises."""
  if name in TASKS:
    return TASKS[name]
  if name in _FILE_TASKS:
    return _FILE_TASKS[name]
  raise ValueError(f"Unknown task {name!r}. Known tasks: {sorted(TASKS | _FILE_TASKS)}")
