"""The package's shape: layers declared once, data flows one way, commands stay thin."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "midtrain_jax"
# Modules run as commands (`python -m ...`): they parse absl flags, call libraries
# and may import anything; nothing imports them.
COMMANDS = {"main", "evaluate", "soup", "plan", "microanneal", "seed_soup", "convert", "generate",
            "upcycle_study", "lm_harness",
            "decontam.__main__", "dedup.__main__",
            "data.prepare.__main__", "data.mixtures.__main__"}
# The layers, lowest first: the one declaration of who may import whom. A unit
# is a package or module (the longest unit naming a module is its own). A module
# imports its own unit and units of lower layers only: never a higher layer,
# never another unit of its own layer.
LAYERS = (
    ("files", "cache", "logs", "settings"),
    ("cli", "parallel", "kernels", "documents", "benchmark_data", "data.tokenizer"),
    # Settings declared next to the code that reads them, in leaf modules.
    ("model.config", "dedup.params", "train.settings", "evals.settings", "parallel.settings",
     "workflows.settings"),
    ("data.settings",),
    ("config",),
    ("model", "dedup", "decontam"),
    ("data.mixtures",),
    ("data.layout",),
    ("data.prepare", "data.load"),
    ("data.reports",),
    ("train",),
    ("evals", "interop"),
    # The lm-eval-harness model reads every checkpoint `evals` and `interop` read.
    ("workflows", "lm_eval_model"),
)
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}
# The loading stage never reaches these, not even through another module.
NOT_LOADED = ("data.prepare", "dedup", "decontam")
MAX_FUNCTION_LINES = 80


def _name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
  """Every midtrain_jax module imported anywhere in the file (functions included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
        "midtrain_jax"):
      base = node.module.removeprefix("midtrain_jax").lstrip(".")
      for alias in node.names:
        full = f"{base}.{alias.name}".lstrip(".")
        found.add(full if (PACKAGE / f"{full.replace('.', '/')}.py").exists() or
                  (PACKAGE / full.replace(".", "/")).is_dir() else base)
    elif isinstance(node, ast.Import):
      found |= {a.name.removeprefix("midtrain_jax.") for a in node.names
                if a.name.startswith("midtrain_jax.")}
  return {m for m in found if m}


GRAPH = {_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _unit(module: str) -> str | None:
  """The longest declared unit that names `module` (None: undeclared)."""
  parts = module.split(".")
  for n in range(len(parts), 0, -1):
    if ".".join(parts[:n]) in LEVEL:
      return ".".join(parts[:n])
  return None


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as a module path, or None (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (found := visit(nxt)):
        return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return None


def _closure(module: str) -> set[str]:
  seen, todo = set(), [module]
  while todo:
    for nxt in GRAPH.get(todo.pop(), ()):
      if nxt not in seen:
        seen.add(nxt)
        todo.append(nxt)
  return seen


def test_the_graph_is_read_correctly():
  assert "train.checkpoint" in GRAPH["train.loop"]
  assert "decontam.decontaminator" in GRAPH["data.prepare.run_plan"]
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _unit("data.load.pipeline") == "data.load" and _unit("model.config") == "model.config"


def test_no_import_cycles():
  assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_every_library_module_is_in_a_layer():
  undeclared = [m for m, imported in GRAPH.items()
                if m not in COMMANDS and _unit(m) is None and (imported or "." in m)]
  assert not undeclared, f"modules in no layer of LAYERS: {undeclared}"


def test_no_import_goes_up_or_sideways():
  wrong = []
  for module, imported in sorted(GRAPH.items()):
    unit = _unit(module)
    if module in COMMANDS or unit is None:
      continue
    for target in sorted(imported):
      other = _unit(target)
      if other != unit and (other is None or LEVEL[other] >= LEVEL[unit]):
        wrong.append(f"{module} ({unit}) imports {target} ({other})")
  assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("loader", ["data.load.pipeline", "data.load.heldout_batches"])
def test_the_loader_imports_no_preparation(loader):
  reached = _closure(loader)
  assert "data.layout" in reached
  assert not [m for m in reached if any(m == n or m.startswith(n + ".") for n in NOT_LOADED)]


def test_the_training_loop_imports_no_evaluation():
  # Only the declaration of the `eval` config section (evals.settings) is reached.
  assert not [m for m in _closure("train.loop") if _unit(m) == "evals"]


def test_only_commands_define_flags_and_nothing_imports_a_command():
  for path in PACKAGE.rglob("*.py"):
    module, text = _name(path), path.read_text()
    if module not in COMMANDS and module != "cli":
      assert "flags.DEFINE" not in text, f"library module {module} defines flags"
    assert not GRAPH[module] & COMMANDS, f"{module} imports a command"
    if module in COMMANDS:
      assert "cli.run(main" in text, f"{module} does not use the one CLI convention"


def test_no_library_module_shares_a_command_name():
  commands = {c.removesuffix(".__main__").rsplit(".", 1)[-1] for c in COMMANDS}
  clashes = [m for m in GRAPH if m not in COMMANDS and "." in m
             and f"{m}.__main__" not in COMMANDS and m.rsplit(".", 1)[-1] in commands]
  assert not clashes, f"library modules named like a command: {clashes}"


def test_no_function_is_longer_than_the_limit():
  long = []
  for path in PACKAGE.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        lines = node.end_lineno - node.lineno + 1
        if lines > MAX_FUNCTION_LINES:
          long.append(f"{_name(path)}.{node.name}: {lines} lines")
  assert not long, long
