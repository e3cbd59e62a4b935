"""The mixture listing of `python -m midtrain_jax.data.mixtures --list`.

Every built-in task and mixture, or one mixture's tasks with their rates,
token counts once prepared, repetition caps, decontamination and (with
`data.qau.enabled`) quality buckets.
"""
import ml_collections

from midtrain_jax import config as config_lib
from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.mixtures.seqio_tasks import seqio_name
from midtrain_jax.data.reports import qau as qau_report


def task_metadata(name: str) -> dict:
  """Returns capability, repetition cap, provenance, licence and, once prepared
  anywhere in the cache, document/token counts of a task."""
  spec = catalog.get_task(name)
  docs, tokens = layout.cached_counts(name) or (None, None)
  return dict(capability=spec.capability, max_epochs=spec.max_epochs, fim=spec.fim,
              provenance=spec.provenance, licence=spec.licence, docs=docs, tokens=tokens)


def listing(mixture: str = "", data_dir: str = "", data_cfg=None, budget_tokens: int = 0) -> str:
  """Returns the human-readable table printed by `--list`.

  Args:
    mixture: "" for every built-in task and mixture, or a mixture (file) whose
      tasks to list with their rates, token counts and decontamination.
    data_dir: prepared folder to read counts from (default: the mixture's own).
    data_cfg: `data` settings for a mixture's listing (default: the defaults);
      with `qau.enabled`, its quality buckets are listed too (scoring the
      prepared folder first if needed).
    budget_tokens: training tokens the QAU table computes epochs for (0: per pass).
  """
  if mixture:
    return _mixture_listing(mixture, data_dir, data_cfg, budget_tokens)
  lines = ["TASKS", f"  {'name':34s} {'capability':12s} {'cap':>4s} {'docs':>8s} "
           f"{'tokens':>12s}  provenance"]
  for name in catalog.TASKS:
    meta = task_metadata(name)
    docs = "-" if meta["docs"] is None else f"{meta['docs']:,}"
    tokens = "-" if meta["tokens"] is None else f"{meta['tokens']:,}"
    lines.append(f"  {name:34s} {meta['capability']:12s} {meta['max_epochs']:>3d}x "
                 f"{docs:>8s} {tokens:>12s}  {meta['provenance']} [{meta['licence']}]")
  lines.append("MIXTURES (rates are token fractions)")
  for name, mixture in catalog.MIXTURES.items():
    total = sum(mixture.rates.values())
    rates = ", ".join(f"{task} {rate / total:.3f}" for task, rate in mixture.rates.items())
    capabilities = sorted({catalog.TASKS[t].capability for t in mixture.rates})
    lines.append(f"  {name} (seqio: {seqio_name(name)}; {'/'.join(capabilities)}): {rates}")
  return "\n".join(lines)


def _mixture_listing(name: str, data_dir: str, data_cfg, budget_tokens: int) -> str:
  """One mixture's tasks: rate, capability, tokens once prepared, epochs, decontamination."""
  spec = catalog.get_mixture(name)
  data_cfg = ml_collections.ConfigDict((data_cfg or config_lib.data_config()).to_dict())
  data_cfg.mixture, data_cfg.data_dir = name, data_dir or data_cfg.data_dir
  folder = layout.resolve_dir(data_cfg)
  total = sum(spec.rates.values())
  lines = [f"MIXTURE {spec.name} (seqio: {seqio_name(spec.name)}) from {name}",
           f"  prepared data: {folder}",
           f"  {'task':28s} {'rate':>6s} {'capability':12s} {'tokens':>12s} {'epochs':>6s}"
           "  decontamination"]
  for task, rate in spec.rates.items():
    task_spec = catalog.get_task(task)
    try:
      stats = layout.read_stats(folder, task)
    except FileNotFoundError:
      tokens, decon = "-", "not prepared"
    else:
      record = layout.decontamination(stats)
      tokens = f"{stats['train_tokens']:,}"
      decon = (f"{','.join(record['benchmarks'])} ({record['mode']}, "
               f"{record['counts'].get('dropped_docs', 0)} dropped, "
               f"{record['counts'].get('cut_docs', 0)} cut)"
               if record["benchmarks"] else "none")
    lines.append(f"  {task:28s} {rate / total:6.3f} {task_spec.capability:12s} {tokens:>12s} "
                 f"{task_spec.max_epochs:>5d}x  {decon}")
  for start, weights in spec.stages:
    lines.append(f"  stage from step {start}: {weights}")
  if data_cfg.qau.enabled:
    lines += qau_report.listing_lines(data_cfg, folder, spec.rates, budget_tokens)
  return "\n".join(lines)
