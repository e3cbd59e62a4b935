"""Tasks and a mixture declared in the user's own YAML (or JSON) file.

  name: my_mix                   # optional; default: the file's name
  description: my sources        # optional
  tasks:
    my_web:  {files: ["web/*.jsonl.gz"], capability: web, weight: 0.5}
    my_qa:   {files: ["qa.parquet"], capability: qa, weight: 0.3, max_epochs: 2,
              template: "Question: {question}\\nAnswer: {answer}"}
    my_chat: {files: ["gs://bucket/chat/*.jsonl.zst"], capability: instruction,
              weight: 0.2, chat_template: chatml, licence: "CC BY 4.0"}
    my_seqio: {seqio_task: my_registered_task, capability: qa, weight: 0.1}
    my_sft:  {files: ["sft/*.jsonl"], capability: math, weight: 1.0, sft: true}
    my_tokens: {token_files: ["olmo/*.npy"], token_dtype: uint32,
                tokenizer: "dolma2/tokenizer.json", capability: math, weight: 0.1}
  registry_modules: [my_pkg.my_tasks]  # optional: register the seqio tasks named
  stages:                        # optional: the default `data.weight_stages`
    - {start: 0, weights: {my_web: 1.0}}
    - {start: 2000, weights: {my_web: 0.5, my_qa: 0.3, my_chat: 0.2}}

Task keys: `files` (pattern or list; relative ones are read from the mixture
file's folder), `capability`, `weight` (required); `text_field` (default
"text"), `template` (str.format over the record's fields) or `chat_template`
(a name of CHAT_TEMPLATES, rendering the record's `messages: [{role,
content}]` as plain text); `sft: true` (the records are conversations,
`messages` or `prompt` and `response`, rendered with the model's chat
template and trained on their responses only: data/chat.py); `max_epochs`
(default 1), `fim`, `licence`, `provenance`.
Instead of `files`, `seqio_task` names a registered seqio Task or Mixture
(optional `split`, default "train"; `text_field` names its text feature):
its preprocessed examples are the documents (seqio_source.py has the
contract). The modules registering it are the file's `registry_modules` plus
`data.registry_modules`. Instead of `files`, `token_files` (pattern or list,
relative ones from the file's folder) names corpora already tokenised as
OLMo-core publishes them (documents/token_files.py): `token_dtype` (uint16,
uint32 (default) or uint64) is their id width and `tokenizer` (required: a
`data.tokenizer` value, a relative path read from the file's folder, or a
tokenizer fingerprint) the tokenizer they were made with, which must be the
model's; their documents are not deduplicated or decontaminated (the text is
gone; data/prepare/pretokenized.py).

The config names the file where a mixture name goes (`data.mixture=mix.yaml`);
`mix.yaml#microanneal/<task>` is the microanneal mixture (50% the task, 50% the
file's web tasks in their weights' proportions) of each non-web task. Any
mistake raises MixtureFileError naming the file, the task and the key.
"""
import difflib
import hashlib
import json
import math
import posixpath
import re
import string

import yaml
from etils import epath

from midtrain_jax.data.mixtures import chat_records
from midtrain_jax.data.mixtures.specs import CAPABILITIES, MixtureSpec, TaskSpec
from midtrain_jax.documents import readers as sources
from midtrain_jax.documents import token_files

SUFFIXES = (".yaml", ".yml", ".json")
# `<file>#microanneal/<task>` names a file's microanneal mixture.
MICROANNEAL = "microanneal/"
CHAT_TEMPLATES = {
    "plain": ("{role}: {content}", "\n"),
    "chatml": ("<|im_start|>{role}\n{content}<|im_end|>", "\n"),
}
_TOP_KEYS = ("name", "description", "tasks", "stages", "registry_modules")
_TASK_KEYS = ("files", "seqio_task", "token_files", "token_dtype", "tokenizer", "split",
              "capability", "weight", "text_field", "template", "chat_template", "sft",
              "max_epochs", "fim", "licence", "provenance")
