"""The preparation: every task of a mixture read, deduplicated, decontaminated, tokenised, sharded.

Command line: `python -m midtrain_jax.data.prepare` (__main__.py). The
folder it writes is described in `data/layout.py`.

Idempotent and resumable: a task with stats.json is done; otherwise finished
shards are kept and reading restarts after the last one. Each document is
`tokens + [eos]` after the tokenizer's start (`[bos]` when it adds one:
`layout.encode_document`).
"""
import collections
import hashlib
import itertools
import json
import pathlib
import time
from collections.abc import Callable

from midtrain_jax import cache
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog, documents
from midtrain_jax.data.mixtures.corpora import demo as demo_corpus
from midtrain_jax.data.prepare import dedup_step, pretokenized, qau_scores
from midtrain_jax.decontam import counts, decontaminator
from midtrain_jax.documents import readers as sources

_ENCODE_CHUNK = 256
_SPM_TRAIN_CHARS_PER_TASK = 1_500_000
_MALFORMED_EXAMPLES = 50


def ensure_demo_tokenizer(log: Callable[[str], None] = print) -> pathlib.Path:
  """Trains the demo SentencePiece model on the demo corpus unless cached."""
  path = tokenizer_lib.demo_spm_path()
  if path.exists():
    return path
  log(f"[prepare] training the demo SentencePiece model -> {path}")
  texts = []
  for task in demo_corpus.DEMO_TASKS:
    spec, chars = catalog.get_task(task), 0
    for item in sources.read_files(spec.files(), spec.text_fn):
      if isinstance(item, sources.Document) and chars < _SPM_TRAIN_CHARS_PER_TASK:
        texts.append(item.text)
        chars += len(item.text)
  return tokenizer_lib.train_demo_spm(texts, path)


class _Cleaner:
  """Applies the decontaminator to batches of texts and counts what it did."""

  def __init__(self, deco: decontaminator.Decontaminator, mode: str):
    self.decontaminator, self.mode = deco, mode
    self.benchmarks = list(deco.benchmarks)

  def __call__(self, texts: list[str], tally: collections.Counter,
               found: dict[str, set[str]] | None = None) -> list[str]:
    """Cleans `texts`; adds to the counts and, when given, to `found` {benchmark: item ids}."""
    kept = []
    for text, (cleaned, hits) in zip(texts, self.decontaminator.clean_batch(texts, self.mode)):
      tally.update(counts.document_counts(text, cleaned, hits))
      if found is not None:
        for hit in hits:
          found.setdefault(hit.benchmark, set()).add(hit.item_id)
      if cleaned is not None:
        kept.append(cleaned)
    return kept


