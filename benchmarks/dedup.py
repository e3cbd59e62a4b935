"""Deduplication speed: exact + near (MinHash LSH) on the demo corpus scaled up, one core.

    python -m benchmarks.dedup [--copies=3] [--levels=exact,near] [--near_method=minhash]

The demo corpus (midtrain_jax/data/corpora/demo, about 12 MB of web,
encyclopedia, code, Q/A, instructions, generated math and traces) is read
once and scaled up: copy 0 is the corpus, odd copies have about 8% of the
words of each document edited (near duplicates), even copies differ in case
and white space only (exact duplicates). Every document goes through the
Deduplicator in batches (fingerprints, then the keep decision), as prepare and
the batch command run it. Throughput is MB of UTF-8 text per second of this
process's CPU time with one thread, i.e. per core.

Scope: the texts are already in memory; JSON parsing, decompression and file
I/O (reading inputs, writing kept records and reports) are not timed, and the
run is one process on one core (prepare and the batch command add their
reading and writing; Beam spreads fingerprinting over workers). The last line
is `docs_per_s=X mb_per_s=Y`.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ[_var] = "1"  # One core: before numpy starts its thread pools.

import argparse  # noqa: E402
import collections  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

from midtrain_jax.data.mixtures import catalog  # noqa: E402
from midtrain_jax.data.mixtures.corpora import demo  # noqa: E402
from midtrain_jax.dedup import batch as dedup_batch  # noqa: E402
from midtrain_jax.dedup import deduplicator, params  # noqa: E402
from midtrain_jax.documents import readers as sources  # noqa: E402


def demo_documents() -> list[tuple[str, str]]:
  """(task, text) of every document of the demo corpus."""
  docs = []
  for task in demo.DEMO_TASKS:
    spec = catalog.get_task(task)
    docs += [(task, d.text) for d in sources.read_files(spec.files(), spec.text_fn)
             if isinstance(d, sources.Document)]
  return docs


def _edit(text: str, rng: random.Random, rate: float) -> str:
  words = text.split(" ")
  out = []
  for word in words:
    roll = rng.random()
    if roll < rate / 3:
      continue  # Deleted.
    out.append(rng.choice(words) if roll < 2 * rate / 3 else word)
    if 2 * rate / 3 <= roll < rate:
      out.append(rng.choice(words))  # Inserted.
  return " ".join(out)


def scaled(docs: list[tuple[str, str]], copies: int) -> list[tuple[str, str]]:
  """The corpus and `copies - 1` altered copies of it (see the module docstring)."""
  rng = random.Random(0)
  out = list(docs)
  for copy in range(1, copies):
    for task, text in docs:
      if copy % 2:
        out.append((task, _edit(text, rng, 0.08)))
      else:
        out.append((task, " ".join(text.upper().split()) if rng.random() < 0.5 else text + "\n"))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--copies", type=int, default=3)
  parser.add_argument("--levels", default="exact,near")
  parser.add_argument("--near_method", default="minhash", choices=params.NEAR_METHODS)
  args = parser.parse_args()

  docs = scaled(demo_documents(), args.copies)
  total_mb = sum(len(text.encode("utf-8")) for _, text in docs) / 1e6
  print(f"corpus: {len(docs):,} documents, {total_mb:.1f} MB ({args.copies} copies of the demo "
        "corpus)")
  dedup = deduplicator.Deduplicator(params.DedupParams(
      levels=tuple(args.levels.split(",")), near_method=args.near_method))
  removed = collections.Counter()
  cpu0, wall0 = time.process_time(), time.perf_counter()
  for start in range(0, len(docs), dedup_batch.BATCH_DOCS):
    batch = docs[start:start + dedup_batch.BATCH_DOCS]
    for (task, _), fp in zip(batch, dedup.fingerprint([text for _, text in batch])):
      verdict = dedup.decide(fp, str(start), task)
      if not verdict.kept:
        removed[verdict.match.level] += 1
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
  print(f"removed {sum(removed.values()):,} documents: {dict(removed)}")
  print(f"cpu {cpu:.2f} s, wall {wall:.2f} s (texts in memory; JSON parsing and file I/O "
        "not timed; one process, one core)")
  print(f"docs_per_s={len(docs) / cpu:.0f} mb_per_s={total_mb / cpu:.2f}")


if __name__ == "__main__":
  main()
