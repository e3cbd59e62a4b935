"""The demo workflow behind `configs/demo.py` (see its docstring for the command).

Steps, each skipped when its output already exists:
  1. prepare the demo corpus, deduplicated (exact and near copies) and
     decontaminated against the eval benchmarks;
  2. pretrain a base with WSD on `web_only` (`workdir/base`);
  3. anneal from the base's last stable-phase checkpoint, once on
     `dolmino_demo` and once on `web_only`, same steps and LR decay
     (`workdir/anneal_dolmino`, `workdir/anneal_web`);
  4. evaluate the base and both anneals (held-out BPB, benchmark BPB and the
     accuracy of `eval.downstream`, which the anneals also score in their
     loop at the end); print and save the report
     (`workdir/report.txt`, `workdir/report.json`), with the share of each
     quality bucket the runs drew (quality-aware upsampling, `data.qau`) and
     the anneals' metrics ranked by signal-to-noise (the noise from their
     last `eval.noise_checkpoints` in-training evaluations, evals/signal_noise.py).
"""
import dataclasses
import os
import time

import ml_collections

from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.prepare import tasks as preparation
from midtrain_jax.data.reports import qau as qau_report
from midtrain_jax.evals import history, signal_noise, suite, tables
from midtrain_jax.train import checkpoint
from midtrain_jax.workflows import training

MIXTURES = {"anneal_dolmino": "dolmino_demo", "anneal_web": "web_only"}


def _say(message: str) -> None:
  print(f"[demo] {message}", flush=True)


def _run(config: ml_collections.ConfigDict, workdir: str, what: str) -> None:
  if checkpoint.is_finished(workdir, config.train.steps):
    _say(f"{what}: already trained ({workdir}), reusing it")
    return
  _say(f"{what}: training {config.train.steps} steps -> {workdir}")
  training.run(config, workdir)


def base_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The base run: WSD on web_only, checkpointed where its decay starts."""
  c = ml_collections.ConfigDict(config.to_dict())
  d = config.demo
  c.workflow = "train"
  c.data.mixture = "web_only"
  c.optim.update(schedule="wsd", lr=d.base_lr, warmup_steps=d.base_warmup_steps,
                 decay_fraction=d.base_decay_fraction, anneal_start="config")
  c.train.steps = d.base_steps
  c.ckpt.update(every_steps=stable_step(config), keep=2)
  # The base is not one of the compared runs: held-out BPB only at its end.
  c.eval.every_steps = 0
  return c


def stable_step(config: ml_collections.ConfigDict) -> int:
  """The base's last step before its LR decay: where the anneals branch off."""
  return int(round(config.demo.base_steps * (1 - config.demo.base_decay_fraction)))


def anneal_config(config, mixture: str, init_from: str) -> ml_collections.ConfigDict:
  """An anneal of the demo: the demo config on `mixture`, from `init_from`."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.workflow = "train"
  c.data.mixture = mixture
  c.train.init_from = init_from
  c.optim.anneal_start = "from_checkpoint"
  return c


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the whole demo (resumable) and prints its report.

  Args:
    config: from `configs/demo.py`, overrides applied.
    workdir: root folder of the demo's runs.

  Returns:
    The report dict (also written to `workdir/report.json`).
  """
  started = time.time()
  options = suite.EvalOptions(
      suite="all" if config.demo.gen_items else "default",
      bpb_items=config.demo.bpb_items, gen_items=config.demo.gen_items,
      max_batches=config.demo.eval_batches, downstream=tuple(config.eval.downstream),
      downstream_items=config.eval.downstream_items, unsafe_exec=config.eval.unsafe_exec)
  suite.check_code_execution(options)  # Before training, not after.
  os.makedirs(workdir, exist_ok=True)
  config = ml_collections.ConfigDict(config.to_dict())
  if not config.data.data_dir:
    # Not the mixture's default folder: that one may hold undecontaminated shards.
    config.data.data_dir = str(layout.prepared_root() / (
        "demo_decontaminated" + layout.dedup_suffix(config.data.dedup.to_dict())))
  _say(f"1/4 preparing the demo corpus in {config.data.data_dir}")
  preparation.prepare(config.data, config.data.data_dir)

  _say("2/4 base model (WSD on web_only)")
  base_dir = os.path.join(workdir, "base")
  _run(base_config(config), base_dir, "base")
  branch = os.path.join(base_dir, checkpoint.CKPT_SUBDIR, str(stable_step(config)))

  _say(f"3/4 anneals from {branch} (LR decays to 0 over {config.train.steps} steps)")
  for name, mixture in MIXTURES.items():
    _run(anneal_config(config, mixture, branch), os.path.join(workdir, name), name)

  _say("4/4 evaluation")
  data_cfg = ml_collections.ConfigDict(config.data.to_dict())
  data_cfg.mixture = config.eval.mixture
  base_results = suite.evaluate(suite.load_model(branch), options, data_cfg, log=_say)
  results = {"base": base_results}
  for name in MIXTURES:
    results[name] = suite.evaluate(
        suite.load_model(os.path.join(workdir, name)), options, data_cfg,
        base_heldout=base_results["heldout"], log=_say)
    suite.write_results(os.path.join(workdir, name), results[name])
  decontam = tables.decontamination_summary(config.data.data_dir)
  snr = history.compare_runs({name: os.path.join(workdir, name) for name in MIXTURES},
                             config.eval.noise_checkpoints)
  out = {"results": results, "decontamination": decontam,
         "snr": [dataclasses.asdict(row) for row in snr],
         "noise_checkpoints": config.eval.noise_checkpoints,
         "deduplication": layout.deduplication_summary(config.data.data_dir),
         "qau": quality_upsampling(config) if config.data.qau.enabled else None,
         "wall_time_s": time.time() - started}
  text = format_report(out)
  print(text, flush=True)
  files.write_text(os.path.join(workdir, "report.txt"), text + "\n")
  files.write_json(os.path.join(workdir, "report.json"), out)
  return out


