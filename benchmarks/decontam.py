"""Decontamination speed: index build time and scan throughput per core.

    python -m benchmarks.decontam [--benchmarks=gsm8k,...] [--max_mb=40]

Builds the n-gram index for the benchmark suite from scratch (into a
temporary cache; parsed benchmark items come from the normal cache), then
scans real text in batches on one process: the CPython standard library
(code and docstrings) plus web and encyclopedia prose shipped by the
`llamafactory` sdist and the `evals` wheel. Throughput is MB of UTF-8 text per
second of this process's CPU time, i.e. per core; wall-clock figures are
printed too. The last line is `mb_per_s=X`.
"""
import argparse
import json
import os
import sysconfig
import tarfile
import tempfile
import time
import zipfile

from midtrain_jax import cache
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.decontam import decontaminator as decontam
from midtrain_jax.decontam import index as decontam_index
from midtrain_jax.decontam import params

_CHUNK = 4000  # Characters per document, about a web page.


def stdlib_docs():
  """CPython standard library sources, cut into page-sized documents."""
  root = sysconfig.get_paths()["stdlib"]
  docs = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d not in (
        "site-packages", "dist-packages", "__pycache__"))
    for name in sorted(files):
      if name.endswith(".py"):
        with open(os.path.join(folder, name), encoding="utf-8",
                  errors="replace") as f:
          text = f.read()
        docs += [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)]
  return docs


def prose_docs():
  """C4, Wikipedia and OpenWebText snippets from packaged data."""
  docs = []
  with tarfile.open(cache.fetch_package_archive(
      "llamafactory", "0.9.5", sdist=True)) as tar:
    lines = tar.extractfile("llamafactory-0.9.5/data/c4_demo.jsonl").read()
    docs += [json.loads(l)["text"] for l in lines.splitlines() if l.strip()]
    wiki = tar.extractfile("llamafactory-0.9.5/data/wiki_demo.txt").read()
    wiki = wiki.decode("utf-8")
    docs += [wiki[i:i + _CHUNK] for i in range(0, len(wiki), _CHUNK)]
  with zipfile.ZipFile(cache.fetch_package_archive("evals",
                                                   "3.0.1.post1")) as wheel:
    for member in ("wikipedia_5.jsonl", "owt_5.jsonl"):
      data = wheel.read(f"evals/registry/data/schelling_point/{member}")
      docs += [json.loads(l)["0"] for l in data.splitlines() if l.strip()]
  return docs


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--benchmarks", default=",".join(benchmarks.DEFAULT_SUITE))
  parser.add_argument("--max_mb", type=float, default=40.0,
                      help="stop scanning after this much text")
  parser.add_argument("--batch_docs", type=int, default=256)
  args = parser.parse_args()
  names = args.benchmarks.split(",")

  items = {n: benchmarks.load_items(n) for n in names}
  print(f"benchmarks: {sum(map(len, items.values())):,} items in "
        f"{len(names)} benchmarks")
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    index = decontam_index.build_index(items, params.DecontamParams())
    build_s = time.perf_counter() - start
    path = os.path.join(tmp, "index.npz")
    index.save(path)
    size_mb = os.path.getsize(path) / 1e6
    start = time.perf_counter()
    deco = decontam.Decontaminator.from_index_file(path)
    load_s = time.perf_counter() - start
  entries = sum(t.hashes.size for t in index.tables)
  print(f"index build: {build_s:.2f} s for {index.num_items:,} items, "
        f"{entries:,} n-gram entries, {size_mb:.1f} MB on disk; "
        f"reload {load_s:.2f} s")

  corpora = {"stdlib code": stdlib_docs(), "prose": prose_docs()}
  total_mb, total_cpu = 0.0, 0.0
  for name, docs in corpora.items():
    budget = args.max_mb * 1e6 / len(corpora)
    used, hits, n_docs = 0, 0, 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(0, len(docs), args.batch_docs):
      batch = docs[i:i + args.batch_docs]
      hits += sum(len(h) for h in deco.check_batch(batch))
      used += sum(len(d.encode("utf-8")) for d in batch)
      n_docs += len(batch)
      if used >= budget:
        break
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"scan {name}: {used / 1e6:.1f} MB in {n_docs:,} docs, "
          f"{used / 1e6 / cpu:.1f} MB/s per core (cpu {cpu:.2f} s, "
          f"wall {wall:.2f} s), {hits} hits")
    total_mb += used / 1e6
    total_cpu += cpu
  print(f"mb_per_s={total_mb / total_cpu:.2f}")


if __name__ == "__main__":
  main()
