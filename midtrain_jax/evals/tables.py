"""Plain-text tables of evaluation results (what the CLIs and the demo print).

Benchmark scores print as `value ± ci95` (the 95% bootstrap interval over
items, `stats.py`) with their item and subject counts and whether the score is
a micro or a macro average; a change between two runs prints as
`delta ± ci95 *`, where the interval is the paired one over the items both
runs scored and `*` marks an interval that excludes zero (`SIGNIFICANCE_LEGEND`).
"""
from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import layout
from midtrain_jax.evals import signal_noise, stats

SIGNIFICANCE_LEGEND = ("± = 95% interval, paired bootstrap over the items both runs scored; "
                       "* = it excludes zero (a difference beyond item sampling noise)")
# Row keys that hold the interval, the verdict and the common items of a delta column.
_CI, _SIG, _N = "ci95/", "sig/", "n/"


def _fmt(value, digits: int = 3) -> str:
  return "-" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN.


def plus_minus(value, ci, digits: int = 3, signed: bool = False) -> str:
  """`value ± ci` ("-" for a missing value; the bare value when there is no interval)."""
  if value is None or value != value:
    return "-"
  text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
  return text if ci is None or ci != ci else f"{text} ± {ci:.{digits}f}"


def _counts(r: dict) -> str:
  n = r.get("n_items", r.get("items"))
  subsets = r.get("subsets")
  text = f"{n} items" if subsets is None else \
      f"{n} items, {subsets} subject{'s' if subsets != 1 else ''}"
  # How the score averages them (results written before this field say nothing).
  return f"{text}; {r['average'].split(' over ')[0]}" if r.get("average") else text


def contamination_text(r: dict) -> str:
  """One benchmark's clean / contaminated split ("" when unknown or nothing was found)."""
  record = r.get("contamination")
  if record is None or record["status"] != "recorded":
    return ""
  clean, dirty = r["clean"], r["contaminated"]
  if not dirty["n_items"] and not record.get("removed"):
    return ""
  text = f"clean {plus_minus(clean['value'], clean['ci95'])} ({clean['n_items']})"
  if dirty["n_items"]:
    text += f" | contaminated {plus_minus(dirty['value'], dirty['ci95'])} ({dirty['n_items']})"
  if record.get("removed"):
    text += f" | {record['removed']} found in the data and removed"
  return text


def contamination_summary(scored: dict[str, dict]) -> list[str]:
  """Lines naming the benchmarks without contaminated items, and those without a record.

  Args:
    scored: {benchmark: result} (benchmark BPB and generative results).

  Returns:
    One line for the benchmarks whose record shows none of their scored items
    in the training data, one per reason for those whose record is unknown.
  """
  clean, by_reason = [], {}
  for name, r in scored.items():
    record = r.get("contamination")
    if record is None:
      continue
    if record["status"] != "recorded":
      by_reason.setdefault(record["reason"], []).append(name)
    elif not r["contaminated"]["n_items"]:
      clean.append(name)
  lines = []
  if clean:
    lines.append(f"contamination: no scored item of {', '.join(clean)} is in the training "
                 "data (as prepare recorded it)")
  lines += [f"contamination unknown for {', '.join(names)}: {reason}"
            for reason, names in by_reason.items()]
  return lines


def format_results(results: dict) -> str:
  """One checkpoint's results as a short multi-line summary."""
  lines = [f"checkpoint {results['checkpoint']} (step {results['step']})"]
  if "capability_bpb" in results:
    caps = results["capability_bpb"]
    lines.append("  held-out BPB  " + "  ".join(f"{c} {_fmt(v)}" for c, v in sorted(caps.items())))
  bench = results.get("benchmark_bpb", {})
  if bench:
    lines.append("  benchmark BPB of gold answers (± 95% bootstrap interval over items):")
    for name, r in bench.items():
      lines.append(f"    {name:<14}{plus_minus(r['bpb'], r.get('ci95')):<16}"
                   f"{'(' + _counts(r) + ')':<26}{contamination_text(r)}".rstrip())
  for name, r in results.get("generative", {}).items():
    lines.append(f"  {name} {r['metric']} {plus_minus(r['score'], r.get('ci95'))} "
                 f"({_counts(r)})  {contamination_text(r)}".rstrip())
  scored = {**bench, **results.get("generative", {})}
  lines += [f"  {line}" for line in contamination_summary(scored)]
  if "forgetting" in results:
    f = results["forgetting"]
    lines.append(f"  forgetting: web BPB {_fmt(f['web_bpb'])} vs base {_fmt(f['base_web_bpb'])}"
                 f" (delta {f['delta_web_bpb']:+.3f})")
  return "\n".join(lines)


