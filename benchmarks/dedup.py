"""Deduplication speed: exact + near (MinHash LSH) on the demo corpus scaled up, one core.

    python -m benchmarks.dedup [--copies=3] [--levels=exact,near] [--near_method=minhash]
    python -m benchmarks.dedup --corpus=hot [--docs=20000] [--max_bucket=0]
    python -m benchmarks.dedup --semantic [--corpus=hot --docs=6000]
    python -m benchmarks.dedup --sequential [--copies=3]
    python -m benchmarks.dedup --worker_memory [--sizes=5000,20000,80000]

The demo corpus (midtrain_jax/data/corpora/demo, about 12 MB of web,
encyclopedia, code, Q/A, instructions, generated math and traces) is read
once and scaled up: copy 0 is the corpus, odd copies have about 8% of the
words of each document edited (near duplicates), even copies differ in case
and white space only (exact duplicates). Every document goes through the
Deduplicator in batches (fingerprints, then the keep decision), as prepare and
the batch command run it. Throughput is MB of UTF-8 text per second of this
process's CPU time with one thread, i.e. per core.

`--corpus=hot` is the case buckets are capped for: `--docs` documents that
share one 150-word header (a licence, a template) and have 250 words of their
own drawn from the demo corpus' words (Jaccard ~0.23: all distinct), then an
edited copy (5% of the words) of every 10th. Some band keys of every document
come from the header alone, so a few buckets collect a large share of the
corpus; `--max_bucket=0` (unbounded) against the default cap shows the
scaling, with the largest bucket and the comparisons the cap skipped.
`--semantic` embeds the corpus (hashed bag of words, order-blind) with a
word-shuffled copy of every 10th document (the hot corpus: instead of edited
ones), and times the semantic index against the all-pairs scan it replaced,
with the recall of its decisions.

`--sequential` times the decision alone (fingerprints computed first, not
timed) on the same corpus two ways: `components.resolve` (components over
verified pairs, union-find) and the sequential decision it replaced (each
document in key order against the kept ones, exact then MinHash LSH: that
rule re-implemented here over the same indices), with the documents each
removes. `--worker_memory` runs `beam_components.Resolve` on Beam's
FnApiRunner with 2 worker processes over synthetic corpora of `--sizes`
documents (made on the workers: 400 random words each from a 20,000-word
vocabulary, every 10th followed by a 5%-edited copy of one, every 50th by an
exact copy), each size in a fresh process, and prints the peak resident memory
of the largest worker process (and of the runner process, which holds the
FnApiRunner's in-memory shuffle: a runner such as Dataflow keeps that on its
shuffle service).

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
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import dedup_beam_memory as beam_memory  # noqa: E402
from midtrain_jax.data.mixtures import catalog  # noqa: E402
from midtrain_jax.data.mixtures.corpora import demo  # noqa: E402
from midtrain_jax.dedup import batch as dedup_batch  # noqa: E402
from midtrain_jax.dedup import components, deduplicator, exact, minhash, params, semantic  # noqa
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


def hot_corpus(n: int, shuffle_copies: bool = False) -> list[tuple[str, str]]:
  """(task, text): one shared header, own words, then copies (see the module docstring)."""
  rng = random.Random(1)
  vocabulary = [w for _, text in demo_documents()[:3000] for w in text.split()]
  header = " ".join(rng.choice(vocabulary) for _ in range(150))
  docs = [("hot", header + "\n\n" + " ".join(rng.choice(vocabulary) for _ in range(250)))
          for _ in range(n)]
  for _, text in docs[::10]:
    if shuffle_copies:
      words = text.split()
      rng.shuffle(words)
      docs.append(("hot", " ".join(words)))
    else:
      docs.append(("hot", _edit(text, rng, 0.05)))
  return docs


def shuffled_copies(docs: list[tuple[str, str]]) -> list[tuple[str, str]]:
  """The documents, then a word-shuffled copy of every 10th (a semantic duplicate)."""
  rng = random.Random(2)
  copies = []
  for task, text in docs[::10]:
    words = text.split()
    rng.shuffle(words)
    copies.append((task, " ".join(words)))
  return docs + copies


def hashed_embedder(texts):
  """Sublinear counts of hashed words of 4+ letters, 1024 dims: order-blind, deterministic."""
  out = np.zeros((len(texts), 1024), np.float32)
  for i, text in enumerate(texts):
    for word in re.findall(r"[a-z]{4,}", text.lower()):
      out[i, zlib.crc32(word.encode()) % 1024] += 1
  return np.log1p(out)


def semantic_check(docs: list[tuple[str, str]]) -> None:
  """Times the semantic index against the all-pairs scan; prints the recall of its decisions."""
  vectors = semantic.embed(hashed_embedder, [text for _, text in docs])
  timings, decisions, index = {}, {}, None
  for name in ("all_pairs", "index"):
    cpu0 = time.process_time()
    if name == "index":
      index = semantic.SemanticIndex(0.95, params.DedupParams().max_bucket)
      keys = semantic.band_keys(vectors, index.bands).tolist()  # As fingerprint() does.
    kept, found = np.zeros((len(vectors), vectors.shape[1]), np.float32), []
    size, kept_docs = 0, []  # Kept position -> document number.
    for i, v in enumerate(vectors):
      if name == "index":
        hit = index.query(v, keys[i])
      else:
        scores = kept[:size] @ v  # The scan the index replaced: every kept document.
        best = int(np.argmax(scores)) if size else -1
        hit = (best, float(scores[best])) if size and scores[best] >= 0.95 else None
      found.append(None if hit is None else kept_docs[hit[0]])
      if hit is None:
        kept_docs.append(i)
        if name == "index":
          index.insert(v, keys[i])
        kept[size] = v
        size += 1
    timings[name], decisions[name] = time.process_time() - cpu0, found
  reference = [i for i, d in enumerate(decisions["all_pairs"]) if d is not None]
  recall = np.mean([decisions["index"][i] is not None for i in reference])
  same = sum((a is None) == (b is None) for a, b in zip(decisions["index"],
                                                       decisions["all_pairs"]))
  target = sum(a == b for a, b in zip(decisions["index"], decisions["all_pairs"])
               if a is not None and b is not None)
  print(f"semantic: {len(docs):,} documents, {len(reference):,} duplicates by the all-pairs "
        f"scan; index recall {recall:.4f}, same keep decision {same}/{len(docs)}, same "
        f"document matched {target}/{len(reference)} (the index picks the most similar "
        "candidate, the scan the most similar of all)")
  print(f"all-pairs scan {timings['all_pairs']:.2f} s cpu, index {timings['index']:.2f} s cpu "
        f"(speedup {timings['all_pairs'] / timings['index']:.1f}x); index scored "
        f"{index.compared:,} embeddings, largest bucket {index.buckets.largest}, "
        f"skipped {index.buckets.skipped:,}")


def fingerprint(docs: list[tuple[str, str]], settings: params.DedupParams
                ) -> list[components.Item]:
  """Items of the documents, keyed by their position (the first copy is the best)."""
  dedup = deduplicator.Deduplicator(settings)
  items = []
  for start in range(0, len(docs), dedup_batch.BATCH_DOCS):
    batch = docs[start:start + dedup_batch.BATCH_DOCS]
    items += [components.Item((start + i,), str(start + i), task, fp) for i, ((task, _), fp)
              in enumerate(zip(batch, dedup.fingerprint([text for _, text in batch])))]
  return items


def sequential_decide(items: list[components.Item], settings: params.DedupParams) -> int:
  """The decision components.py replaced (exact and MinHash levels): each document in key
  order against the documents kept so far; returns how many it removes."""
  exact_index = exact.KeyIndex()
  lsh = minhash.LSHIndex(settings.jaccard, settings.num_perm, settings.max_bucket)
  removed = kept = 0
  for item in sorted(items, key=lambda it: it.key):
    fp = item.fp
    if exact_index.query(fp.exact) or (
        fp.signature is not None and lsh.query(fp.signature, list(fp.band_keys))):
      removed += 1
      continue
    exact_index.insert(fp.exact, kept)
    if fp.signature is not None:
      lsh.insert(fp.signature, list(fp.band_keys))
    kept += 1
  return removed


def compare_sequential(docs: list[tuple[str, str]], settings: params.DedupParams) -> None:
  """Times resolve against the sequential decision on the same fingerprints."""
  if settings.levels != ("exact", "near") or settings.near_method != "minhash":
    raise SystemExit("--sequential compares the exact and MinHash levels: "
                     "--levels=exact,near --near_method=minhash")
  cpu0 = time.process_time()
  items = fingerprint(docs, settings)
  print(f"fingerprints: {time.process_time() - cpu0:.2f} s cpu (not in the times below)")
  timings, removed = {}, {}
  for name in ("sequential", "components"):
    cpu0 = time.process_time()
    if name == "sequential":
      removed[name] = sequential_decide(items, settings)
    else:
      removed[name] = sum(not v.kept for v in components.resolve(items, settings).values())
    timings[name] = time.process_time() - cpu0
    print(f"{name}: decided {len(items):,} documents in {timings[name]:.2f} s cpu "
          f"({len(items) / timings[name]:,.0f} docs/s), {removed[name]:,} removed")
  print(f"components / sequential time: {timings['components'] / timings['sequential']:.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--copies", type=int, default=3)
  parser.add_argument("--levels", default="exact,near")
  parser.add_argument("--near_method", default="minhash", choices=params.NEAR_METHODS)
  parser.add_argument("--corpus", default="demo", choices=("demo", "hot"))
  parser.add_argument("--docs", type=int, default=20000, help="Documents of the hot corpus.")
  parser.add_argument("--max_bucket", type=int, default=params.DedupParams().max_bucket,
                      help="Bucket cap; 0: unbounded (as before the cap).")
  parser.add_argument("--semantic", action="store_true",
                      help="Semantic index vs the all-pairs scan on the hot corpus.")
  parser.add_argument("--sequential", action="store_true",
                      help="Time components.resolve against the sequential decision.")
  parser.add_argument("--worker_memory", action="store_true",
                      help="Peak memory per Beam worker of Resolve vs corpus size.")
  parser.add_argument("--sizes", default="5000,20000,80000",
                      help="Corpus sizes (documents) of --worker_memory.")
  parser.add_argument("--beam_workers", type=int, default=2,
                      help="Worker processes of --worker_memory.")
  parser.add_argument("--one_size", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.one_size:
    print(json.dumps(beam_memory.run_once(args.one_size, args.beam_workers)))
    return
  if args.worker_memory:
    beam_memory.report([int(n) for n in args.sizes.split(",")], args.beam_workers)
    return

  if args.semantic:
    semantic_check(hot_corpus(args.docs, shuffle_copies=True) if args.corpus == "hot"
                   else shuffled_copies(demo_documents()))
    return
  if args.corpus == "hot":
    docs, what = hot_corpus(args.docs), "a shared header: hot buckets"
  else:
    docs, what = scaled(demo_documents(), args.copies), f"{args.copies} copies of the demo corpus"
  total_mb = sum(len(text.encode("utf-8")) for _, text in docs) / 1e6
  print(f"corpus: {len(docs):,} documents, {total_mb:.1f} MB ({what})")
  settings = params.DedupParams(levels=tuple(args.levels.split(",")),
                                near_method=args.near_method, max_bucket=args.max_bucket)
  if args.sequential:
    compare_sequential(docs, settings)
    return
  cpu0, wall0 = time.process_time(), time.perf_counter()
  items = fingerprint(docs, settings)
  verdicts = components.resolve(items, settings)
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
  removed = collections.Counter(v.match.level for v in verdicts.values() if not v.kept)
  print(f"removed {sum(removed.values()):,} documents: {dict(removed)}")
  largest = max(collections.Counter(k for it in items for k in it.fp.band_keys or ()).values(),
                default=0)
  held = min(largest, args.max_bucket) if args.max_bucket else largest
  print(f"max_bucket={args.max_bucket}: largest bucket given {largest:,} documents, compared "
        f"with its first {held:,}; {sum(v.skipped for v in verdicts.values()):,} comparisons "
        "skipped by the cap (each uncompared pair counted at both documents)")
  print(f"cpu {cpu:.2f} s, wall {wall:.2f} s (texts in memory; JSON parsing and file I/O "
        "not timed; one process, one core)")
  print(f"docs_per_s={len(docs) / cpu:.0f} mb_per_s={total_mb / cpu:.2f}")


if __name__ == "__main__":
  main()
