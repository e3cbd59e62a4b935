"""Scanning the suite's documents: recall per edit kind and benchmark, false positives."""
import dataclasses
from collections.abc import Sequence

from benchmarks.decontam_harness.cases import Case


@dataclasses.dataclass
class Report:
  """Outcome of scanning the suite.

  Attributes:
    found: {(kind, benchmark): [found, total]} over planted documents.
    flagged: {(kind, source): [flagged, total]} over clean documents.
    misses: planted cases whose item was not found.
    false_hits: (clean case, its hits).
  """
  found: dict = dataclasses.field(default_factory=dict)
  flagged: dict = dataclasses.field(default_factory=dict)
  misses: list = dataclasses.field(default_factory=list)
  false_hits: list = dataclasses.field(default_factory=list)

  def recall(self, kind: str | None = None, benchmark: str | None = None
             ) -> float:
    """Share of planted documents (of a kind and/or benchmark) found."""
    return _ratio(self.found, kind, benchmark)

  def false_positive_rate(self, kind: str | None = None) -> float:
    """Share of clean documents (of a kind) with any hit."""
    return _ratio(self.flagged, kind, None)


def _ratio(table, kind, benchmark) -> float:
  rows = [v for (k, b), v in table.items()
          if kind in (None, k) and benchmark in (None, b)]
  total = sum(v[1] for v in rows)
  return sum(v[0] for v in rows) / total if total else float("nan")


def evaluate(deco, cases: Sequence[Case], batch_docs: int = 256) -> Report:
  """Scans the cases with `deco.check_batch` and tallies the outcome.

  A planted document counts as found when a hit names its item.
  """
  report = Report()
  for i in range(0, len(cases), batch_docs):
    batch = cases[i:i + batch_docs]
    for case, hits in zip(batch, deco.check_batch([c.text for c in batch])):
      if case.planted:
        ok = any(h.benchmark == case.benchmark and h.item_id == case.item_id
                 for h in hits)
        row = report.found.setdefault((case.kind, case.benchmark), [0, 0])
        if not ok:
          report.misses.append(case)
      else:
        ok = bool(hits)
        row = report.flagged.setdefault((case.kind, case.benchmark), [0, 0])
        if ok:
          report.false_hits.append((case, hits))
      row[0] += ok
      row[1] += 1
  return report


def format_report(report: Report) -> str:
  """Recall per kind x benchmark, then false positives per clean source."""
  kinds = list(dict.fromkeys(k for k, _ in report.found))
  names = list(dict.fromkeys(b for _, b in report.found))
  width = max([len(k) for k in kinds] + [20])
  lines = [" " * width + "".join(f"{n[:9]:>10}" for n in names) + "       all"]
  for kind in kinds:
    cells = [f"{report.recall(kind, n):>10.3f}" if (kind, n) in report.found
             else f"{'-':>10}" for n in names]
    total = sum(v[1] for (k, _), v in report.found.items() if k == kind)
    lines.append(f"{kind:<{width}}" + "".join(cells)
                 + f"{report.recall(kind):>10.3f}  (n={total})")
  lines.append(f"{'all':<{width}}" + "".join(
      f"{report.recall(None, n):>10.3f}" for n in names)
               + f"{report.recall():>10.3f}")
  lines.append("false positives (documents flagged / documents):")
  for (kind, source), (bad, total) in report.flagged.items():
    lines.append(f"  {kind:<{width}} {source:<14} {bad:>4} / {total}")
  return "\n".join(lines)


def _counts(table: dict, kind: str) -> tuple[int, int]:
  rows = [v for (k, _), v in table.items() if k == kind]
  return sum(v[0] for v in rows), sum(v[1] for v in rows)


def format_side_by_side(reports: dict[str, Report]) -> str:
  """Recall per edit kind and false-positive rate per clean kind, one column per split.

  Args:
    reports: {split name: its report}, e.g. {"tune": ..., "test": ...}.

  Returns:
    The table: recall (found / planted) per edit kind, then the share of
    clean documents flagged per clean-text kind, then both over everything.
  """
  names = list(reports)
  head = lambda title: f"{title:<30}" + "".join(f"{n:>22}" for n in names)
  cell = lambda found, total: f"{found / total if total else float('nan'):>8.4f} " + (
      f"({found}/{total})".rjust(13))
  lines = [head("recall per edit kind")]
  for table, title in (("found", None), ("flagged", "false positives per clean kind")):
    if title:
      lines.append(head(title))
    kinds = list(dict.fromkeys(k for r in reports.values() for k, _ in getattr(r, table)))
    for kind in kinds:
      lines.append(f"  {kind:<28}" + "".join(
          cell(*_counts(getattr(r, table), kind)) for r in reports.values()))
    totals = [(sum(v[0] for v in getattr(r, table).values()),
               sum(v[1] for v in getattr(r, table).values())) for r in reports.values()]
    lines.append(f"  {'all':<28}" + "".join(cell(*t) for t in totals))
  return "\n".join(lines)
