"""What a prepare run does, whichever runner does it: tasks, order, fingerprints, steps.

Built once by the command (tasks.py) and handed to the local or the Beam
runner, so both read the same tasks in the same key order, with the same
fingerprints, deduplication and decontamination settings.

A task is done when its stats.json carries its fingerprint; a task prepared
with other settings is an error (never mixed with new shards); every other
task is pending and (re)prepared.
"""
import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Callable, Sequence

from midtrain_jax import cache, files
from midtrain_jax.data import layout
from midtrain_jax.data.prepare import dedup_step, qau_scores, records, writing
from midtrain_jax.decontam import decontaminator


@dataclasses.dataclass
class Plan:
  """A prepare run.

  Attributes:
    out: the prepared folder (a URL such as gs://... for the Beam runner).
    data_cfg: the `data` config section.
    tok: the tokenizer.
    specs: the tasks in deduplication order (a task's rank is its index here).
    files: {task: source files}.
    fingerprints: {task: fingerprint}.
    done: tasks already prepared with these fingerprints.
    dedup: the deduplication step (None: off).
    cleaner: the decontamination (None: off).
    quality: (scorer, its fingerprint) with `data.qau.enabled` and tasks to
      prepare: the Beam runner scores the documents it writes (qau_scores.py).
  """
  out: pathlib.Path
  data_cfg: object
  tok: object
  specs: list
  files: dict[str, list[str]]
  fingerprints: dict[str, str]
  done: set[str]
  dedup: dedup_step.DedupStep | None
  cleaner: writing.Cleaner | None
  quality: tuple | None = None

  @property
  def pending(self) -> list[str]:
    """The tasks to prepare, in deduplication order."""
    return [s.name for s in self.specs if s.name not in self.done]

  def rank(self, task: str) -> int:
    return [s.name for s in self.specs].index(task)

  def spec(self, task: str):
    return self.specs[self.rank(task)]

  def task_dir(self, task: str) -> pathlib.Path:
    return self.out / task


def make_cleaner(data_cfg, log: Callable[[str], None]) -> writing.Cleaner | None:
  """The configured decontamination, or None when disabled.

  A benchmark whose items cannot be loaded (e.g. offline) is skipped with a
  warning when `decontam.on_missing == "warn"`, and fails prepare otherwise.
  The index is built here, once, so workers only load it.
  """
  names = list(data_cfg.decontam.benchmarks)
  if not names:
    return None
  if data_cfg.decontam.on_missing not in ("warn", "error"):
    raise ValueError("data.decontam.on_missing must be 'warn' or 'error', not "
                     f"{data_cfg.decontam.on_missing!r}.")
  if data_cfg.decontam.mode not in decontaminator.MODES:
    raise ValueError(f"data.decontam.mode must be one of {decontaminator.MODES}, not "
                     f"{data_cfg.decontam.mode!r}.")
  cache_dir = str(cache.cache_root())
  try:
    decontaminator.Decontaminator.from_benchmarks(names, cache_dir=cache_dir)
    return writing.Cleaner(names, data_cfg.decontam.mode, cache_dir)
  except (OSError, RuntimeError) as e:
    if data_cfg.decontam.on_missing == "error":
      raise
    usable = []
    for name in names:
      try:
        decontaminator.Decontaminator.from_benchmarks([name], cache_dir=cache_dir)
        usable.append(name)
      except (OSError, RuntimeError) as missing:
        log(f"[prepare] WARNING: benchmark {name} unavailable, not decontaminating "
            f"against it: {missing}")
    if not usable:
      log(f"[prepare] WARNING: no benchmark could be loaded ({e}); no decontamination")
      return None
    decontaminator.Decontaminator.from_benchmarks(usable, cache_dir=cache_dir)
    return writing.Cleaner(usable, data_cfg.decontam.mode, cache_dir)


def _base_fingerprint(spec, files: list[str], tok, data_cfg) -> dict:
  # Benchmarks as the comma string earlier versions stored: the same settings
  # keep the same fingerprint within a format version.
  settings = dict(files=files, tokenizer=tok.fingerprint(), version=layout.FORMAT_VERSION,
                  heldout=(data_cfg.heldout_fraction, data_cfg.heldout_max_docs),
                  max_docs=data_cfg.max_docs_per_task, shard_docs=data_cfg.shard_docs,
                  decontam=(",".join(data_cfg.decontam.benchmarks), data_cfg.decontam.mode),
                  text_fn=spec.text_fn.__name__)
  if spec.seqio_task:
    settings["seqio"] = (spec.seqio_task, spec.seqio_split, spec.seqio_text_field)
  if data_cfg.decontam.benchmarks:  # The rules themselves, not only which benchmarks.
    settings["decontam_rules"] = decontaminator.rules_key(
        tuple(dict.fromkeys(data_cfg.decontam.benchmarks)))
  if not tok.adds_bos:
    settings["adds_bos"] = False
  return settings


def _digest(settings: dict) -> str:
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def fingerprints(specs: Sequence, files: dict[str, list[str]], tok, data_cfg,
                 dedup: dedup_step.DedupStep | None) -> dict[str, str]:
  """{task: fingerprint}: its inputs and settings, and with cross-task
  deduplication every task of the mixture (its duplicates depend on all)."""
  base = {s.name: _base_fingerprint(s, files[s.name], tok, data_cfg) for s in specs}
  if dedup is None:
    return {name: _digest(settings) for name, settings in base.items()}
  mixture = [_digest(base[s.name]) for s in specs]
  return {name: _digest({**settings, "dedup": dedup.settings(mixture)})
          for name, settings in base.items()}


def _done(out: pathlib.Path, specs: Sequence, found: dict[str, str]) -> set[str]:
  """The tasks with a finished stats.json of these settings; fails on other settings."""
  done = set()
  for spec in specs:
    if not (out / spec.name / layout.STATS).exists():
      continue
    if layout.read_stats(out, spec.name)["fingerprint"] != found[spec.name]:
      raise ValueError(f"{out / spec.name} was prepared with other settings (tokenizer or its "
                       "BOS rule, split, decontamination, deduplication (data.dedup, and "
                       "with cross_task the other tasks of the mixture) or format "
                       "version); delete it or choose another --out.")
    done.add(spec.name)
  return done


def make_plan(specs: Sequence, out: pathlib.Path, tok, data_cfg,
              log: Callable[[str], None]) -> Plan:
  """The run preparing `specs` (in mixture order) into `out`."""
  step = dedup_step.DedupStep(data_cfg) if dedup_step.enabled(data_cfg) else None
  if step is not None:
    order = dedup_step.dedup_order([s.name for s in specs], data_cfg)
    specs = [next(s for s in specs if s.name == name) for name in order]
  sources = {s.name: records.units(s, data_cfg, 0)[0] for s in specs}
  found = fingerprints(specs, sources, tok, data_cfg, step)
  out = files.path(out)
  done = _done(out, specs, found)
  pending = len(done) < len(specs)
  cleaner = make_cleaner(data_cfg, log) if pending else None
  quality = (qau_scores.scorer_for(data_cfg, out, tok, log)
             if pending and data_cfg.qau.enabled else None)
  return Plan(out, data_cfg, tok, list(specs), sources, found, done, step, cleaner,
              quality)