def _make_cleaner(data_cfg, log: Callable[[str], None]) -> _Cleaner | None:
  """Returns the configured decontamination step, or None when disabled.

  A benchmark whose items cannot be loaded (e.g. offline) is skipped with a
  warning when `decontam.on_missing == "warn"`, and fails prepare otherwise.
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
    found = decontaminator.Decontaminator.from_benchmarks(names, cache_dir=cache_dir)
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
    found = decontaminator.Decontaminator.from_benchmarks(usable, cache_dir=cache_dir)
  return _Cleaner(found, data_cfg.decontam.mode)


def _task_fingerprint(spec: catalog.TaskSpec, files: list[str], tok, data_cfg,
                      dedup: dedup_step.DedupStep | None = None) -> str:
  # Benchmarks as the comma string earlier versions stored: the same settings
  # keep the same fingerprint, so folders prepared before still load.
  settings = dict(files=files, tokenizer=tok.fingerprint(), version=layout.FORMAT_VERSION,
                  heldout=(data_cfg.heldout_fraction, data_cfg.heldout_max_docs),
                  max_docs=data_cfg.max_docs_per_task, shard_docs=data_cfg.shard_docs,
                  decontam=(",".join(data_cfg.decontam.benchmarks), data_cfg.decontam.mode),
                  text_fn=spec.text_fn.__name__)
  if spec.seqio_task:  # Only then: fingerprints of file tasks stay as they were.
    settings["seqio"] = (spec.seqio_task, spec.seqio_split, spec.seqio_text_field)
  if dedup is not None:  # Likewise: without deduplication the fingerprint is unchanged.
    settings["dedup"] = dedup.settings()
  if data_cfg.decontam.benchmarks:  # The rules themselves, not only which benchmarks.
    settings["decontam_rules"] = decontaminator.rules_key(
        tuple(dict.fromkeys(data_cfg.decontam.benchmarks)))
  if not tok.adds_bos:  # Documents without BOS; with one, fingerprints stay as they were.
    settings["adds_bos"] = False
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _sorted_items(found: dict[str, set[str]]) -> dict[str, list[str]]:
  return {b: sorted(ids) for b, ids in sorted(found.items())}


class _Progress:
  """Cumulative per-task counters; saved next to every shard for resumption."""

  def __init__(self, state: dict | None = None):
    state = state or {}
    self.records = state.get("records", 0)
    self.docs = state.get("docs", 0)
    self.tokens = state.get("tokens", 0)
    self.bytes = state.get("bytes", 0)
    self.decontam = collections.Counter(state.get("decontam", {}))  # See decontam/counts.py.
    # Benchmark items found in the training documents: {benchmark: item ids}.
    self.decontam_items = {b: set(ids) for b, ids in state.get("decontam_items", {}).items()}
    self.malformed = state.get("malformed", 0)
    self.malformed_by_reason = dict(state.get("malformed_by_reason", {}))
    self.malformed_examples = list(state.get("malformed_examples", []))
    self.dedup = dedup_step.Tally(state.get("dedup"))

  def as_dict(self) -> dict:
    return {**vars(self), "decontam": dict(self.decontam),
            "decontam_items": _sorted_items(self.decontam_items), "dedup": self.dedup.as_dict()}

  def add_malformed(self, item: sources.Malformed, limit: int, task: str) -> None:
    self.malformed += 1
    reason = item.reason.split(" (")[0]
    self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1
    if len(self.malformed_examples) < _MALFORMED_EXAMPLES:
      self.malformed_examples.append(f"{item.where}: {item.reason}")
    if self.malformed > limit:
      listing = "\n  ".join(self.malformed_examples)
      raise ValueError(
          f"Task {task}: {self.malformed} malformed records, more than "
          f"data.max_malformed={limit}. First ones:\n  {listing}")


class _TaskWriter:
  """One task's output while it is read: train shards, held-out split, progress.

  Records before `resume_at` were counted in the progress saved with the last
  finished shard; they are read again only to rebuild the held-out split (and
  the deduplication index), never written or counted twice.

  The held-out split is a bottom-k hash sample of the task's kept documents
  (`documents.HeldoutSample`): a candidate that a document with a smaller key
  pushes out of it goes to the train shards then. Replaying the records
  before `resume_at` pushes out the same candidates at the same records, and
  those were written before the crash, so they are not written again.
  """

  def __init__(self, spec, task_dir: pathlib.Path, tok, data_cfg, clean: _Cleaner | None):
    self.spec, self.task_dir, self.tok, self.data_cfg, self.clean = (
        spec, task_dir, tok, data_cfg, clean)
    self.shard_index, state = layout.finished_shards(task_dir)
    self.progress = _Progress(state)
    self.resume_at = self.progress.records
    self.heldout = documents.HeldoutSample(data_cfg.heldout_fraction, data_cfg.heldout_max_docs)
    self.pending: list[str] = []

  def take(self, index: int, item, verdict) -> None:
    """Routes record `index` (a document or a malformed record, with its dedup verdict)."""
    replaying = index < self.resume_at
    kept = not isinstance(item, sources.Malformed) and (verdict is None or verdict.kept)
    if not replaying:
      if isinstance(item, sources.Malformed):
        self.progress.add_malformed(item, self.data_cfg.max_malformed, self.spec.name)
      elif verdict is not None:
        self.progress.dedup.add(verdict, item.text)
    if kept:
      train = self.heldout.offer(item.text)
      if train is not None and not replaying:
        self.pending.append(train)
    if not replaying:
      self.progress.records = index + 1
      if len(self.pending) >= self.data_cfg.shard_docs:
        self.flush(final=False)

  def flush(self, final: bool) -> None:
    """Cleans, tokenises and writes the pending documents as the next shard."""
    texts = self.pending
    if self.clean is not None:
      texts = self.clean(texts, self.progress.decontam, self.progress.decontam_items)
    docs = self._encode(texts)
    self.progress.docs += len(docs)
    self.progress.tokens += sum(len(d) for d in docs)
    self.progress.bytes += sum(len(t.encode("utf-8")) for t in texts)
    if docs or (final and self.shard_index == 0):
      layout.write_shard(self.task_dir, self.shard_index, docs, self.progress.as_dict())
      self.shard_index += 1
    self.pending = []

  def _encode(self, texts: list[str]) -> list:
    return [layout.encode_document(ids, self.tok) for ids in self.tok.encode_batch(texts)]

  def finish(self, fingerprint: str, files: list[str], dedup) -> dict:
    """Writes the held-out split and the task's stats.json; returns the stats."""
    heldout = self.heldout.documents()  # By hash key: the same in any read order.
    if self.clean is not None and heldout:
      # Not trained on: its hits are neither counted nor recorded as in the training data.
      heldout = self.clean(heldout, collections.Counter())
    heldout_docs = self._encode(heldout)
    # Per document, so a sample of the split has its exact byte count (evals/heldout.py).
    heldout_doc_bytes = [len(t.encode("utf-8")) for t in heldout]
    layout.write_heldout(self.task_dir, heldout_docs, heldout_doc_bytes)
    spec, progress, clean = self.spec, self.progress, self.clean
    stats = dict(
        task=spec.name, capability=spec.capability, fingerprint=fingerprint,
        train_shards=self.shard_index, train_docs=progress.docs, train_tokens=progress.tokens,
        train_bytes=progress.bytes, heldout_docs=len(heldout_docs),
        heldout_tokens=int(sum(len(d) for d in heldout_docs)),
        heldout_bytes=sum(heldout_doc_bytes), heldout_candidates=self.heldout.candidates,
        records_read=progress.records, malformed=progress.malformed,
        malformed_by_reason=progress.malformed_by_reason,
        malformed_examples=progress.malformed_examples,
        decontam=dict(benchmarks=clean.benchmarks if clean else [],
                      mode=self.data_cfg.decontam.mode if clean else "",
                      counts=dict(progress.decontam),
                      items=_sorted_items(progress.decontam_items)),
        dedup={**dedup.record(), **progress.dedup.as_dict()} if dedup is not None else {},
        max_epochs=spec.max_epochs, provenance=spec.provenance, licence=spec.licence,
        source_files=files)
    layout.write_stats(self.task_dir, stats)
    return stats


