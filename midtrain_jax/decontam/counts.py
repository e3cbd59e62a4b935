"""Decontamination counters: one set of names for `prepare`, the batch command and Beam.

Counts are flat names in a `collections.Counter`, so partial counts (per
shard, per Beam bundle) just add up:

  docs                 documents scanned
  contaminated_docs    documents with at least one hit
  dropped_docs         documents removed whole (mode "drop", or nothing left after a cut)
  cut_docs, cut_chars  documents kept with matched spans cut out, and the characters cut
  hits/<benchmark>     hits of that benchmark's items
  docs/<benchmark>     documents with a hit of that benchmark
"""
import collections
from collections.abc import Mapping, Sequence

_TOTALS = ("docs", "contaminated_docs", "dropped_docs", "cut_docs", "cut_chars")
SUMMARY_COLUMNS = ("task", "benchmark", "docs", "contaminated_docs", "hits", "dropped_docs",
                   "cut_docs", "cut_chars")


def document_counts(text: str, cleaned: str | None, hits: Sequence) -> collections.Counter:
  """The counts one scanned document adds (`cleaned` None = dropped)."""
  counts = collections.Counter(docs=1)
  if hits:
    counts["contaminated_docs"] = 1
  for hit in hits:
    counts[f"hits/{hit.benchmark}"] += 1
  for benchmark in {hit.benchmark for hit in hits}:
    counts[f"docs/{benchmark}"] += 1
  if cleaned is None:
    counts["dropped_docs"] = 1
  elif cleaned != text:
    counts["cut_docs"] = 1
    counts["cut_chars"] = len(text) - len(cleaned)
  return counts


def hits_by_benchmark(counts: Mapping[str, int]) -> dict[str, int]:
  """{benchmark: hits} from flat counts."""
  return {k.split("/", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("hits/")}


def summary_rows(by_task: Mapping[str, Mapping[str, int]]) -> list[dict]:
  """Task x benchmark rows: one "*" row of totals per task, then one per benchmark hit."""
  rows = []
  for task, counts in sorted(by_task.items()):
    rows.append({"task": task, "benchmark": "*", "hits": sum(hits_by_benchmark(counts).values()),
                 **{k: counts.get(k, 0) for k in _TOTALS}})
    for benchmark, n in hits_by_benchmark(counts).items():
      rows.append({"task": task, "benchmark": benchmark, "hits": n,
                   "docs": counts.get(f"docs/{benchmark}", 0)})
  return rows
