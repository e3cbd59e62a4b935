"""Real documents and planted duplicates of each kind, for the deduplication tests.

The documents were not used to choose the defaults: prose is cut from the
Python reference documentation shipped with the interpreter (pydoc_data),
plus web snippets of the demo corpus; code is the functions of standard
library modules outside the demo corpus' sample. Copies are made with a
seeded RNG, so every run plants the same ones.
"""
import ast
import functools
import hashlib
import pathlib
import random
import re
import sysconfig

import numpy as np

from midtrain_jax.data.mixtures import catalog
from midtrain_jax.documents import readers as sources

_STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])


@functools.cache
def prose_documents(count: int = 400) -> tuple[str, ...]:
  """Distinct real documents of 80-600 words: Python docs topics cut into paragraph groups,
  then web snippets of the demo corpus."""
  namespace = {}
  exec((_STDLIB / "pydoc_data" / "topics.py").read_text(encoding="utf-8"), namespace)  # noqa: S102
  docs = []
  for _, topic in sorted(namespace["topics"].items()):
    paragraphs = [p for p in topic.split("\n\n") if p.strip()]
    group = []
    for paragraph in paragraphs:
      group.append(paragraph)
      if len(" ".join(group).split()) >= 150:
        docs.append("\n\n".join(group))
        group = []
  spec = catalog.get_task("web_openwebtext")
  docs += [d.text for d in sources.read_files(spec.files(), spec.text_fn)
           if isinstance(d, sources.Document)]
  docs = [d for d in docs if 80 <= len(d.split()) <= 600]
  random.Random(0).shuffle(docs)
  return tuple(_distinct(docs, count))


def _shingles(text: str) -> set[tuple[str, ...]]:
  words = re.findall(r"\w+", text.lower())
  return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def _distinct(docs: list[str], count: int, max_jaccard: float = 0.2) -> list[str]:
  """The first `count` documents whose exact word 3-gram Jaccard similarity with every
  earlier one is below `max_jaccard`: the sources repeat some sections, and a
  distinct set must not (ground truth computed exactly, not with the code under test)."""
  kept, sets, postings = [], [], {}
  for doc in docs:
    mine = _shingles(doc)
    candidates = {j for s in mine for j in postings.get(s, ())}
    if all(len(mine & sets[j]) / len(mine | sets[j]) < max_jaccard for j in candidates):
      for s in mine:
        postings.setdefault(s, []).append(len(sets))
      sets.append(mine)
      kept.append(doc)
      if len(kept) == count:
        break
  return kept


def edit_words(text: str, rng: random.Random, rate: float, vocabulary: list[str]) -> str:
  """Deletes, replaces or inserts after a `rate` fraction of the words (a third each)."""
  out = []
  for word in text.split(" "):
    roll = rng.random()
    if roll >= rate:
      out.append(word)
    elif roll < rate / 3:
      continue
    elif roll < 2 * rate / 3:
      out.append(rng.choice(vocabulary))
    else:
      out += [word, rng.choice(vocabulary)]
  return " ".join(out)


def reorder_paragraphs(text: str, rng: random.Random) -> str:
  """The paragraphs (or, with fewer than 3, the sentences) in another order."""
  parts = [p for p in text.split("\n\n") if p.strip()]
  sep = "\n\n"
  if len(parts) < 3:
    parts, sep = re.split(r"(?<=[.!?])\s+", text), " "
  shuffled = parts[:]
  while len(parts) > 1 and shuffled == parts:
    rng.shuffle(shuffled)
  return sep.join(shuffled)


def shuffle_words(text: str, rng: random.Random) -> str:
  """The same words, shuffled within each sentence: the meaning a bag-of-words keeps."""
  sentences = re.split(r"(?<=[.!?])\s+", text)
  out = []
  for sentence in sentences:
    words = sentence.split()
    rng.shuffle(words)
    out.append(" ".join(words))
  return " ".join(out)