def _records(stream, dedup: dedup_step.DedupStep | None, data_cfg, task: str):
  """(record index, document or malformed record, dedup verdict or None), up to the cap."""
  limit = data_cfg.max_docs_per_task or None
  if dedup is None:
    return ((index, item, None) for index, item in itertools.islice(enumerate(stream), limit))
  # Every record is decided, those before the resume point too: they rebuild the index.
  dedup.begin_task()
  return dedup.filter(itertools.islice(enumerate(stream), limit), task)


def prepare_task(spec: catalog.TaskSpec, out_dir: pathlib.Path, tok, data_cfg,
                 log: Callable[[str], None] = print,
                 dedup: dedup_step.DedupStep | None = None) -> dict:
  """Writes one task's shards, held-out split and stats (resumable).

  Args:
    spec: the task.
    out_dir: the mixture's data folder.
    tok: the Tokenizer.
    data_cfg: the `data` config section.
    log: progress printer.
    dedup: the deduplication step shared by the tasks of a mixture (default:
      a step of this task alone when `data.dedup.levels` is set).

  Returns:
    The task's stats dict (also written to <out_dir>/<task>/stats.json).
  """
  task_dir = out_dir / spec.name
  if pretokenized.is_pretokenized(spec):
    return pretokenized.prepare_task(spec, task_dir, tok, data_cfg, log)
  files, stream = documents.read_documents(spec, data_cfg)
  if dedup is None and dedup_step.enabled(data_cfg):
    dedup = dedup_step.DedupStep(data_cfg)
  fingerprint = _task_fingerprint(spec, files, tok, data_cfg, dedup)
  if (task_dir / layout.STATS).exists():
    stats = layout.read_stats(out_dir, spec.name)
    if stats["fingerprint"] != fingerprint:
      raise ValueError(f"{task_dir} was prepared with other settings (tokenizer or its "
                       "BOS rule, split, decontamination, deduplication (data.dedup, and "
                       "with cross_task the tasks deduplicated before it) or format "
                       "version); delete it or choose another --out.")
    log(f"[prepare] {spec.name}: already prepared ({stats['train_docs']} docs)")
    return stats
  task_dir.mkdir(parents=True, exist_ok=True)
  writer = _TaskWriter(spec, task_dir, tok, data_cfg, _make_cleaner(data_cfg, log))
  if writer.shard_index:
    log(f"[prepare] {spec.name}: resuming after {writer.shard_index} finished shards")
  started = time.time()
  for index, item, verdict in _records(stream, dedup, data_cfg, spec.name):
    writer.take(index, item, verdict)
  writer.flush(final=True)
  if dedup is not None:
    dedup.end_task(fingerprint)
  stats = writer.finish(fingerprint, files, dedup)
  if stats["malformed"]:
    log(f"[prepare] WARNING: task {spec.name}: {stats['malformed']} malformed records "
        f"skipped, e.g. {stats['malformed_examples'][0]}")
  removed = (f", {writer.progress.dedup.counts['removed_docs']} duplicates"
             if dedup is not None else "")
  log(f"[prepare] {spec.name}: {stats['train_docs']} docs, {stats['train_tokens']:,} "
      f"tokens, {stats['heldout_docs']} held out, {stats['malformed']} malformed{removed} "
      f"({time.time() - started:.1f}s)")
  return stats


