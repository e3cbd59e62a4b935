"""Structural fingerprints of code: copies that differ only in names, literals and comments.

Python is parsed with `ast`, then canonicalised: every identifier (variables,
arguments, functions, classes) is replaced by its order of first appearance
(`v0`, `v1`, ...), attributes and keyword arguments likewise in their own
numbering (`m0`, ...), string and bytes literals by
"" and numbers by 0, docstrings and other bare string statements are removed
(comments never reach the tree). Two documents with the same canonical tree
are structural duplicates: a copy of a function with its variables renamed,
its constants changed and its comments rewritten is found, while a copy with
a changed control flow or operator is not.

Other languages, and Python that does not parse, are compared by token
shape when the text looks like code (enough lines ending in `;`, `{` or `}`):
comments removed, identifiers -> `I`, numbers -> `0`, strings -> `S`,
keywords and punctuation kept. Text that is neither yields no fingerprint.
"""
import ast
import re

from midtrain_jax.dedup import text as text_lib

_KEYWORDS = frozenset(
    "abstract async await bool break case catch char class const continue default defer do "
    "double else enum export extends false final finally float fn for func function go if "
    "impl implements import in instanceof int interface let long loop match mod mut new nil "
    "null package private protected pub public return self short static struct super switch "
    "this throw throws trait true try type typeof unsafe use using var void while yield".split())
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*|(?m:^\s*#(?!include|define|if|endif|pragma)[^\n]*)",
                      re.S)
_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`[^`]*`|[A-Za-z_]\w*|'
                    r"\d[\w.]*|\S")
_CODE_LINE_END = (";", "{", "}")


class _Canonical(ast.NodeTransformer):
  """Renames identifiers by first appearance and blanks literals (in source order)."""

  def __init__(self):
    self.names: dict[str, str] = {}
    # Attributes and keyword arguments name other code's members: a renamed copy
    # keeps `parser.add_argument(description=...)` while renaming its own
    # variable `description`, so they get their own numbering.
    self.members: dict[str, str] = {}
    self.nodes = 0

  def _name(self, name: str | None) -> str | None:
    if name is None:
      return None
    return self.names.setdefault(name, f"v{len(self.names)}")

  def _member(self, name: str | None) -> str | None:
    if name is None:
      return None
    return self.members.setdefault(name, f"m{len(self.members)}")

  def generic_visit(self, node):
    self.nodes += 1
    if isinstance(node, ast.Name):
      node.id = self._name(node.id)
    elif isinstance(node, ast.arg):
      node.arg = self._name(node.arg)
    elif isinstance(node, ast.keyword):
      node.arg = self._member(node.arg)
    elif isinstance(node, ast.Attribute):
      node.attr = self._member(node.attr)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      node.name = self._name(node.name)
    if isinstance(node, (ast.Global, ast.Nonlocal)):
      node.names = [self._name(n) for n in node.names]
    if isinstance(node, ast.Constant):
      if isinstance(node.value, (str, bytes)):
        node.value = type(node.value)()
      elif isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
        node.value = 0
    if isinstance(getattr(node, "body", None), list):
      node.body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(
          s.value, ast.Constant) and isinstance(s.value.value, str))] or [ast.Pass()]
    return super().generic_visit(node)


def python_key(text: str, min_nodes: int = 20) -> bytes | None:
  """The structural fingerprint of Python source, or None when it does not parse
  or has fewer than `min_nodes` syntax-tree nodes (too small to call a copy)."""
  try:
    tree = ast.parse(text)
  except (SyntaxError, ValueError, RecursionError, MemoryError):
    return None
  canonical = _Canonical()
  try:
    tree = canonical.visit(tree)
  except RecursionError:
    return None
  if canonical.nodes < min_nodes:
    return None
  return text_lib.digest(b"py\0" + ast.dump(tree, annotate_fields=False).encode("utf-8"))


def looks_like_code(text: str) -> bool:
  """True when at least 3 lines and 30% of the non-empty ones end like C-family code."""
  lines = [line.rstrip() for line in text.splitlines() if line.strip()]
  ends = sum(line.endswith(_CODE_LINE_END) for line in lines)
  return len(lines) >= 3 and ends >= 0.3 * len(lines)


def shape_key(text: str, min_tokens: int = 20) -> bytes | None:
  """The token-shape fingerprint of code in any language, or None for text that
  does not look like code or has fewer than `min_tokens` tokens."""
  if not looks_like_code(text):
    return None
  tokens = _TOKEN.findall(_COMMENT.sub(" ", text))
  if len(tokens) < min_tokens:
    return None
  shape = []
  for token in tokens:
    if token[0] in "\"'`":
      shape.append("S")
    elif token[0].isdigit():
      shape.append("0")
    elif token[0].isalpha() or token[0] == "_":
      shape.append(token if token in _KEYWORDS else "I")
    else:
      shape.append(token)
  return text_lib.digest("shape\0" + " ".join(shape))


def code_key(text: str, min_tokens: int = 20) -> bytes | None:
  """A document's structural fingerprint: Python's canonical tree, else its token shape.

  Args:
    text: a document.
    min_tokens: smallest tree (nodes) or token count fingerprinted.

  Returns:
    A 16-byte key, or None for text that is not code.
  """
  key = python_key(text, min_tokens)
  return key if key is not None else shape_key(text, min_tokens)
