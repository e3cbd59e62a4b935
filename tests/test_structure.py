"""The package's shape: no import cycles, data flows one way, commands stay thin."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "midtrain_jax"
# Modules run as commands (`python -m ...`): they parse absl flags and call libraries.
COMMANDS = {"main", "evaluate", "soup", "plan", "microanneal", "seed_soup", "convert", "generate",
            "upcycle_study",
            "decontam.__main__", "dedup.__main__",
            "data.prepare", "data.registry"}
# Who may import whom, by package (lower layers never import higher ones). The
# evals package's benchmark items (evals.items) are data that every layer may read.
ALLOWED = {
    "model": {"model", "parallel", "kernels"},
    "parallel": {"parallel"},
    "kernels": {"kernels"},
    "decontam": {"decontam", "evals.items"},
    # Deduplication reads files with the data package's readers and writes shards
    # with decontamination's writer; nothing else of theirs.
    "dedup": {"dedup", "data.sources", "decontam.batch"},
    "data": {"data", "decontam", "dedup", "evals.items"},
}


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


def test_the_graph_is_read_correctly():
  assert "train.checkpoint" in GRAPH["train.loop"]
  assert "decontam.decontaminator" in GRAPH["data.preparation"]
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
  assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layers_never_import_higher_ones(package):
  # Settings declarations (midtrain_jax/settings.py) are read by every layer.
  allowed = ALLOWED[package] | {"cache", "files", "logs", "config", "settings"}
  for module, imported in GRAPH.items():
    if module.startswith(package + ".") and module not in COMMANDS:
      for target in imported:
        assert any(target == a or target.startswith(a + ".") for a in allowed), (
            f"{module} imports {target}")


def test_only_commands_define_flags_and_nothing_imports_a_command():
  for path in PACKAGE.rglob("*.py"):
    module, text = _name(path), path.read_text()
    if module not in COMMANDS and module != "cli":
      assert "flags.DEFINE" not in text, f"library module {module} defines flags"
    assert not GRAPH[module] & COMMANDS, f"{module} imports a command"
    if module in COMMANDS:
      assert "cli.run(main" in text, f"{module} does not use the one CLI convention"
