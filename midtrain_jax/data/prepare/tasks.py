"""The preparation: every task of a mixture read, deduplicated, decontaminated, tokenised, sharded.

Command line: `python -m midtrain_jax.data.prepare` (__main__.py). The
folder it writes is described in `data/layout.py`.

Two runners apply the same stages (records.py, decisions.py, writing.py) in
the same canonical key order, so they write the same folder: "local" (one
process, local.py) and "beam" (an Apache Beam pipeline, beam.py, on any Beam
runner). Idempotent and resumable: a task with stats.json of the same
settings is done; the others are (re)prepared, the local runner resuming
after its last finished shard. Each document is `tokens + [eos]` after the
tokenizer's start (`[bos]` when it adds one: `layout.encode_document`).
"""
import pathlib
import shlex
import time
from collections.abc import Callable, Sequence

from midtrain_jax import files
from midtrain_jax.data import layout
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import catalog
from midtrain_jax.data.mixtures.corpora import demo as demo_corpus
from midtrain_jax.data.prepare import dedup_step, local, qau_scores
from midtrain_jax.data.prepare import run_plan as plan_lib
from midtrain_jax.documents import readers as sources

_SPM_TRAIN_CHARS_PER_TASK = 1_500_000
RUNNERS = ("local", "beam")
# Beam runners whose workers run on machines of their own, with no shared files.
_REMOTE_WORKERS = ("dataflow",)


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


def _pretokenized(specs: Sequence) -> list:
  """The tasks whose published token files are copied rather than tokenised.

  The one place both runners hand such a task over: a spec with `token_files`
  goes to `pretokenized.prepare_task` (data/prepare/pretokenized.py), which
  writes its folder; the runners prepare the others.
  """
  return [s for s in specs if getattr(s, "token_files", None)]


def prepare_task(spec: catalog.TaskSpec, out_dir: pathlib.Path, tok, data_cfg,
                 log: Callable[[str], None] = print) -> dict:
  """Prepares one task alone with the local runner (resumable); returns its stats.

  Args:
    spec: the task.
    out_dir: the mixture's data folder.
    tok: the Tokenizer.
    data_cfg: the `data` config section.
    log: progress printer.
  """
  if _pretokenized([spec]):
    from midtrain_jax.data.prepare import pretokenized  # noqa: PLC0415
    return pretokenized.prepare_task(spec, pathlib.Path(out_dir) / spec.name, tok, data_cfg, log)
  run = plan_lib.make_plan([spec], pathlib.Path(out_dir), tok, data_cfg, log)
  stats = _run(run, "local", (), log)
  return stats[spec.name]


def _run(run: plan_lib.Plan, runner: str, beam_options: Sequence[str],
         log: Callable[[str], None]) -> dict[str, dict]:
  """Prepares the plan's pending tasks with `runner`; returns every task's stats."""
  for spec in run.specs:
    if spec.name in run.done:
      log(f"[prepare] {spec.name}: already prepared")
  if run.pending:
    if runner == "beam":
      from midtrain_jax.data.prepare import beam  # noqa: PLC0415  Only this runner needs Beam.
      beam.run(run, beam_options, log)
    else:
      local.run(run, log)
  stats = {}
  for spec in run.specs:
    stats[spec.name] = layout.read_stats(run.out, spec.name)
    found = stats[spec.name]
    if found["malformed"]:
      log(f"[prepare] WARNING: task {spec.name}: {found['malformed']} malformed records "
          f"skipped, e.g. {found['malformed_examples'][0]}")
  return stats