def _manifest_decontam(stats: dict) -> dict:
  """A task's decontamination as the manifest lists it: benchmarks, mode, items found.

  A task prepared before items were recorded has no `items` key: which items
  its documents held is unknown, not none.
  """
  record = layout.decontamination(stats)
  entry = {"benchmarks": record["benchmarks"], "mode": record["mode"]}
  if "items" in record:
    entry["items"] = record["items"]
  return entry


def _prepare_tasks(names: list[str], out: pathlib.Path, tok, data_cfg,
                   log: Callable[[str], None]) -> dict[str, dict]:
  """Prepares the tasks (in deduplication order when it is on); stats in mixture order."""
  if not dedup_step.enabled(data_cfg):
    return {name: prepare_task(catalog.get_task(name), out, tok, data_cfg, log)
            for name in names}
  step = dedup_step.DedupStep(data_cfg)
  order = dedup_step.dedup_order(names, data_cfg)
  stats = {}
  for i, name in enumerate(order):
    spec = catalog.get_task(name)
    fed = len(step.done)
    stats[name] = prepare_task(spec, out, tok, data_cfg, log, dedup=step)
    if len(step.done) == fed:  # Already prepared: its documents are not in the index yet.
      if step.cross_task and any(not (out / later / layout.STATS).exists()
                                 for later in order[i + 1:]):
        log(f"[prepare] {name}: reading it again for cross-task deduplication")
        step.replay(name, documents.read_documents(spec, data_cfg)[1], data_cfg.max_docs_per_task,
                    stats[name]["fingerprint"])
      else:
        step.end_task(stats[name]["fingerprint"])
  return {name: stats[name] for name in names}


