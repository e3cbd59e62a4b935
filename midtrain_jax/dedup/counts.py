"""Deduplication counters: one set of names for `prepare`, the batch command and Beam.

Flat names in a `collections.Counter`, so partial counts (per shard, per Beam
bundle, per task) add up:

  docs                  documents decided
  bytes                 their UTF-8 bytes
  kept_docs             documents kept
  removed_docs          documents removed (duplicates, and reference matches
                        in reference mode "drop")
  removed_bytes         their UTF-8 bytes
  duplicates/<level>    removed as a copy of a kept document, by level
                        (exact, near, code, semantic)
  cross_task            of those, copies of a document of another task
  reference/<level>     matched the reference set, by level (removed or only
                        counted, per the reference mode)
  malformed             unreadable records (broken JSON, no text, bad UTF-8;
                        the batch command lists each with its file and line)
  skipped_comparisons   comparisons the bucket cap (`max_bucket`) skipped: per
                        document, the members of its buckets it was not
                        compared with (each uncompared pair counted at both
                        documents), and the reference documents of its
                        buckets beyond the anchors (0: none; then absent, as
                        is the next)
  capped_inserts        bucket memberships beyond a bucket's anchors
"""
import collections
from collections.abc import Mapping

from midtrain_jax.dedup.deduplicator import Verdict
from midtrain_jax.dedup.params import LEVELS

SUMMARY_COLUMNS = ("task", "level", "docs", "kept_docs", "removed_docs", "duplicates",
                   "cross_task", "reference", "malformed", "skipped_comparisons")


def document_counts(verdict: Verdict, nbytes: int) -> collections.Counter:
  """The counts one decided document adds.

  Args:
    verdict: the decision on it.
    nbytes: its UTF-8 size.

  Returns:
    A Counter with the names of the module docstring.
  """
  counts = collections.Counter(docs=1, bytes=nbytes)
  counts["kept_docs" if verdict.kept else "removed_docs"] = 1
  if not verdict.kept:
    counts["removed_bytes"] = nbytes
  # Only when the cap acted: counts (and stats.json) of uncapped runs stay as they were.
  if verdict.skipped:
    counts["skipped_comparisons"] = verdict.skipped
  if verdict.capped:
    counts["capped_inserts"] = verdict.capped
  match = verdict.match
  if match is not None and match.reference:
    counts[f"reference/{match.level}"] = 1
  elif match is not None:
    counts[f"duplicates/{match.level}"] = 1
    if match.task != verdict.task:
      counts["cross_task"] = 1
  return counts


def by_level(counts: Mapping[str, int], kind: str = "duplicates") -> dict[str, int]:
  """{level: count} of `kind` ("duplicates" or "reference"), levels in LEVELS order."""
  return {level: counts[f"{kind}/{level}"] for level in LEVELS if counts.get(f"{kind}/{level}")}


def summary_rows(by_task: Mapping[str, Mapping[str, int]]) -> list[dict]:
  """Task x level rows: a "*" row of totals per task, then one per level found."""
  rows = []
  for task, counts in sorted(by_task.items()):
    duplicates, reference = by_level(counts), by_level(counts, "reference")
    rows.append({"task": task, "level": "*", "docs": counts.get("docs", 0),
                 "kept_docs": counts.get("kept_docs", 0),
                 "removed_docs": counts.get("removed_docs", 0),
                 "duplicates": sum(duplicates.values()),
                 "cross_task": counts.get("cross_task", 0),
                 "reference": sum(reference.values()), "malformed": counts.get("malformed", 0),
                 "skipped_comparisons": counts.get("skipped_comparisons", 0)})
    for level in LEVELS:
      if level in duplicates or level in reference:
        rows.append({"task": task, "level": level, "duplicates": duplicates.get(level, 0),
                     "reference": reference.get(level, 0)})
  return rows


def format_table(rows: list[dict]) -> str:
  """The summary rows as an aligned text table."""
  table = [SUMMARY_COLUMNS] + [tuple(str(r.get(c, "")) for c in SUMMARY_COLUMNS) for r in rows]
  widths = [max(len(r[i]) for r in table) for i in range(len(SUMMARY_COLUMNS))]
  return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)
