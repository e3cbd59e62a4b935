"""The Beam runner of prepare: every stage of a mixture's preparation as one Apache Beam pipeline.

The same stages as the local runner (local.py), on keyed documents, so the
folder written is the same file for file (stats and manifest but for timing):
  read        one element per source file (or seqio task), read by the
              readers of the local run (local files or gs://), records keyed
              `(task rank, file rank, position)`; the task cap by per-file
              counts (prefix sums as a side input);
  dedup       fingerprints on the workers (batched), connected components
              over verified pairs (dedup/beam_components.py: the same
              verdicts as the local `components.resolve`, no single-worker
              stage), joined back by key; per task summed counts and the
              first examples by key;
  held-out    per task the `data.heldout_max_docs` smallest candidates by
              (hash key, key): a per-task smallest-k combiner;
  clean/tokenise/score  the decontamination index loaded on each worker
              (built once by the launcher), the model's tokenizer, the
              quality scorer with `data.qau.enabled`;
  shard       a train document's number = kept documents of the blocks
              (`BLOCK` consecutive records of a file) before its own (side
              input) + those before it in its block; shard i holds numbers
              [i * shard_docs, (i + 1) * shard_docs);
  write       shards, held-out split, per-shard progress, then stats.json.
The output folder may be a URL (gs://...) that every worker reaches: the
launcher stages the tokenizer and the decontamination index there, which the
workers load (staging.py), and they write the folder through etils.epath.
A task with more than `data.max_malformed` malformed records fails the
pipeline where its stats.json would be written, naming the first ones (the
local runner fails before writing anything). The launcher writes the
manifest afterwards (tasks.py). A task whose
stats.json has its fingerprint is reused untouched; the folders of the other
tasks are emptied and prepared again whole, so an interrupted run is re-run.

Memory per worker does not grow with the corpus. A grouping holds one
block's (position, kept) flags (`beam_stages.BLOCK` records), one shard's
documents (`data.shard_docs` train documents and the counts of the records
dropped among them), a task's held-out documents (`data.heldout_max_docs`),
a task's per-shard counts, or a document with its verdict; a combiner holds a
count, the first examples, or the `heldout_max_docs` smallest candidates;
side inputs hold a count per input file and per block and the chosen held-out
keys; batches are at most 512 documents; quality scores are written per shard
and joined by streaming. The pipeline logs the largest block and shard it
grouped ("largest records_per_block"). Deduplication's bounds are in
dedup/beam_components.py. Runners that hand a worker a whole stage's input as
one bundle (the local FnApiRunner) hold that input instead.

Quality scores (`data.qau.enabled`): the scorer is trained (or found) by the
launcher as for the local run, then applied to each train document in the
pipeline (with tokenisation); the scores are written with the task's stats.
The local runner scores the written shards afterwards: the same numbers, each
document being scored alone (qau_scores.py).
"""
import contextlib
import os
import pathlib
from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from midtrain_jax import files
from midtrain_jax.data.prepare import beam_stages as stages
from midtrain_jax.data.prepare import decisions, dedup_step, records, staging
from midtrain_jax.data.prepare.run_plan import Plan
from midtrain_jax.dedup import beam_components

_BATCH = dict(min_batch_size=16, max_batch_size=512)
# The folder holding the midtrain_jax package the launcher imported.
_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[3])


