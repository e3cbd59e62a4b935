"""A seeded JSONL corpus of any size from the demo sources, with planted duplicates.

  python -m benchmarks.prepare_corpus --out=DIR --size_gb=0.25 [--seed=0]

Every document is a demo-corpus document (web, Wikipedia, code, Q/A,
instructions, math, traces: `data/mixtures/corpora/`) varied so that it is
its own text: a fraction of its words replaced by words of other documents
and its paragraphs shuffled. Among them, at known rates, exact copies of an
earlier document and near copies (a few percent of its words replaced) are
planted; `corpus.json` records the counts, so a deduplication run on the
corpus can be checked against them. The documents are written as
`part-00000.jsonl` shards of about `--shard_mb` MB (`{"id", "text"}` lines).
The same seed and size give the same bytes.
"""
import argparse
import json
import pathlib

import numpy as np

from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.mixtures.corpora import demo as demo_corpus
from midtrain_jax.documents import readers

# Words replaced in every document (it is its own text, not a near copy of
# another variant of the same source) and in a planted near copy.
VARIANT_EDIT = 0.35
NEAR_EDIT = 0.03
EXACT_RATE = 0.04
NEAR_RATE = 0.04


def source_texts() -> list[str]:
  """The demo corpus's documents, every task, in catalogue order."""
  texts = []
  for task in demo_corpus.DEMO_TASKS:
    spec = catalog.get_task(task)
    texts += [item.text for item in readers.read_files(spec.files(), spec.text_fn)
              if isinstance(item, readers.Document)]
  return texts


def _edit(words: list[str], fraction: float, pool: list[str], rng) -> list[str]:
  """`words` with a `fraction` of them replaced by words drawn from `pool`."""
  out = list(words)
  picked = np.flatnonzero(rng.random(len(out)) < fraction)
  for i, j in zip(picked, rng.integers(0, len(pool), picked.size)):
    out[i] = pool[j]
  return out


def _variant(text: str, pool: list[str], rng) -> str:
  """A document of its own from a source text: paragraphs shuffled, words replaced."""
  paragraphs = text.split("\n")
  if len(paragraphs) > 2:
    order = rng.permutation(len(paragraphs))
    paragraphs = [paragraphs[i] for i in order]
  return "\n".join(" ".join(_edit(p.split(" "), VARIANT_EDIT, pool, rng)) for p in paragraphs)


def documents(size_bytes: int, seed: int):
  """Yields (id, text, kind) until `size_bytes` of text: kind "doc", "exact" or "near"."""
  rng = np.random.default_rng(seed)
  texts = source_texts()
  pool = [w for t in texts[::50] for w in t.split() if w.isalpha()]
  emitted: list[str] = []  # The documents copies are made of (a bounded sample).
  total, number = 0, 0
  while total < size_bytes:
    draw = rng.random()
    if emitted and draw < EXACT_RATE:
      text, kind = emitted[rng.integers(len(emitted))], "exact"
    elif emitted and draw < EXACT_RATE + NEAR_RATE:
      source = emitted[rng.integers(len(emitted))]
      text, kind = " ".join(_edit(source.split(" "), NEAR_EDIT, pool, rng)), "near"
    else:
      text, kind = _variant(texts[rng.integers(len(texts))], pool, rng), "doc"
      if len(emitted) < 20_000:
        emitted.append(text)
      else:
        emitted[rng.integers(len(emitted))] = text
    yield f"doc-{number:08d}", text, kind
    total += len(text.encode("utf-8"))
    number += 1


def build(out: str | pathlib.Path, size_gb: float, seed: int = 0, shard_mb: int = 64) -> dict:
  """Writes the corpus to `out` unless `corpus.json` there says it is built; returns it.

  Returns:
    {size_gb, seed, files, docs, bytes, exact_copies, near_copies}.
  """
  out = pathlib.Path(out)
  meta_path = out / "corpus.json"
  if meta_path.exists():
    meta = json.loads(meta_path.read_text())
    if (meta["size_gb"], meta["seed"]) == (size_gb, seed):
      return meta
  out.mkdir(parents=True, exist_ok=True)
  for old in out.glob("part-*.jsonl"):
    old.unlink()
  counts = {"doc": 0, "exact": 0, "near": 0}
  shard, written, total, f = 0, 0, 0, None
  for doc_id, text, kind in documents(int(size_gb * 1e9), seed):
    if f is None or written >= shard_mb * 1e6:
      if f is not None:
        f.close()
      f = open(out / f"part-{shard:05d}.jsonl", "w", encoding="utf-8")
      shard, written = shard + 1, 0
    line = json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n"
    f.write(line)
    written += len(line.encode("utf-8"))
    total += len(text.encode("utf-8"))
    counts[kind] += 1
  f.close()
  meta = dict(size_gb=size_gb, seed=seed, files=shard, docs=sum(counts.values()), bytes=total,
              exact_copies=counts["exact"], near_copies=counts["near"])
  meta_path.write_text(json.dumps(meta, indent=1))
  return meta


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--size_gb", type=float, default=0.25)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--shard_mb", type=int, default=64)
  args = parser.parse_args()
  print(json.dumps(build(args.out, args.size_gb, args.seed, args.shard_mb)))


if __name__ == "__main__":
  main()