# Keys of a text task that a token-file task has no use for.
_TEXT_KEYS = ("files", "seqio_task", "split", "text_field", "template", "chat_template", "sft")
_STAGE_KEYS = ("start", "weights")
# Names become seqio names and folder names: keep them plain.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_LOADED: dict[tuple[str, str], tuple[dict[str, TaskSpec], dict[str, MixtureSpec]]] = {}


class MixtureFileError(ValueError):
  """A mixture file is malformed; the message names the file, task and key."""


def is_mixture_file(name: str) -> bool:
  """True when a `data.mixture` value names a mixture file rather than a registered mixture."""
  return split(name)[0].endswith(SUFFIXES)


def split(name: str) -> tuple[str, str]:
  """("path/mix.yaml", "microanneal/x") of "path/mix.yaml#microanneal/x" ("" without "#")."""
  path, _, member = name.partition("#")
  return path, member


def _read(path: str) -> bytes:
  try:
    return epath.Path(path).read_bytes()
  except FileNotFoundError as e:
    raise MixtureFileError(f"Mixture file {path} does not exist.") from e


def content_hash(path: str) -> str:
  """The first 8 hex digits of the sha256 of the file's bytes."""
  return hashlib.sha256(_read(path)).hexdigest()[:8]


def folder_name(name: str) -> str:
  """The prepared-data folder name of a mixture file: `<name>-<hash of its content>`.

  Editing the file (another template, other files) thus never reuses shards
  prepared for an earlier version; a microanneal mixture of the file gets a
  sub-folder, as the built-in `microanneal/<task>` mixtures do.
  """
  path, member = split(name)
  _, mixtures = load(path)
  folder = f"{next(iter(mixtures))}-{content_hash(path)}"
  return f"{folder}/{member}" if member else folder


def pick(name: str, mixtures: dict[str, MixtureSpec]) -> MixtureSpec:
  """The mixture a `data.mixture` value names among a file's `load()` mixtures."""
  path, member = split(name)
  main = next(iter(mixtures))
  if not member:
    return mixtures[main]
  if f"{main}#{member}" not in mixtures:
    known = [m.split("#", 1)[1] for m in mixtures if "#" in m]
    raise MixtureFileError(f"{path} has no mixture {member!r}; it has {known} (a "
                           "microanneal mixture per non-web task when it has web tasks).")
  return mixtures[f"{main}#{member}"]


def load(path: str) -> tuple[dict[str, TaskSpec], dict[str, MixtureSpec]]:
  """Reads and validates a mixture file (cached by path and content).

  Args:
    path: a .yaml/.yml or .json file, local or gs://.

  Returns:
    ({task name: TaskSpec}, {mixture name: MixtureSpec}): the file's own
    mixture first, then `<name>#microanneal/<task>` per non-web task.

  Raises:
    MixtureFileError: naming the file, the task and the key at fault.
  """
  raw = _read(path)
  key = (path, hashlib.sha256(raw).hexdigest())
  if key not in _LOADED:
    _LOADED[key] = _parse(path, raw)
  return _LOADED[key]


def _fail(path: str, where: str, message: str):
  raise MixtureFileError(f"{path}: {where}{message}")