def parse_beam_options(text: str | Sequence[str], out: str | pathlib.Path = "") -> list[str]:
  """Beam pipeline options from a command-line string, checked to be known to Beam.

  Args:
    text: the options.
    out: the output folder: a runner whose workers share no filesystem with
      this machine (Dataflow) needs a URL that they reach (gs://...).

  Raises:
    ValueError: naming the options Beam does not know, or a remote runner with
      a local output folder.
  """
  from apache_beam.options import pipeline_options  # noqa: PLC0415  Beam only when asked for.
  args = shlex.split(text) if isinstance(text, str) else list(text)
  options = pipeline_options.PipelineOptions(args)
  known = options.get_all_options(retain_unknown_options=False)
  unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
  loose = [a for a in args if not a.startswith("--")]
  if unknown or loose:
    raise ValueError(f"--beam_options: not Beam pipeline options: {unknown + loose} "
                     f"(in {args}).")
  runner = options.view_as(pipeline_options.StandardOptions).runner or ""
  # Beam takes a runner's name in any case, with or without "Runner" (runners/runner.py).
  remote = runner.lower().removesuffix("runner").removeprefix("test") in _REMOTE_WORKERS
  if remote and not files.is_url(out):
    raise ValueError(
        f"--beam_options: --runner={runner}: its workers share no filesystem with this "
        f"machine, so they cannot write the local folder {str(out) or '(default)'}. Give "
        "--out a bucket they reach (--out=gs://BUCKET/FOLDER): the workers write the "
        "prepared folder there and read the tokenizer and decontamination index the "
        "launcher stages in it.")
  return args


def prepare(data_cfg, out_dir: str | pathlib.Path | None = None,
            log: Callable[[str], None] = print, runner: str = "local",
            beam_options: str | Sequence[str] = ()) -> dict:
  """Prepares every task of `data_cfg.mixture` and writes the manifest.

  Args:
    data_cfg: the `data` config section (mixture, tokenizer, prepare keys).
    out_dir: output folder; default `layout.resolve_dir(data_cfg)`; a URL
      (gs://...) with the Beam runner.
    log: progress printer.
    runner: "local" (this process) or "beam" (an Apache Beam pipeline); both
      write the same folder.
    beam_options: the Beam pipeline options (e.g. "--runner=FnApiRunner
      --direct_num_workers=2 --direct_running_mode=multi_processing").

  Returns:
    The manifest dict.
  """
  if runner not in RUNNERS:
    raise ValueError(f"Unknown prepare runner {runner!r}: expected one of {RUNNERS}.")
  out = files.path(out_dir) if out_dir else layout.resolve_dir(data_cfg)
  options = parse_beam_options(beam_options, out) if runner == "beam" else []
  if files.is_url(out) and runner != "beam":
    raise ValueError(f"--out={out}: a folder at a URL is written by the Beam runner "
                     "(--runner=beam); the local runner writes a local folder.")
  mixture = catalog.get_mixture(data_cfg.mixture)
  specs = [catalog.get_task(name) for name in mixture.rates]
  if files.is_url(out) and _pretokenized(specs):
    raise ValueError(f"--out={out}: tasks of published token files "
                     f"({[s.name for s in _pretokenized(specs)]}) are copied into a local "
                     "folder only; prepare the mixture into a local folder.")
  out.mkdir(parents=True, exist_ok=True)
  if data_cfg.tokenizer == tokenizer_lib.DEMO_SPM:
    ensure_demo_tokenizer(log)
  tok = tokenizer_lib.load_tokenizer(data_cfg.tokenizer)
  started = time.time()
  if _pretokenized(specs):
    from midtrain_jax.data.prepare import pretokenized  # noqa: PLC0415
    for spec in _pretokenized(specs):
      pretokenized.prepare_task(spec, out / spec.name, tok, data_cfg, log)
  run = plan_lib.make_plan([s for s in specs if s not in _pretokenized(specs)], out, tok,
                           data_cfg, log)
  found = _run(run, runner, options, log)
  task_stats = {name: found.get(name) or layout.read_stats(out, name) for name in mixture.rates}
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
    # The scorer and the scores of every task, kept in the folder (qau_scores.py): made
    # from the written shards, so both runners' folders get the same scores.
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