def bag_embedder(texts):
  """A deterministic embedder: sublinear counts of hashed words longer than 3 letters.

  Order-blind like a sentence embedding, so shuffled copies score ~1.0.
  """
  out = np.zeros((len(texts), 1024), np.float32)
  for i, text in enumerate(texts):
    for word in re.findall(r"[a-z]{4,}", text.lower()):
      out[i, int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little") % 1024] += 1
  return np.log1p(out)


@functools.cache
def functions(count: int = 300, min_lines: int = 5) -> tuple[str, ...]:
  """Source of distinct top-level functions of standard library modules (at least
  `min_lines` lines of code besides the docstring)."""
  found, seen = [], set()
  for path in sorted(_STDLIB.glob("*.py")):
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
      tree = ast.parse(text)
    except SyntaxError:
      continue
    for node in tree.body:
      if isinstance(node, ast.FunctionDef) and _code_lines(node) >= min_lines:
        source = ast.get_source_segment(text, node)
        if source and source not in seen:
          seen.add(source)
          found.append(source)
  random.Random(1).shuffle(found)
  return tuple(found[:count])


def _code_lines(node: ast.FunctionDef) -> int:
  """Lines of the function without its docstring (a copy without it must still be code)."""
  body = node.body
  if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    body = body[1:]
  return sum(len(ast.unparse(stmt).splitlines()) for stmt in body)


def rename_function(source: str, rng: random.Random) -> str:
  """A copy with new names for the function, its arguments and locals, other literals,
  no docstring and a new comment: what a structural duplicate looks like."""
  tree = ast.parse(source)
  names = {}
  shared = {n for node in ast.walk(tree) if isinstance(node, (ast.Global, ast.Nonlocal))
            for n in node.names}  # Module-level names: a copy keeps them.
  for node in ast.walk(tree):
    if isinstance(node, ast.FunctionDef):
      names[node.name] = f"fn_{rng.randrange(10**6)}"
    elif isinstance(node, ast.arg):
      names[node.arg] = f"p_{rng.randrange(10**6)}"
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in shared:
      names[node.id] = f"v_{rng.randrange(10**6)}"
  for node in ast.walk(tree):
    if isinstance(node, ast.FunctionDef):
      node.name = names[node.name]
      body = node.body
      if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
          and isinstance(body[0].value.value, str) and len(body) > 1:
        node.body = body[1:]
    elif isinstance(node, ast.arg):
      node.arg = names[node.arg]
    elif isinstance(node, ast.Name) and node.id in names:
      node.id = names[node.id]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      node.value = node.value[::-1] + "!"
    elif isinstance(node, ast.Constant) and type(node.value) is int:
      node.value += rng.randrange(1, 9)
  return f"# helper copied from elsewhere ({rng.randrange(99)})\n" + ast.unparse(tree)


APACHE_HEADER = """# Copyright 2024 The Project Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# This file is part of the project's public source release. Changes to it
# are reviewed before they are merged; see the contributing guide for how
# to send a change, run the tests and sign the contributor agreement.
# Report security problems privately to the maintainers, not in the public
# issue tracker, so that a fix can be released before details are known.
# =============================================================================
"""

_PRODUCT_TEMPLATE = """{title}
Home > Store > Books & Media > {title}
Price: ${price}.99   In stock. Ships in 1-2 business days.
Add to cart | Add to wish list | Compare

Product description
{body}

Shipping & returns
Free standard shipping on orders over $35. Items can be returned within 30 days
of delivery for a full refund, provided they are unused and in their original
packaging. Contact customer service for a prepaid return label.
Customers who viewed this item also viewed: gift cards, best sellers, new releases.
Write a review | Ask a question | Report incorrect product information
"""

_SIGNATURE = """
--
Posted from the community forum. Please read the forum rules before posting,
search the archives before asking a question, and mark your thread as solved
when you get an answer. Moderators: keep it civil, stay on topic, no spam.
Sent from my phone, please excuse typos. My setup: Linux desktop, 32 GB RAM.
"""


def _demo_texts(task: str) -> list[str]:
  spec = catalog.get_task(task)
  return [d.text for d in sources.read_files(spec.files(), spec.text_fn)
          if isinstance(d, sources.Document)]


@functools.cache
def stdlib_modules(min_words: int = 120, max_words: int = 3000) -> tuple[str, ...]:
  """Whole standard library modules (a file each) of a source-file size, sorted by path."""
  out = []
  for path in sorted(_STDLIB.glob("*.py")):
    text = path.read_text(encoding="utf-8", errors="replace")
    if min_words <= len(re.findall(r"\w+", text)) <= max_words:
      out.append(text)
  return tuple(out)


@functools.cache
def boilerplate_documents(per_kind: int = 150) -> tuple[tuple[str, str], ...]:
  """(kind, text) of distinct documents that share boilerplate, drawn without any
  similarity filter (only distinct texts and a length range, as found):

  licensed  standard library modules under one 20-line Apache licence header;
  product   demo web documents (their first 40-150 words) as the description of
            product pages from one store template;
  forum     demo encyclopedia paragraphs (40-150 words) as forum posts under one
            signature.
  """
  rng = random.Random(7)
  modules = list(stdlib_modules())
  rng.shuffle(modules)
  docs = [("licensed", APACHE_HEADER + "\n" + m) for m in modules[:per_kind]]
  for kind, task in (("product", "web_openwebtext"), ("forum", "web_wikipedia")):
    texts = list(dict.fromkeys(_demo_texts(task)))  # Distinct texts, nothing more.
    rng.shuffle(texts)
    picked = []
    for text in texts:
      words = text.split()
      if len(words) >= 40:
        picked.append(" ".join(words[:rng.randint(40, 150)]))
      if len(picked) == per_kind:
        break
    if kind == "product":
      docs += [(kind, _PRODUCT_TEMPLATE.format(title=" ".join(b.split()[:6]).title(),
                                               price=rng.randint(5, 99), body=b))
               for b in picked]
    else:
      docs += [(kind, f"Re: {' '.join(b.split()[:5])}\n\n{b}\n{_SIGNATURE}") for b in picked]
  return tuple(docs)