def _check_keys(path: str, where: str, node, allowed: tuple[str, ...]) -> None:
  if not isinstance(node, dict):
    _fail(path, where, f"must be a mapping of keys {list(allowed)}, got {node!r}.")
  for key in node:
    if key not in allowed:
      close = difflib.get_close_matches(str(key), allowed, n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      _fail(path, where, f"unknown key {key!r}{hint}; allowed keys: {list(allowed)}.")


def _weight(path: str, where: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
      value) or value < 0:
    _fail(path, where, f"must be a number >= 0, got {value!r}.")
  return float(value)


def _parse(path: str, raw: bytes) -> tuple[dict[str, TaskSpec], dict[str, MixtureSpec]]:
  try:
    doc = json.loads(raw) if path.endswith(".json") else yaml.safe_load(raw)
  except (ValueError, yaml.YAMLError) as e:
    raise MixtureFileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}"
                           f": {e}") from e
  _check_keys(path, "", doc, _TOP_KEYS)
  stem = posixpath.basename(path).rsplit(".", 1)[0]
  name = doc.get("name", re.sub(r"\W", "_", stem))
  if not isinstance(name, str) or not _NAME.match(name):
    _fail(path, "key 'name': ", f"{name!r} must be letters, digits and '_'.")
  if not isinstance(doc.get("tasks"), dict) or not doc["tasks"]:
    _fail(path, "key 'tasks': ", "must map task names to their settings (at least one task).")
  modules = doc.get("registry_modules", [])
  modules = [modules] if isinstance(modules, str) else modules
  if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
    _fail(path, "key 'registry_modules': ", f"must be a module name or a list of them, got "
                                            f"{doc['registry_modules']!r}.")
  tasks = {task: _task(path, task, node, tuple(modules))
           for task, node in doc["tasks"].items()}
  rates = {task: _weight(path, f"task {task!r}: key 'weight': ", doc["tasks"][task]["weight"])
           for task in tasks}
  stages = _stages(path, doc.get("stages") or [], list(tasks))
  if not stages and sum(rates.values()) <= 0:
    _fail(path, "key 'weight': ", "every task has weight 0; give one a positive weight.")
  description = doc.get("description", f"Mixture file {path}")
  mixtures = {name: MixtureSpec(name, rates, str(description), stages)}
  web = {t: rates[t] for t, spec in tasks.items() if spec.capability == "web"}
  web_total = sum(web.values())
  for task, spec in tasks.items():
    if spec.capability == "web" or not web:
      continue
    mix = {w: 0.5 * (r / web_total if web_total else 1 / len(web)) for w, r in web.items()}
    mix[task] = 0.5
    member = f"{name}#{MICROANNEAL}{task}"
    mixtures[member] = MixtureSpec(member, mix, f"Microanneal: 50% {task} + 50% web of {path}")
  return tasks, mixtures


def _task(path: str, task, node, registry_modules: tuple[str, ...]) -> TaskSpec:
  where = f"task {task!r}: "
  if not isinstance(task, str) or not _NAME.match(task):
    _fail(path, where, "task names must be letters, digits and '_'.")
  _check_keys(path, where, node, _TASK_KEYS)
  for key in ("capability", "weight"):
    if key not in node:
      _fail(path, where, f"key {key!r} is missing (every task needs files, seqio_task or "
                         "token_files, capability and weight).")
  if node["capability"] not in CAPABILITIES:
    _fail(path, where, f"key 'capability': {node['capability']!r} is not one of "
                       f"{list(CAPABILITIES)}.")
  if "seqio_task" in node:
    return _seqio_task(path, task, node, registry_modules)
  if "token_files" in node:
    return _token_task(path, task, node)
  for key in ("token_dtype", "tokenizer"):
    if key in node:
      _fail(path, where, f"key {key!r}: only a token_files task has it.")
  if "files" not in node:
    _fail(path, where, "key 'files' is missing (every task needs files, seqio_task or "
                       "token_files, capability and weight).")
  if "split" in node:
    _fail(path, where, "key 'split': only a seqio_task task has a split.")
  patterns = node["files"]
  patterns = [patterns] if isinstance(patterns, str) else patterns
  if not isinstance(patterns, list) or not patterns or not all(
      isinstance(p, str) for p in patterns):
    _fail(path, where, f"key 'files': must be a pattern or a list of patterns, got "
                       f"{node['files']!r}.")
  epochs = _checked_epochs_and_fim(path, where, node)
  for key in ("licence", "provenance", "text_field", "template", "chat_template"):
    if key in node and not isinstance(node[key], str):
      _fail(path, where, f"key {key!r}: must be a string, got {node[key]!r}.")
  return TaskSpec(
      task, node["capability"], _files(path, task, patterns), _text_fn(path, task, node),
      epochs, node.get("provenance", f"{path}: {', '.join(patterns)}"),
      node.get("licence", "unspecified"), fim=node.get("fim", False),
      chat=node.get("sft", False))


def _checked_epochs_and_fim(path: str, where: str, node: dict) -> int:
  """A task's `max_epochs` (default 1), after checking it and `fim` (both task kinds)."""
  epochs = node.get("max_epochs", 1)
  if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
    _fail(path, where, f"key 'max_epochs': must be an integer >= 1, got {epochs!r}.")
  if not isinstance(node.get("fim", False), bool):
    _fail(path, where, f"key 'fim': must be true or false, got {node['fim']!r}.")
  return epochs