def quality_upsampling(config: ml_collections.ConfigDict) -> dict:
  """QAU on the Dolmino anneal's data: each bucket's configured and sampled token share.

  The sampled shares replay the anneal's data stream: the tokens of its
  `train.steps` batches, and 16 times as many, where sampling noise is smaller.

  Returns:
    {mixture, tokens, rates, buckets (`qau_report.bucket_table` rows), sampled
    ({column: {task: {"tokens", "docs"} per bucket}}), scorer (its held-out
    accuracy record)}, JSON-serialisable.
  """
  data_cfg = ml_collections.ConfigDict(config.data.to_dict())
  data_cfg.mixture = MIXTURES["anneal_dolmino"]
  tokens = config.train.steps * data_cfg.batch_size * data_cfg.seq_len
  rates = catalog.get_mixture(data_cfg.mixture).rates
  rows = qau_report.bucket_table(data_cfg, data_cfg.data_dir, rates, tokens, log=_say)
  sampled = {}
  for label, budget in ((f"anneal {tokens // 1000}k", tokens), ("x16", 16 * tokens)):
    drawn = qau_report.sampled_shares(data_cfg, seed=config.seed, tokens=budget)
    sampled[label] = {task: {k: v.tolist() for k, v in d.items()} for task, d in drawn.items()}
  return {"mixture": data_cfg.mixture, "tokens": tokens, "rates": rates, "buckets": rows,
          "sampled": sampled, "scorer": qau_report.scorer_heldout(data_cfg.data_dir)}


def format_report(out: dict) -> str:
  """The demo report: capability BPB per run, deltas, downstream accuracy beside them
  (marked at chance), benchmark scores with their intervals and paired changes, the
  contamination split, forgetting, decontamination."""
  results = out["results"]
  rows = tables.comparison_rows(results, baseline="anneal_web")
  caps = sorted(results["base"]["capability_bpb"])
  lines = ["", "=" * 72, "Demo report: anneal on dolmino_demo vs web_only (same budget)",
           "", "Held-out bits per byte by capability (lower is better):",
           tables.format_table(rows, [f"bpb/{c}" for c in caps]),
           "", "Change vs the web-only anneal (negative = the Dolmino mix helped):",
           tables.format_table(rows[1:], [f"delta/{c}" for c in caps])]
  if results["base"].get("downstream"):
    lines += ["", "Downstream accuracy (OLMES multiple choice, higher is better), ± 95% "
              "bootstrap interval; every run scores the same items:",
              tables.downstream_table(results)]
  for group, what in (("benchmark_bpb", "Benchmark BPB of gold answers (lower is better)"),
                      ("generative", "Generative scores (higher is better)")):
    if results["base"].get(group):
      lines += ["", f"{what}, ± 95% bootstrap interval; every run scores the same items:",
                tables.benchmark_table(results, group)]
  if any(results["base"].get(g) for g in ("benchmark_bpb", "generative", "downstream")):
    lines += ["", "Benchmark change vs the web-only anneal (paired over the same items):",
              tables.format_comparison({k: v for k, v in results.items() if k != "base"},
                                       baseline="anneal_web")]
  if out.get("snr"):
    k = out["noise_checkpoints"]
    lines += ["", "Signal and noise of the anneals' metrics (highest signal-to-noise first; "
              "in_training/ = evaluated during training, eval/ = the evaluation above):",
              tables.format_snr([signal_noise.MetricSNR(**row) for row in out["snr"]], k)]
  lines += ["", "Benchmark scores on items in / out of the training data:"]
  lines += contamination_lines(results)
  lines += ["", "Forgetting (web BPB change vs the base checkpoint; positive = forgot):"]
  for name in MIXTURES:
    f = results[name]["forgetting"]
    lines.append(f"  {name:<15} web BPB {f['web_bpb']:.3f} vs base {f['base_web_bpb']:.3f}"
                 f" ({f['delta_web_bpb']:+.3f})")
  if out.get("qau"):
    q = out["qau"]
    scorer = qau_report.accuracy_text(q.get("scorer"))
    lines += ["", f"Quality-aware upsampling on {q['mixture']} (data.qau): each quality "
              "bucket's share of the mixture's tokens" + (f"; {scorer}" if scorer else ""),
              *qau_report.mixture_lines(q["buckets"], q["rates"], q["sampled"])]
  lines += ["", tables.format_deduplication(out.get("deduplication", [])),
            "", tables.format_decontamination(out["decontamination"]),
            "", f"Total wall time {out['wall_time_s'] / 60:.1f} min", "=" * 72]
  return "\n".join(lines)


def contamination_lines(results: dict) -> list[str]:
  """Per run, the clean / contaminated split of each benchmark where items were found.

  The other benchmarks are summed up in a line (none in the training data, or
  no record), so a gain from leaked items cannot pass unseen.
  """
  lines = []
  for run, res in results.items():
    scored = {**res.get("benchmark_bpb", {}), **res.get("generative", {})}
    for bench, r in scored.items():
      if tables.contamination_text(r):
        lines.append(f"  {run:<15} {bench:<14} {tables.contamination_text(r)}")
    lines += [f"  {run:<15} {line}" for line in tables.contamination_summary(scored)]
  return lines
