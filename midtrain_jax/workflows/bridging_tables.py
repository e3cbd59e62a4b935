"""The bridging study's tables, from its results (workflows/bridging.py).

Row metrics:
  target_bpb          the target's held-out (response) BPB after the probe
                      (lower = better);
  benchmark           the target's benchmark score after the probe (GSM8K exact
                      match, HumanEval pass@1; higher = better; - when none);
  vs_general          target_bpb minus the general-only run's (negative = the
                      run's data made the probe better than general data did);
  before_probe        the target's held-out BPB after the run, before the probe;
  forgetting          the general data's held-out BPB after the run minus the
                      base's (positive = forgot);
  adv/<measure>       the proximity advantage of the run's training data over
                      the general data (positive = closer to the target).
"""
import math

from midtrain_jax.evals import heldout, tables
from midtrain_jax.evals import proximity_measures as proximity
from midtrain_jax.workflows import proximity_study

# The three compared runs, in the order of the table.
COMPARED = ("midtrain", "continued", "general")


def general_bpb(scored: dict, general: dict) -> float:
  """Byte-weighted BPB of the general tasks' held-out splits."""
  nats = sum(scored[t]["loss"] * scored[t]["tokens"] for t in general)
  return nats / heldout.LN2 / max(sum(scored[t]["bytes"] for t in general), 1.0)


def forgetting(out: dict, name: str) -> float:
  """General held-out BPB after run `name` minus the base's."""
  general = out["general"]
  return (general_bpb(out["runs"][name]["heldout"], general)
          - general_bpb(out["runs"]["base"]["heldout"], general))


def _proximity(out: dict, name: str) -> dict:
  """The advantages of the data of a compared run (general: zero by definition)."""
  prox = out["proximity"]
  if name == "general":
    return {f"adv/{k}": 0.0 for k in proximity.MEASURES}
  source = "midtrain" if name == "midtrain" else proximity.source_name(out["specialised"])
  found = prox["sources"][source]
  return {f"adv/{k}": found[f"advantage/{k}"] for k in proximity.MEASURES}


def rows(out: dict) -> list[dict]:
  """The base (probed, no midtraining) and runs (a), (b), (c)."""
  runs = out["runs"]
  reference = runs["general"]["probe"]["target_bpb"]
  result = []
  for name in ("base", *COMPARED):
    r = runs[name]
    row = {"run": name, "target_bpb": r["probe"]["target_bpb"],
           "vs_general": r["probe"]["target_bpb"] - reference,
           "benchmark": r["probe"].get("benchmark", {}).get("score", math.nan),
           "before_probe": r["target_before_probe"]["bpb"],
           "forgetting": 0.0 if name == "base" else forgetting(out, name)}
    row.update({f"adv/{k}": math.nan for k in proximity.MEASURES} if name == "base"
               else _proximity(out, name))
    result.append(row)
  return result


def grid(out: dict) -> list[dict]:
  """One cell per (start, weight) of `out["grid_cells"]`: the run it names, its metrics."""
  return [{**cell, "target_bpb": out["runs"][cell["run"]]["probe"]["target_bpb"],
           "forgetting": forgetting(out, cell["run"])} for cell in out["grid_cells"]]


def format_grid(cells: list[dict], key: str) -> str:
  """A start x weight matrix of one metric."""
  starts = sorted({c["start"] for c in cells})
  weights = sorted({c["weight"] for c in cells})
  value = {(c["start"], c["weight"]): c[key] for c in cells}
  table = [{"run": f"start {s:g}", **{f"w={w:g}": value[(s, w)] for w in weights}}
           for s in starts]
  return tables.format_table(table)


def format_report(out: dict) -> str:
  """The comparison table, the timing x weight grids and the proximity table."""
  columns = ["target_bpb", "vs_general", "benchmark", "before_probe", "forgetting",
             *(f"adv/{k}" for k in proximity.MEASURES)]
  text = (f"Bridging study: target {out['target']}, {out['tokens']:,} tokens "
          f"({out['steps']} steps) per run from {out['base']}; probe: "
          f"{out['options']['probe_steps']} steps on the target. target_bpb = the target's "
          "held-out BPB after the probe (lower = better); forgetting = general held-out BPB "
          "change vs the base (positive = forgot); adv = proximity advantage of the run's "
          "data over the general data (positive = closer):\n"
          + tables.format_table(out["rows"], columns))
  text += ("\n\nTiming x weight: target BPB after the probe (rows: where the specialised "
           "data comes in, as a fraction of the run; columns: its share):\n"
           + format_grid(out["grid"], "target_bpb"))
  text += "\n\nTiming x weight: forgetting:\n" + format_grid(out["grid"], "forgetting")
  text += "\n\n" + proximity_study.format_table(out["proximity"])
  return text
