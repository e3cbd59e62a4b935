"""Plain-text tables of evaluation results (what the CLIs and the demo print)."""
import json
import os


def _fmt(value, digits: int = 3) -> str:
  return "-" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN.


def format_results(results: dict) -> str:
  """One checkpoint's results as a short multi-line summary."""
  lines = [f"checkpoint {results['checkpoint']} (step {results['step']})"]
  if "capability_bpb" in results:
    caps = results["capability_bpb"]
    lines.append("  held-out BPB  " + "  ".join(f"{c} {_fmt(v)}" for c, v in sorted(caps.items())))
  if "benchmark_bpb" in results:
    lines.append("  benchmark BPB " + "  ".join(
        f"{n} {_fmt(r['bpb'])}" for n, r in results["benchmark_bpb"].items()))
  for name, r in results.get("generative", {}).items():
    lines.append(f"  {name} {r['metric']} {_fmt(r['score'])} ({r['items']} items)")
  if "forgetting" in results:
    f = results["forgetting"]
    lines.append(f"  forgetting: web BPB {_fmt(f['web_bpb'])} vs base {_fmt(f['base_web_bpb'])}"
                 f" (delta {f['delta_web_bpb']:+.3f})")
  return "\n".join(lines)


def comparison_rows(named: dict[str, dict], baseline: str) -> list[dict]:
  """Per-capability BPB deltas of each run against `baseline`.

  Args:
    named: {run name: evaluation results with capability_bpb (and forgetting)}.
    baseline: the name of the baseline run in `named`.

  Returns:
    One dict per run: name, per-capability BPB, `delta/<capability>` against
    the baseline (negative = better), benchmark BPB deltas and forgetting.
  """
  if baseline not in named:
    raise ValueError(f"Baseline {baseline!r} is not among the runs {sorted(named)}.")
  base = named[baseline]
  rows = []
  for name, res in named.items():
    row = {"run": name}
    for cap, v in res.get("capability_bpb", {}).items():
      row[f"bpb/{cap}"] = v
      row[f"delta/{cap}"] = v - base["capability_bpb"].get(cap, float("nan"))
    for bench, r in res.get("benchmark_bpb", {}).items():
      row[f"delta_bench/{bench}"] = r["bpb"] - base["benchmark_bpb"][bench]["bpb"]
    if "forgetting" in res:
      row["forgetting"] = res["forgetting"]["delta_web_bpb"]
    rows.append(row)
  return rows


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
  """Rows of dicts as an aligned text table (numbers to 3 decimals)."""
  columns = columns or [k for k in rows[0] if k != "run"]
  header = ["run"] + columns
  cells = [[str(r["run"])] + [
      (f"{r[c]:+.3f}" if c.startswith(("delta", "forgetting")) and r[c] == r[c] else _fmt(r[c]))
      if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in columns] for r in rows]
  widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
  out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
  out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
  return "\n".join(out)


def decontamination_summary(data_dir: str) -> list[dict]:
  """Per task of a prepared data folder: benchmarks checked and documents removed.

  Args:
    data_dir: a folder written by `data.prepare` (with manifest.json).

  Returns:
    One dict per task: task, capability, train_docs, dropped, cut, hits
    ({benchmark: documents}), benchmarks.
  """
  manifest_path = os.path.join(data_dir, "manifest.json")
  if not os.path.exists(manifest_path):
    raise FileNotFoundError(f"{data_dir} is not a prepared data folder (no manifest.json).")
  with open(manifest_path) as f:
    tasks = json.load(f)["tasks"]
  rows = []
  for task in sorted(tasks):
    with open(os.path.join(data_dir, task, "stats.json")) as f:
      s = json.load(f)
    rows.append({"task": task, "capability": s["capability"], "train_docs": s["train_docs"],
                 "dropped": s["decontam_dropped"], "cut": s["decontam_cut"],
                 "hits": s["decontam_hits"], "benchmarks": s["decontam_benchmarks"]})
  return rows


def format_decontamination(rows: list[dict]) -> str:
  """The decontamination summary as text lines."""
  checked = sorted({b for r in rows for b in r["benchmarks"]})
  if not checked:
    return "decontamination: off (set data.decontam.benchmarks)"
  lines = [f"decontamination against {', '.join(checked)}:"]
  for r in rows:
    hits = ", ".join(f"{b} {n}" for b, n in sorted(r["hits"].items())) or "none"
    lines.append(f"  {r['task']:<26} kept {r['train_docs']:>6} docs, dropped {r['dropped']:>4},"
                 f" cut {r['cut']:>4} (hits: {hits})")
  return "\n".join(lines)