def prepare(data_cfg, out_dir: str | pathlib.Path | None = None,
            log: Callable[[str], None] = print) -> dict:
  """Prepares every task of `data_cfg.mixture` and writes the manifest.

  Args:
    data_cfg: the `data` config section (mixture, tokenizer, prepare keys).
    out_dir: output folder; default `layout.resolve_dir(data_cfg)`.
    log: progress printer.

  Returns:
    The manifest dict.
  """
  mixture = catalog.get_mixture(data_cfg.mixture)
  out = pathlib.Path(out_dir) if out_dir else layout.resolve_dir(data_cfg)
  out.mkdir(parents=True, exist_ok=True)
  if data_cfg.tokenizer == tokenizer_lib.DEMO_SPM:
    ensure_demo_tokenizer(log)
  tok = tokenizer_lib.load_tokenizer(data_cfg.tokenizer)
  started = time.time()
  task_stats = _prepare_tasks(list(mixture.rates), out, tok, data_cfg, log)
  manifest = dict(
      version=layout.FORMAT_VERSION, mixture=mixture.name, tokenizer=data_cfg.tokenizer,
      tokenizer_fingerprint=tok.fingerprint(), vocab_size=tok.vocab_size,
      pad_id=tok.pad_id, eos_id=tok.eos_id, bos_id=tok.bos_id, adds_bos=tok.adds_bos,
      fim_ids=tok.fim_ids(),
      tasks={name: {**{k: s[k] for k in ("train_docs", "train_tokens", "heldout_docs",
                                         "capability", "max_epochs")},
                    "decontam": _manifest_decontam(s),
                    **({"dedup": dedup_step.manifest_entry(s["dedup"])} if s.get("dedup")
                       else {})}
             for name, s in task_stats.items()})
  layout.write_manifest(out, manifest)
  total = sum(s["train_tokens"] for s in task_stats.values())
  log(f"[prepare] {mixture.name}: {len(task_stats)} tasks, {total:,} tokens in "
      f"{out} ({time.time() - started:.1f}s)")
  if data_cfg.qau.enabled:
    # The scorer and the scores of every task, kept in the folder (qau_scores.py).
    qau_scores.ensure_scores(data_cfg, out, list(mixture.rates), log)
  return manifest


def ensure_prepared(data_cfg, log: Callable[[str], None] = print) -> pathlib.Path:
  """Prepares `data_cfg.mixture` unless its folder already is; returns the folder.

  What a training command runs before it builds a loader (the loader only
  loads). With `data.qau.enabled`, the quality scores for the current
  `data.qau` settings are made too when the folder lacks them.

  Raises:
    FileNotFoundError: the folder is not prepared and `data.prepare_if_missing`
      is off (the message names the prepare command).
  """
  data_dir = layout.resolve_dir(data_cfg)
  if layout.read_manifest(data_dir) is None:
    if not data_cfg.prepare_if_missing:
      raise FileNotFoundError(
          f"No prepared data in {data_dir} (missing {layout.MANIFEST}). Run "
          f"`{layout.prepare_command(data_cfg.mixture, data_dir)}` or set "
          "data.prepare_if_missing=True.")
    log(f"[data] {data_dir} has no prepared data; preparing {data_cfg.mixture} now")
    prepare(data_cfg, data_dir, log)
  elif data_cfg.qau.enabled:
    qau_scores.ensure_scores(data_cfg, data_dir, list(catalog.get_mixture(data_cfg.mixture).rates),
                             log)
  return data_dir