def _seqio_task(path: str, task: str, node: dict,
                registry_modules: tuple[str, ...]) -> TaskSpec:
  """A task whose documents are a registered seqio Task's preprocessed examples."""
  where = f"task {task!r}: "
  for key in ("files", "template", "chat_template", "sft"):
    if key in node:
      _fail(path, where, f"keys ['seqio_task', {key!r}] conflict: a seqio task's text is "
                         "its preprocessors' `text_field` output.")
  epochs = _checked_epochs_and_fim(path, where, node)
  for key in ("seqio_task", "split", "text_field", "licence", "provenance"):
    if key in node and (not isinstance(node[key], str) or not node[key]):
      _fail(path, where, f"key {key!r}: must be a non-empty string, got {node[key]!r}.")
  field = node.get("text_field", "text")
  return TaskSpec(
      task, node["capability"], _no_files, sources.field_text(field), epochs,
      node.get("provenance", f"{path}: seqio task {node['seqio_task']}"),
      node.get("licence", "unspecified"), fim=node.get("fim", False),
      seqio_task=node["seqio_task"], seqio_split=node.get("split", "train"),
      seqio_text_field=field, registry_modules=registry_modules)


def _patterns(path: str, where: str, node: dict, key: str) -> list[str]:
  """A task's file patterns under `key` (one or a list), relative ones from the file's folder."""
  patterns = node[key]
  patterns = [patterns] if isinstance(patterns, str) else patterns
  if not isinstance(patterns, list) or not patterns or not all(
      isinstance(p, str) and p for p in patterns):
    _fail(path, where, f"key {key!r}: must be a pattern or a list of patterns, got "
                       f"{node[key]!r}.")
  folder = posixpath.dirname(path)
  return [p if p.startswith("/") or "://" in p else posixpath.join(folder, p) for p in patterns]


def _token_task(path: str, task: str, node: dict) -> TaskSpec:
  """A task whose documents are token ids already (OLMo-core's token files)."""
  where = f"task {task!r}: "
  for key in _TEXT_KEYS:
    if key in node:
      _fail(path, where, f"keys ['token_files', {key!r}] conflict: token files hold token "
                         "ids, not records to read text from.")
  dtype = node.get("token_dtype", "uint32")
  if dtype not in token_files.DTYPES:
    _fail(path, where, f"key 'token_dtype': {dtype!r} is not one of "
                       f"{sorted(token_files.DTYPES)}.")
  tokenizer = node.get("tokenizer")
  if not isinstance(tokenizer, str) or not tokenizer:
    _fail(path, where, "key 'tokenizer' is missing: name the tokenizer the token files were "
                       f"made with (a data.tokenizer value or its fingerprint), got {tokenizer!r}.")
  if tokenizer.endswith((".json", ".model")) and not (
      tokenizer.startswith("/") or "://" in tokenizer):
    tokenizer = posixpath.join(posixpath.dirname(path), tokenizer)
  epochs = _checked_epochs_and_fim(path, where, node)
  for key in ("licence", "provenance"):
    if key in node and not isinstance(node[key], str):
      _fail(path, where, f"key {key!r}: must be a string, got {node[key]!r}.")
  patterns = _patterns(path, where, node, "token_files")
  given = [node["token_files"]] if isinstance(node["token_files"], str) else node["token_files"]
  return TaskSpec(
      task, node["capability"], _no_files, _no_text, epochs,
      node.get("provenance", f"{path}: token files {', '.join(given)}"),
      node.get("licence", "unspecified"), fim=node.get("fim", False),
      token_files=tuple(patterns), token_dtype=dtype, tokenizer=tokenizer)


def _no_text(record: dict) -> str:
  del record  # A token-file task has no records; its documents are ids.
  raise TypeError("a token_files task has no text")


def _no_files(data_cfg=None) -> list[str]:
  del data_cfg  # A seqio or token-file task's documents do not come from `files`.
  return []