def _paired(row: dict, column: str, result: dict, base: dict, bench: str) -> None:
  # The items were sampled per subject: the paired bootstrap resamples within subjects.
  subsets = {i: benchmarks.subset_of_id(bench, i) for i in result}
  paired = stats.paired_delta(result, base, subsets=subsets)
  row[column] = float("nan") if paired["delta"] is None else paired["delta"]
  row[_CI + column] = paired["ci95"]
  row[_SIG + column] = paired["significant"]
  row[_N + column] = paired["n_common"]


def _contaminated_ids(result: dict) -> set[str] | None:
  record = result.get("contamination", {})
  return set(record.get("contaminated_ids", ())) if record.get("status") == "recorded" else None


def _delta(row: dict, column: str, result: dict, base: dict, key: str, bench: str) -> None:
  """Sets `column` to result - base; paired interval and verdict where items are kept.

  When both runs have a contamination record and either held some scored
  items in its training data, `<column>/clean` and `<column>/contaminated`
  are the paired deltas on the items in neither run's data and on the others:
  a gain from leakage shows on the contaminated items only (comparing clean
  and contaminated items of one run instead would mix leakage with how hard
  the items are).
  """
  if "per_item" not in result or "per_item" not in base:
    # Results written before per-item values were kept (or averaged ones).
    row[column] = result[key] - base[key]
    return
  _paired(row, column, result["per_item"], base["per_item"], bench)
  ours, theirs = _contaminated_ids(result), _contaminated_ids(base)
  if ours is None or theirs is None or not ours | theirs:
    return
  dirty = ours | theirs
  for part, keep in (("clean", lambda i: i not in dirty), ("contaminated", dirty.__contains__)):
    _paired(row, f"{column}/{part}", {i: v for i, v in result["per_item"].items() if keep(i)},
            base["per_item"], bench)