@contextlib.contextmanager
def _workers_import_this_package():
  """Local worker processes (FnApiRunner multi_processing) import the launcher's package.

  They start a fresh interpreter, which would otherwise import whichever
  midtrain_jax its path finds first: the stages must be the launcher's.
  """
  before = os.environ.get("PYTHONPATH")
  os.environ["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *([before] if before else [])])
  try:
    yield
  finally:
    if before is None:
      os.environ.pop("PYTHONPATH", None)
    else:
      os.environ["PYTHONPATH"] = before


def _is_doc(keyed) -> bool:
  return keyed[1][0] == "doc"


def _read(pipeline, plan: Plan, specs: dict):
  """(records within the cap, {task rank: records read} as a side input)."""
  cfg = plan.data_cfg
  units = [u for rank, spec in sorted(specs.items())
           for u in records.units(spec, cfg, rank)[1]]
  recs = (pipeline | "Units" >> beam.Create(units) | "Spread units" >> beam.Reshuffle()
          | "Read" >> beam.FlatMap(stages.read_unit, specs, cfg))
  counts = (recs | "Unit of" >> beam.Map(lambda kv: (stages.unit_of(kv), 1))
            | "Count units" >> beam.CombinePerKey(sum))
  cap = cfg.max_docs_per_task
  if cap:
    recs = recs | "Cap" >> beam.ParDo(stages.WithinCap(cap), beam.pvalue.AsDict(counts))
  read = (counts | "Read by task" >> beam.Map(lambda kv: (kv[0][0], kv[1]))
          | "Sum tasks" >> beam.CombinePerKey(sum)
          | "Capped" >> beam.Map(lambda kv: (kv[0], min(kv[1], cap) if cap else kv[1])))
  return recs, read


def _reference(pipeline, plan: Plan):
  """The reference set's (doc id, fingerprint), or None without one."""
  if not plan.dedup.reference_files:
    return None
  return (pipeline | "Reference files" >> beam.Create(plan.dedup.reference_files)
          | "Read reference" >> beam.FlatMap(stages.reference_docs)
          | "Batch reference" >> beam.BatchElements(**_BATCH)
          | "Reference prints" >> beam.ParDo(stages.ReferencePrints(plan.dedup)))


def _dedup(docs, plan: Plan, names: dict):
  """(kept (key, text), {tally tag: per-task PCollection}): components on Beam."""
  if plan.dedup is None:
    return docs | "Texts" >> beam.Map(lambda kv: (kv[0], kv[1][1])), {}
  items = (docs | "Batch docs" >> beam.BatchElements(**_BATCH)
           | "Fingerprint" >> beam.ParDo(stages.Fingerprint(plan.dedup, names)))
  verdicts = items | "Resolve" >> beam_components.Resolve(
      plan.dedup.params, plan.dedup.cross_task, _reference(docs.pipeline, plan))
  judged = ({"docs": docs, "verdict": verdicts} | "Join verdicts" >> beam.CoGroupByKey()
            | "Judge" >> beam.FlatMap(stages.judged).with_outputs(
                "counts", "example", main="kept"))
  tallies = {
      "dedup_counts": judged.counts | "Sum counts" >> beam.CombinePerKey(stages.sum_counts),
      "dedup_examples": judged.example | "First examples" >> beam.combiners.Top.SmallestPerKey(
          dedup_step.EXAMPLES, key=lambda example: example[0])}
  return judged.kept, tallies


def _heldout(kept, plan: Plan):
  """(train (key, text), held-out (rank, (key, text)), chosen keys, candidate counts)."""
  cfg = plan.data_cfg
  cands = kept | "Candidates" >> beam.FlatMap(stages.candidate, cfg.heldout_fraction)
  if cfg.heldout_max_docs > 0:
    chosen = (cands | "Smallest" >> beam.combiners.Top.SmallestPerKey(cfg.heldout_max_docs)
              | "Chosen keys" >> beam.Map(lambda kv: (kv[0], decisions.choose_heldout(
                  kv[1], cfg.heldout_max_docs))))
  else:
    chosen = cands | "None chosen" >> beam.Filter(lambda _: False)
  counted = cands | "Count candidates" >> beam.combiners.Count.PerKey()
  parts = kept | "Split" >> beam.FlatMap(
      stages.split_heldout, beam.pvalue.AsDict(chosen)).with_outputs("heldout", main="train")
  return parts.train, parts.heldout, chosen, counted


def _shards(train, seeds, plan: Plan, staged: staging.Staged, names: dict, chat: dict):
  """Cleans, tokenises, numbers and writes the train shards; (shard counts, tail counts)."""
  payload = (train | "Batch train" >> beam.BatchElements(**_BATCH)
             | "Clean, encode, score" >> beam.ParDo(stages.CleanEncode(
                 staged, plan.quality[0] if plan.quality is not None else None, chat)))
  flags = (payload | "Kept flags" >> beam.Map(
               lambda kv: (stages.block_of(kv[0]), (kv[0][2], kv[1][0] is not None)))
           | "By block" >> beam.GroupByKey()
           | "Ranks" >> beam.FlatMap(stages.survivor_ranks).with_outputs("total", main="ranks"))
  assigned = ({"payload": payload, "rank": flags.ranks} | "Join ranks" >> beam.CoGroupByKey()
              | "Assign" >> beam.ParDo(stages.AssignShard(plan.data_cfg.shard_docs),
                                       beam.pvalue.AsDict(flags.total)).with_outputs(
                                           "tail", main="sharded"))
  first = seeds | "First shards" >> beam.Map(lambda rank: ((rank, 0), None))
  written = ((assigned.sharded, first) | "All shards" >> beam.Flatten()
             | "By shard" >> beam.GroupByKey()
             | "Write shards" >> beam.ParDo(stages.WriteShard(str(plan.out), names,
                                                              scored=plan.quality is not None)))
  return written, assigned.tail


def _build(pipeline, plan: Plan, staged: staging.Staged, specs: dict, pending: list[int]) -> None:
  """Adds every stage: `specs` are read ({rank: spec}), the `pending` ranks written."""
  names = {rank: spec.name for rank, spec in specs.items()}
  chat = {rank: spec.name for rank, spec in specs.items() if spec.chat}  # Masked documents.
  recs, read = _read(pipeline, plan, specs)
  bad = (recs | "Malformed" >> beam.Filter(lambda kv: not _is_doc(kv))
         | "Bad by task" >> beam.Map(lambda kv: (kv[0][0], (kv[0], kv[1][1], kv[1][2])))
         | "Tally bad" >> beam.CombinePerKey(stages.MalformedTally()))
  docs = recs | "Documents" >> beam.Filter(_is_doc)
  kept, tallies = _dedup(docs, plan, names)
  kept = kept | "Pending tasks" >> beam.Filter(lambda kv: kv[0][0] in pending)
  train, heldout, chosen, counted = _heldout(kept, plan)
  seeds = pipeline | "Seeds" >> beam.Create(pending)
  held = ((heldout, seeds | "Held seeds" >> beam.Map(lambda rank: (rank, None)))
          | "All held" >> beam.Flatten() | "Held by task" >> beam.GroupByKey()
          | "Write held out" >> beam.ParDo(stages.WriteHeldout(str(plan.out), names, staged, chat),
                                         beam.pvalue.AsDict(chosen)))
  shards, tail = _shards(train, seeds, plan, staged, names, chat)
  groups = {"shards": shards, "tail": tail, "heldout": held, "malformed": bad, **tallies}
  tasks = {rank: (specs[rank], str(plan.task_dir(names[rank])), plan.fingerprints[names[rank]],
                  plan.files[names[rank]]) for rank in pending}
  _ = (groups | "By task" >> beam.CoGroupByKey()
       | "Only pending" >> beam.Filter(lambda kv: kv[0] in pending)
       | "Write stats" >> beam.ParDo(
           stages.WriteStats(tasks, plan.cleaner,
                             plan.dedup.record() if plan.dedup is not None else None,
                             plan.data_cfg.max_malformed,
                             plan.quality[1] if plan.quality is not None else None),
           beam.pvalue.AsDict(read), beam.pvalue.AsDict(counted)))


def run(plan: Plan, options: Sequence[str], log: Callable[[str], None]) -> None:
  """Prepares the plan's pending tasks with one Beam pipeline.

  Args:
    plan: the run.
    options: Beam pipeline options (the runner and its settings).
    log: progress printer (the pipeline's counters when it ends).
  """
  cross = plan.dedup is not None and plan.dedup.cross_task
  # With cross-task deduplication every task is read: its documents decide the others'.
  specs = {plan.rank(s.name): s for s in plan.specs if cross or s.name in plan.pending}
  pending = sorted(plan.rank(name) for name in plan.pending)
  for name in plan.pending:  # Unfinished: prepared again whole.
    files.remove_tree(plan.task_dir(name))
    plan.task_dir(name).mkdir(parents=True)
  log(f"[prepare] beam: preparing {plan.pending} with {' '.join(options) or 'defaults'}")
  staged = staging.stage(plan.out, plan.tok, plan.cleaner)
  pipeline = beam.Pipeline(options=PipelineOptions(list(options)))
  _build(pipeline, plan, staged, specs, pending)
  with _workers_import_this_package():
    result = pipeline.run()
    result.wait_until_finish()
  staging.remove(staged.folder)
  found = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("prepare"))
  for counter in sorted(found["counters"], key=lambda c: c.key.metric.name):
    value = counter.committed if counter.committed is not None else counter.attempted
    log(f"[prepare] beam: {counter.key.metric.name} {value:,}")
  # The largest groups a worker held: bounded by settings, not by the corpus.
  for dist in sorted(found["distributions"], key=lambda d: d.key.metric.name):
    value = dist.committed if dist.committed is not None else dist.attempted
    log(f"[prepare] beam: largest {dist.key.metric.name} {value.max:,}")