def _files(path: str, task: str, patterns: list[str]):
  folder = posixpath.dirname(path)
  patterns = [p if p.startswith("/") or "://" in p else posixpath.join(folder, p)
              for p in patterns]

  def files(data_cfg=None) -> list[str]:
    del data_cfg  # The file says where its data is.
    try:
      return sources.expand(patterns)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{path}: task {task!r}: key 'files': {e}") from e
  return files


def _text_fn(path: str, task: str, node: dict) -> sources.TextFn:
  where = f"task {task!r}: "
  if not isinstance(node.get("sft", False), bool):
    _fail(path, where, f"key 'sft': must be true or false, got {node['sft']!r}.")
  chosen = [k for k in ("text_field", "template", "chat_template") if k in node]
  chosen += ["sft"] if node.get("sft") else []
  if len(chosen) > 1:
    _fail(path, where, f"keys {chosen} conflict: give one of text_field, template, "
                       "chat_template, sft.")
  if node.get("sft"):
    if node.get("fim"):
      _fail(path, where, "keys ['sft', 'fim'] conflict: a conversation is trained on its "
                         "responses as they are, never rearranged.")
    return chat_records.record_text
  if "template" in node:
    try:
      fields = [f for _, f, _, _ in string.Formatter().parse(node["template"]) if f]
    except ValueError as e:
      _fail(path, where, f"key 'template': {e}.")
    if not fields:
      _fail(path, where, "key 'template': names no {field} of the records.")
    return template_text(node["template"])
  if "chat_template" in node:
    if node["chat_template"] not in CHAT_TEMPLATES:
      _fail(path, where, f"key 'chat_template': {node['chat_template']!r} is not one of "
                         f"{list(CHAT_TEMPLATES)}.")
    return chat_text(node["chat_template"])
  return sources.field_text(node.get("text_field", "text"))


def template_text(template: str) -> sources.TextFn:
  """A TextFn filling a str.format template with the record's fields."""
  def text_of(record: dict) -> str:
    try:
      return template.format_map(record)
    except KeyError as e:
      raise sources.MissingField(f"no field {e.args[0]!r} for the template") from e
  # Part of the prepared data's fingerprint: another template, other shards.
  text_of.__name__ = f"template_{hashlib.sha256(template.encode()).hexdigest()[:12]}"
  return text_of


def chat_text(name: str) -> sources.TextFn:
  """A TextFn rendering a record's `messages: [{role, content}]` with a named template."""
  turn, separator = CHAT_TEMPLATES[name]

  def text_of(record: dict) -> str:
    if "messages" not in record:
      raise sources.MissingField("no field 'messages' for the chat template")
    messages = record["messages"]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and
        isinstance(m.get("content"), str) for m in messages):
      raise TypeError("'messages' must be a list of {role: str, content: str}")
    return separator.join(turn.format(role=m["role"], content=m["content"])
                          for m in messages)
  digest = hashlib.sha256(repr(CHAT_TEMPLATES[name]).encode()).hexdigest()[:8]
  text_of.__name__ = f"chat_{name}_{digest}"
  return text_of


def _stages(path: str, stages, task_names: list[str]) -> tuple:
  if not isinstance(stages, list):
    _fail(path, "key 'stages': ", "must be a list of {start, weights}.")
  out, previous = [], -1
  for i, stage in enumerate(stages):
    where = f"stages[{i}]: "
    _check_keys(path, where, stage, _STAGE_KEYS)
    start = stage.get("start")
    if isinstance(start, bool) or not isinstance(start, int) or start <= previous or (
        i == 0 and start != 0):
      _fail(path, where, f"key 'start': must be an integer, 0 for the first stage and "
                         f"increasing, got {start!r}.")
    weights = stage.get("weights")
    if not isinstance(weights, dict) or not weights:
      _fail(path, where, "key 'weights': must map task names to weights.")
    for task, weight in weights.items():
      if task not in task_names:
        _fail(path, where, f"key 'weights': task {task!r} is not a task of the file "
                           f"({task_names}).")
      _weight(path, f"{where}key 'weights': task {task!r}: ", weight)
    if sum(weights.values()) <= 0:
      _fail(path, where, "key 'weights': all weights are zero.")
    out.append((start, {t: float(w) for t, w in weights.items()}))
    previous = start
  return tuple(out)