def comparison_rows(named: dict[str, dict], baseline: str) -> list[dict]:
  """Per-capability BPB deltas of each run against `baseline`.

  Args:
    named: {run name: evaluation results with capability_bpb (and forgetting)}.
    baseline: the name of the baseline run in `named`.

  Returns:
    One dict per run: name, per-capability BPB, `delta/<capability>` against
    the baseline (negative = better), `delta_bench/<benchmark>` (benchmark
    BPB) and `delta_gen/<benchmark>` (generative score) on the items both runs
    scored, each with `ci95/<column>` (paired 95% half-width), `sig/<column>`
    (the interval excludes zero) and `n/<column>` (items in common) when both
    runs kept per-item values, and forgetting.
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
      if bench in base.get("benchmark_bpb", {}):
        _delta(row, f"delta_bench/{bench}", r, base["benchmark_bpb"][bench], "bpb", bench)
    for bench, r in res.get("generative", {}).items():
      if bench in base.get("generative", {}):
        _delta(row, f"delta_gen/{bench}", r, base["generative"][bench], "score", bench)
    for task, r in res.get("downstream", {}).items():
      row[f"acc/{task}"] = accuracy_text(r)
      if task in base.get("downstream", {}):
        _delta(row, f"delta_acc/{task}", r, base["downstream"][task], "score", task)
    if "forgetting" in res:
      row["forgetting"] = res["forgetting"]["delta_web_bpb"]
    rows.append(row)
  return rows


def format_comparison(named: dict[str, dict], baseline: str) -> str:
  """Benchmark changes of every other run against `baseline`, one row per benchmark.

  Args:
    named: {run name: evaluation results}.
    baseline: the run the others are compared with.

  Returns:
    A table of `delta ± ci95 *` (paired over the items both runs scored;
    BPB: negative = better, generative: positive = better) and the legend.
  """
  rows = comparison_rows(named, baseline)
  others = [r for r in rows if r["run"] != baseline]
  columns = list(dict.fromkeys(k for r in others for k in r
                               if k.startswith(("delta_bench/", "delta_gen/", "delta_acc/"))))
  if not columns:
    return "no benchmark scores in common"
  metrics = {f"delta_gen/{b}": r.get("metric", "score") for res in named.values()
             for b, r in res.get("generative", {}).items()}
  metrics.update({f"delta_acc/{t}": r["metric"] for res in named.values()
                  for t, r in res.get("downstream", {}).items()})
  header = [f"benchmark (change vs {baseline})", "items in common"] + [r["run"] for r in others]
  cells = []
  for c in columns:
    kind, rest = c.split("/", 1)
    bench, _, part = rest.partition("/")
    suffix = f", {part} items" if part else ""
    label = f"{bench} {metrics.get(f'{kind}/{bench}', 'BPB')}{suffix}"
    n = next((r[_N + c] for r in others if r.get(_N + c) is not None), None)
    cells.append([label, "-" if n is None else str(n)] +
                 [_cell(r, c) if c in r else "-" for r in others])
  text = _aligned(header, cells)
  if any(r.get(_CI + c) is not None for r in others for c in columns):
    text += "\n" + SIGNIFICANCE_LEGEND
  return text


def benchmark_table(named: dict[str, dict], group: str = "benchmark_bpb") -> str:
  """Each run's benchmark scores as `value ± ci95`, one row per benchmark.

  Args:
    named: {run name: evaluation results}.
    group: "benchmark_bpb" or "generative".

  Returns:
    The table, with each benchmark's item and subject counts (those of the
    first run that has it).
  """
  key = "bpb" if group == "benchmark_bpb" else "score"
  names = list(dict.fromkeys(b for res in named.values() for b in res.get(group, {})))
  header = ["benchmark", "items", "subjects", "average"] + list(named)
  cells = []
  for b in names:
    first = next(res[group][b] for res in named.values() if b in res.get(group, {}))
    label = b if group == "benchmark_bpb" else f"{b} {first['metric']}"
    cells.append([label, str(first.get("n_items", first.get("items"))),
                  str(first.get("subsets", "-")), first.get("average", "-")] +
                 [plus_minus(res[group][b][key], res[group][b].get("ci95"))
                  if b in res.get(group, {}) else "-" for res in named.values()])
  return _aligned(header, cells)


AT_CHANCE_LEGEND = ("AT CHANCE = the 95% interval holds the chance level (a uniform guess): "
                    "no signal yet")


def accuracy_text(r: dict) -> str:
  """An OLMES accuracy as `score ± ci95`, with `AT CHANCE` where its interval holds chance."""
  return plus_minus(r["score"], r.get("ci95")) + (" AT CHANCE" if r.get("at_chance") else "")


def downstream_table(named: dict[str, dict]) -> str:
  """Each run's OLMES accuracy (`accuracy_text`), one row per task, and the legend.

  Args:
    named: {run name: evaluation results with `downstream`}.

  Returns:
    The table, with each task's primary metric, item count and chance level.
  """
  names = list(dict.fromkeys(t for res in named.values() for t in res.get("downstream", {})))
  header = ["task", "metric", "items", "chance"] + list(named)
  cells = []
  for t in names:
    first = next(res["downstream"][t] for res in named.values() if t in res.get("downstream", {}))
    cells.append([t, first["metric"], str(first["n_items"]), _fmt(first["chance"])] +
                 [accuracy_text(res["downstream"][t]) if t in res.get("downstream", {})
                  else "-" for res in named.values()])
  return _aligned(header, cells) + "\n" + AT_CHANCE_LEGEND


def _aligned(header: list[str], cells: list[list[str]]) -> str:
  widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
  out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
  out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
  return "\n".join(out)


def _cell(row: dict, column: str) -> str:
  value = row.get(column)
  if not isinstance(value, float):
    return str(value if value is not None else "-")
  if not column.startswith(("delta", "forgetting")) or value != value:
    return _fmt(value)
  if _CI + column not in row:
    return f"{value:+.3f}"
  verdict = {True: " *", False: "  ", None: "  "}[row.get(_SIG + column)]
  return plus_minus(value, row[_CI + column], signed=True) + verdict


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
  """Rows of dicts as an aligned text table (numbers to 3 decimals).

  A delta column with a paired interval prints `delta ± ci95`, `*` when the
  interval excludes zero, and the table ends with `SIGNIFICANCE_LEGEND`.
  """
  columns = columns or [k for k in rows[0]
                        if k != "run" and not k.startswith((_CI, _SIG, _N))]
  cells = [[str(r["run"])] + [_cell(r, c) for c in columns] for r in rows]
  text = _aligned(["run"] + columns, cells)
  if any(r.get(_CI + c) is not None for r in rows for c in columns):
    text += "\n" + SIGNIFICANCE_LEGEND
  return text


def snr_legend(k: int) -> str:
  """How the SNR table's columns are computed (`evals/signal_noise.py`)."""
  window = "every evaluated checkpoint" if k == 0 else f"the last {k} evaluated checkpoints"
  return (f"ckpts = checkpoints per run; noise = standard deviation over {window} "
          "of each run (root mean square over the runs; "
          f"unknown with fewer than {signal_noise.MIN_CHECKPOINTS}); signal = max - min of "
          "the runs' final values; SNR = (signal / mean of the final values) / (noise / mean of "
          "the values behind it); best = the run "
          "with the best final value (lowest BPB, highest score) and its margin over the "
          f"next; \"within noise\" = margin < {signal_noise.WITHIN_NOISE:g} x noise, a "
          "decision a neighbouring checkpoint could reverse")


def _decision(row) -> str:
  if row.winner is None:
    return "-"
  text = f"{row.winner} by {row.margin:.3g}"
  if row.within_noise is None:
    return text + " (noise unknown)"
  return text + (" WITHIN NOISE" if row.within_noise else "")


def format_snr(rows: list, k: int) -> str:
  """The SNR table: one line per metric, highest signal-to-noise first.

  Args:
    rows: `signal_noise.snr_table` rows.
    k: checkpoints per run behind the noise (0 = all), for the legend.

  Returns:
    Each metric's final value per run, the checkpoints behind each run's
    noise, signal and noise (in the metric's units), SNR and the decision,
    then the legend.
  """
  if not rows:
    return "signal and noise: no metric that two of the runs share"
  runs = list(dict.fromkeys(r for row in rows for r in row.finals))
  header = ["metric", *runs, "ckpts", "signal", "noise", "SNR", "best (margin)"]
  cells = []
  for row in rows:
    finals = [_fmt(row.finals[r][1]) if r in row.finals else "-" for r in runs]
    ckpts = "/".join(str(row.checkpoints.get(r, 0)) for r in runs)
    cells.append([row.metric, *finals, ckpts, _fmt(row.signal, 4),
                  "unknown" if row.noise is None else _fmt(row.noise, 4),
                  "-" if row.snr is None else f"{row.snr:.1f}", _decision(row)])
  table = "\n".join(line.rstrip() for line in _aligned(header, cells).splitlines())
  return table + "\n" + snr_legend(k)


def decontamination_summary(data_dir: str) -> list[dict]:
  """Per task of a prepared data folder: benchmarks checked, documents removed, items found.

  Args:
    data_dir: a folder written by `data.prepare` (with manifest.json).

  Returns:
    `layout.decontamination_summary` rows plus `mode` and `items` ({benchmark:
    distinct items found in the training documents}; None when the folder was
    prepared before items were recorded).
  """
  rows = layout.decontamination_summary(data_dir)
  for row in rows:
    record = layout.decontamination(layout.read_stats(data_dir, row["task"]))
    row["mode"] = record.get("mode", "")
    found = record.get("items")
    row["items"] = None if found is None else {b: len(ids) for b, ids in found.items() if ids}
  return rows


def format_deduplication(rows: list[dict]) -> str:
  """The deduplication summary (`layout.deduplication_summary` rows) as text lines."""
  if not rows:
    return "deduplication: off (set data.dedup.levels)"
  levels = sorted({level for r in rows for level in r["levels"]})
  scope = "across tasks" if any(r.get("across_tasks") for r in rows) else "within each task"
  lines = [f"deduplication ({', '.join(levels)}) {scope}:"]
  for r in rows:
    found = ", ".join(f"{level} {n}" for level, n in r["by_level"].items()) or "none"
    line = (f"  {r['task']:<26} read {r['docs']:>6} docs, removed {r['removed']:>5} "
            f"({found}")
    line += f"; {r['cross_task']} of another task)" if r["cross_task"] else ")"
    if r["reference"]:
      verb = "removed" if r["reference_mode"] == "drop" else "counted"
      line += f"; in the reference set: {sum(r['reference'].values())} ({verb})"
    if r.get("skipped_comparisons"):
      line += f"; bucket cap skipped {r['skipped_comparisons']} comparisons"
    lines.append(line)
  return "\n".join(lines)


def format_decontamination(rows: list[dict]) -> str:
  """The decontamination summary as text lines."""
  checked = sorted({b for r in rows for b in r["benchmarks"]})
  if not checked:
    return "decontamination: off (set data.decontam.benchmarks)"
  lines = [f"decontamination against {', '.join(checked)}:"]
  for r in rows:
    hits = ", ".join(f"{b} {n}" for b, n in sorted(r["hits"].items())) or "none"
    line = (f"  {r['task']:<26} kept {r['train_docs']:>6} docs, dropped {r['dropped']:>4},"
            f" cut {r['cut']:>4} (hits: {hits})")
    if r.get("items"):
      found = ", ".join(f"{b} {n}" for b, n in sorted(r["items"].items()))
      kept = " (kept in training: mode keep)" if r.get("mode") == "keep" else ""
      line += f"; items found: {found}{kept}"
    lines.append(line)
  return "\n".join(lines)
