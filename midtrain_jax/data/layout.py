"""The prepared-data folder: the one module that knows its files.

The preparation (data/prepare/) writes it, the loader (data/load/) reads it
for training and evaluation, reports and listings read its statistics; all
through here.

  manifest.json                     tokenizer, special ids, `adds_bos` (the document
                                    layout below), tasks; written last
  <task>/train-00000.array_record   one record per document: uint32 token ids
  <task>/train-00000.json           cumulative counts of the task's train records up to
                                    that shard's end (data/prepare/writing.py)
  <task>/heldout.array_record       held-out documents (bits-per-byte evaluation), by
                                    hash key (documents.HeldoutSample; format 3 on)
  <task>/heldout_bytes.json         UTF-8 size of each held-out document, in record
                                    order (format 2 on)
  <task>/train-00000.loss_mask.array_record
                                    chat (SFT) tasks only: per document of the shard,
                                    in the same order, one uint8 per token, 1 where
                                    the token is a response token (data/chat.py)
  <task>/heldout.loss_mask.array_record
                                    the same for the held-out documents
  <task>/heldout_scored_bytes.json  chat tasks only: UTF-8 size of each held-out
                                    document's responses (what its scored tokens spell)
  <task>/stats.json                 docs, tokens, bytes, dropped records and why,
                                    decontamination: {benchmarks, mode, counts,
                                    items} with the counter names of
                                    decontam/counts.py; deduplication (when
                                    data.dedup is on): {params, reference,
                                    cross_task, counts, examples} with the
                                    counter names of dedup/counts.py
  quality/scorer.npz                quality scorer weights (data/prepare/quality.py); only
                                    once quality-aware upsampling ran (data/load/upsampling.py)
  quality/scorer.json               its settings, fingerprint, held-out accuracy
  <task>/quality_scores.npz         quality score and length of each train document
                                    in record order, with the scorer and task
                                    fingerprints they were made with

The manifest's entry of each task repeats its decontamination as `decontam:
{benchmarks, mode, items}`; `items` is {benchmark: sorted ids of the items
found in the task's training documents} (held-out documents are not trained
on and not listed). With mode "keep" those items stayed in the training data,
with "drop" or "cut" they were removed; evaluation scores them apart
(evals/contamination.py). Folders prepared before items were recorded have no
`items`: which items they held is unknown.

A stored document is `[bos] tokens [eos]` when the tokenizer starts a
sequence with BOS (`Tokenizer.adds_bos`: the demo vocabulary does), else
`tokens [eos]` (SmolLM2's own tokenizer adds no BOS): documents start as the
model's tokenizer starts a text, and EOS separates them. The manifest records
which (`adds_bos`); folders prepared before it was recorded start with BOS
(`starts_with_bos`). A tokenizer without BOS prepares into its own folder
(`default_dir`), and the rule is part of each task's fingerprint, so a folder
of the other layout is never reused.

A chat task's documents (tokens as above) carry a loss mask in a parallel
file, so every reader of tokens reads them unchanged and text tasks' folders
are as they were; the loader scores only the targets whose token the mask
marks (`mask_files`). A task has masks when its first train shard has them
(`has_masks`); its stats' `train_bytes` is then the size of the conversations
as the task's text (canonical JSON), its `heldout_bytes.json` likewise, and
`heldout_scored_bytes.json` the responses' size, which held-out response bits
per byte divides by.

Every file is written whole under a temporary name and renamed, so a killed
run never leaves a half shard that would be read as complete.
"""
import hashlib
import json
import pathlib
import zipfile

import numpy as np
from array_record.python import array_record_module

from midtrain_jax import cache, files
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.data.mixtures import mixture_file

MANIFEST = "manifest.json"
STATS = "stats.json"
# Bump when the layout or the record encoding changes (part of every task's fingerprint).
# 2: per-document byte counts of the held-out split (heldout_bytes.json).
# 3: the held-out split is a bottom-k hash sample of the whole source
#    (documents.HeldoutSample), stored by hash, no longer the first candidates
#    in read order (the same documents where a task had at most
#    data.heldout_max_docs candidates). Folders of format 2 still read.
# 4: train documents in the canonical key order (task rank, file rank, position;
#    data/prepare/records.py), shard i holding the kept documents
#    [i * shard_docs, (i + 1) * shard_docs) after decontamination, the local and
#    the Beam runner alike; held-out ties broken by that key; each shard's json
#    counts the train records up to its end. Folders of format 3 still read.
FORMAT_VERSION = 4


def prepared_root() -> pathlib.Path:
  """Where this format's prepared folders live in the cache (one folder per format)."""
  return cache.cache_root() / "prepared" / f"v{FORMAT_VERSION}"


def default_dir(mixture: str, tokenizer: str = tokenizer_lib.DEMO_SPM,
                decontam: tuple[str, ...] = (), decontam_mode: str = "drop",
                dedup: dict | None = None) -> pathlib.Path:
  """Where shards live unless `data.data_dir` says otherwise.

  <cache>/prepared/v<FORMAT_VERSION>/<mixture> for the demo tokenizer without
  decontamination (folders of older formats are left alone, never half-reused);
  any other tokenizer adds `@<its fingerprint>` (then `-nobos` when its
  documents start without BOS: `tokenizer_key`) and decontamination
  `+decon-<hash of the benchmarks and mode>` and deduplication (`dedup`, the
  `data.dedup` section when levels are on) `+dedup-<hash of its settings>`,
  so shards are never shared across vocabularies or cleaning settings. A mixture file's folder is
  `<its name>-<hash of its content>`, so an edited file gets fresh shards.
  """
  name = mixture_file.folder_name(mixture) if mixture_file.is_mixture_file(mixture) else mixture
  if tokenizer != tokenizer_lib.DEMO_SPM:
    name += f"@{tokenizer_key(tokenizer_lib.load_tokenizer(tokenizer))}"
  if decontam:
    key = json.dumps([sorted(decontam), decontam_mode])
    name += f"+decon-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
  name += dedup_suffix(dedup)
  return prepared_root() / name


def tokenizer_key(tok: tokenizer_lib.Tokenizer) -> str:
  """A tokenizer's part of a folder name: its fingerprint, `-nobos` when it adds no BOS.

  The rule decides what is stored (module docstring), so the two layouts never
  share a folder, whether the tokenizer's files state the rule or leave it to
  the post-processor.
  """
  return tok.fingerprint() + ("" if tok.adds_bos else "-nobos")


def dedup_suffix(dedup: dict | None) -> str:
  """`+dedup-<hash>` of a `data.dedup` section (as a dict) with levels on, else ""."""
  if not dedup or not dedup.get("levels"):
    return ""
  key = json.dumps(dedup, sort_keys=True, default=list)
  return f"+dedup-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def resolve_dir(data_cfg) -> pathlib.Path:
  """`data_cfg.data_dir`, or the default folder of its mixture, tokenizer and cleaning."""
  if data_cfg.data_dir:
    return pathlib.Path(data_cfg.data_dir)
  return default_dir(data_cfg.mixture, data_cfg.tokenizer, tuple(data_cfg.decontam.benchmarks),
                     data_cfg.decontam.mode, data_cfg.dedup.to_dict())


def prepare_command(mixture: str, data_dir: str | pathlib.Path) -> str:
  """The command that prepares `mixture` into `data_dir` (what error messages name)."""
  return f"python -m midtrain_jax.data.prepare --mixture={mixture} --out={data_dir}"


def train_shard(task_dir: pathlib.Path, index: int) -> pathlib.Path:
  return task_dir / f"train-{index:05d}.array_record"


def _shard_progress(task_dir: pathlib.Path, index: int) -> pathlib.Path:
  return task_dir / f"train-{index:05d}.json"


def heldout_file(task_dir: pathlib.Path) -> pathlib.Path:
  return task_dir / "heldout.array_record"


def heldout_bytes_file(task_dir: pathlib.Path) -> pathlib.Path:
  return task_dir / "heldout_bytes.json"


def mask_file(records: pathlib.Path) -> pathlib.Path:
  """The loss-mask file beside an ArrayRecord file of documents."""
  return records.with_name(records.name.replace(".array_record", ".loss_mask.array_record"))


def heldout_scored_bytes_file(task_dir: pathlib.Path) -> pathlib.Path:
  return task_dir / "heldout_scored_bytes.json"


class MaskedDocument(np.ndarray):
  """A stored document's tokens (uint32) that carry their loss mask and scored bytes.

  What the preparation makes of a chat record (data/chat.py): it is written
  like any document, and `write_documents` writes its mask beside it.

  Attributes:
    loss_mask: uint8 per token, 1 on response tokens.
    scored_bytes: UTF-8 size of the responses.
  """
  loss_mask: np.ndarray
  scored_bytes: int

  @classmethod
  def of(cls, tokens: np.ndarray, loss_mask: np.ndarray, scored_bytes: int) -> "MaskedDocument":
    if len(tokens) != len(loss_mask):
      raise ValueError(f"{len(tokens)} tokens but a loss mask of {len(loss_mask)}.")
    doc = np.asarray(tokens, np.uint32).view(cls)
    doc.loss_mask = np.asarray(loss_mask, np.uint8)
    doc.scored_bytes = int(scored_bytes)
    return doc

  def __reduce__(self):
    # numpy pickles a subclass without its attributes; Beam moves documents
    # between workers by pickling them.
    return (MaskedDocument.of, (np.asarray(self), self.loss_mask, self.scored_bytes))


def encode_document(ids: list[int], tok: tokenizer_lib.Tokenizer) -> np.ndarray:
  """A document as stored: `tok.start_ids() + tokens + [eos]`, uint32 (module docstring)."""
  return np.asarray([*tok.start_ids(), *ids, tok.eos_id], np.uint32)


def starts_with_bos(manifest: dict) -> bool:
  """Whether the stored documents of a prepared folder start with BOS (its manifest's
  `adds_bos`; folders prepared before it was recorded always did)."""
  return bool(manifest.get("adds_bos", True))


def document_body(doc: np.ndarray, with_bos: bool) -> np.ndarray:
  """A stored document's text tokens: without its BOS (when `with_bos`) and its EOS."""
  return doc[int(with_bos):-1]


def decode_record(record: bytes) -> np.ndarray:
  """The int32 token ids of one stored document."""
  return np.frombuffer(record, np.uint32).astype(np.int32)


def _write_records(path: pathlib.Path, records: list[bytes]) -> None:
  def write(tmp: str) -> None:
    writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
    for record in records:
      writer.write(record)
    writer.close()
  files.write_with(path, write)


def write_documents(path: pathlib.Path, docs: list[np.ndarray]) -> None:
  """Writes documents to an ArrayRecord file, atomically; `MaskedDocument`s' loss
  masks go to the parallel mask file first (the documents' file marks both done)."""
  masked = [isinstance(doc, MaskedDocument) for doc in docs]
  if any(masked):
    if not all(masked):
      raise ValueError(f"{path}: documents with and without loss masks in one file.")
    _write_records(mask_file(path), [doc.loss_mask.astype(np.uint8).tobytes() for doc in docs])
  _write_records(path, [np.asarray(doc, np.uint32).tobytes() for doc in docs])


def has_masks(data_dir: pathlib.Path, task: str) -> bool:
  """Whether a prepared task's documents carry loss masks (a chat task)."""
  return mask_file(train_shard(files.path(data_dir) / task, 0)).exists()


def decode_mask(record: bytes) -> np.ndarray:
  """The int32 loss mask of one stored document."""
  return np.frombuffer(record, np.uint8).astype(np.int32)


def mask_files(files_: list[str]) -> list[str]:
  """The mask files of a masked task's document files (checked to exist)."""
  masks = [str(mask_file(pathlib.Path(f))) for f in files_]
  missing = [m for m in masks if not pathlib.Path(m).exists()]
  if missing:
    raise FileNotFoundError(f"Loss-mask files missing: {missing}; re-prepare the task.")
  return masks


def read_heldout_scored_bytes(data_dir: pathlib.Path, task: str) -> list[int] | None:
  """UTF-8 size of each held-out document's responses (chat tasks), or None."""
  path = heldout_scored_bytes_file(files.path(data_dir) / task)
  return json.loads(path.read_text()) if path.exists() else None


def write_heldout(task_dir: pathlib.Path, docs: list[np.ndarray], doc_bytes: list[int]) -> None:
  """Writes the held-out split: its documents and each one's UTF-8 size, in order."""
  if len(docs) != len(doc_bytes):
    raise ValueError(f"{len(docs)} held-out documents but {len(doc_bytes)} byte counts.")
  files.write_json(heldout_bytes_file(task_dir), [int(n) for n in doc_bytes], indent=None)
  if docs and all(isinstance(doc, MaskedDocument) for doc in docs):
    files.write_json(heldout_scored_bytes_file(task_dir), [doc.scored_bytes for doc in docs],
                     indent=None)
  write_documents(heldout_file(task_dir), docs)


def read_heldout_bytes(data_dir: pathlib.Path, task: str) -> list[int] | None:
  """UTF-8 size of each held-out document of `task`, in record order.

  None for folders prepared before format 2, which stored only the split's
  total (`heldout_bytes` in stats.json).
  """
  path = heldout_bytes_file(files.path(data_dir) / task)
  return json.loads(path.read_text()) if path.exists() else None


def write_shard(task_dir: pathlib.Path, index: int, docs: list[np.ndarray],
                progress: dict) -> None:
  """Writes train shard `index` and, first, the progress it completes."""
  write_shard_progress(task_dir, index, progress)
  write_documents(train_shard(task_dir, index), docs)


def write_shard_progress(task_dir: pathlib.Path, index: int, progress: dict) -> None:
  """Writes the progress saved with train shard `index` (a shard counts once both exist)."""
  files.write_json(_shard_progress(task_dir, index), progress)


def finished_shards(task_dir: pathlib.Path) -> tuple[int, dict | None]:
  """(number of complete train shards, progress saved with the last one).

  A shard is complete once its records and its progress both exist (a
  parallel writer may write either first).
  """
  count, progress = 0, None
  while train_shard(task_dir, count).exists() and _shard_progress(task_dir, count).exists():
    progress = json.loads(_shard_progress(task_dir, count).read_text())
    count += 1
  return count, progress


def write_stats(task_dir: pathlib.Path, stats: dict) -> None:
  files.write_json(task_dir / STATS, stats)


def read_stats(data_dir: pathlib.Path, task: str) -> dict:
  """A prepared task's statistics; FileNotFoundError naming the task when missing."""
  path = files.path(data_dir) / task / STATS
  if not path.exists():
    raise FileNotFoundError(f"Task {task} is not prepared: {path} is missing.")
  return json.loads(path.read_text())


def quality_dir(data_dir: pathlib.Path) -> pathlib.Path:
  """The folder of the quality scorer (quality-aware upsampling)."""
  return files.path(data_dir) / "quality"


def write_quality_scorer(data_dir: pathlib.Path, arrays: dict[str, np.ndarray],
                         meta: dict) -> None:
  """Writes the scorer's arrays, then its metadata (the json marks it complete)."""
  folder = quality_dir(data_dir)
  folder.mkdir(parents=True, exist_ok=True)
  with files.open_atomic(folder / "scorer.npz", "wb") as f:
    np.savez(f, **arrays)
  files.write_json(folder / "scorer.json", meta)


def read_quality_scorer(data_dir: pathlib.Path) -> tuple[dict[str, np.ndarray], dict] | None:
  """(arrays, metadata) of the folder's quality scorer, or None when there is none."""
  folder = quality_dir(data_dir)
  if not (folder / "scorer.json").exists():
    return None
  with (folder / "scorer.npz").open("rb") as f, np.load(f, allow_pickle=False) as loaded:
    arrays = {k: loaded[k] for k in loaded.files}
  return arrays, json.loads((folder / "scorer.json").read_text())


def _quality_scores_file(data_dir: pathlib.Path, task: str) -> pathlib.Path:
  return files.path(data_dir) / task / "quality_scores.npz"


def write_quality_scores(data_dir: pathlib.Path, task: str, scores: np.ndarray,
                         tokens: np.ndarray, *, scorer: str, task_fingerprint: str) -> None:
  """Writes the quality score and length of each train document of `task`, in record order.

  Args:
    data_dir: the prepared folder.
    task: the task.
    scores: one float per train document.
    tokens: each document's stored length (its EOS, and its BOS where it has one,
      included).
    scorer: fingerprint of the scorer that made them.
    task_fingerprint: the task's `fingerprint` in stats.json when scored.
  """
  with files.open_atomic(_quality_scores_file(data_dir, task), "wb") as f:
    np.savez(f, scores=np.asarray(scores, np.float32), tokens=np.asarray(tokens, np.int64),
             scorer=np.asarray(scorer), task=np.asarray(task_fingerprint))


def _quality_scores_part(task_dir: pathlib.Path, shard: int) -> pathlib.Path:
  return task_dir / f"quality_scores-{shard:05d}.npz"


def write_quality_scores_part(task_dir: pathlib.Path, shard: int, scores: np.ndarray,
                              tokens: np.ndarray) -> None:
  """One train shard's part of `write_quality_scores`, for `join_quality_scores`."""
  with files.open_atomic(_quality_scores_part(task_dir, shard), "wb") as f:
    np.savez(f, scores=np.asarray(scores, np.float32), tokens=np.asarray(tokens, np.int64))


def join_quality_scores(data_dir: pathlib.Path, task: str, shards: int, *, scorer: str,
                        task_fingerprint: str) -> None:
  """`write_quality_scores` from the task's `shards` parts, in shard order.

  The same file, written by streaming each array part by part: one part in
  memory at a time, however many documents the task has. The parts stay
  (`remove_quality_scores_parts`).
  """
  task_dir = files.path(data_dir) / task
  parts = [_quality_scores_part(task_dir, shard) for shard in range(shards)]
  sizes = []
  for part in parts:
    with part.open("rb") as f, np.load(f, allow_pickle=False) as loaded:
      sizes.append(len(loaded["scores"]))
  with files.open_atomic(_quality_scores_file(data_dir, task), "wb") as f, \
       zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
    for name, dtype in (("scores", np.float32), ("tokens", np.int64)):
      with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": (sum(sizes),)})
        for part in parts:
          with part.open("rb") as f, np.load(f, allow_pickle=False) as loaded:
            member.write(np.ascontiguousarray(loaded[name], dtype).tobytes())
    for name, value in (("scorer", scorer), ("task", task_fingerprint)):
      with archive.open(f"{name}.npy", "w") as member:
        np.lib.format.write_array(member, np.asarray(value))


def remove_quality_scores_parts(task_dir: pathlib.Path, shards: int) -> None:
  """Removes the parts `join_quality_scores` joined (those still there)."""
  for shard in range(shards):
    _quality_scores_part(task_dir, shard).unlink(missing_ok=True)


def read_quality_scores(data_dir: pathlib.Path, task: str) -> dict | None:
  """{scores, tokens, scorer, task} as written by `write_quality_scores`, or None."""
  path = _quality_scores_file(data_dir, task)
  if not path.exists():
    return None
  with path.open("rb") as f, np.load(f, allow_pickle=False) as loaded:
    return {"scores": loaded["scores"], "tokens": loaded["tokens"],
            "scorer": str(loaded["scorer"]),
            "task": str(loaded["task"])}


def write_manifest(data_dir: pathlib.Path, manifest: dict) -> None:
  files.write_json(files.path(data_dir) / MANIFEST, manifest)


def read_manifest(data_dir: pathlib.Path) -> dict | None:
  """The manifest, or None when the folder holds no finished preparation."""
  path = files.path(data_dir) / MANIFEST
  return json.loads(path.read_text()) if path.exists() else None


def shard_files(data_dir: pathlib.Path, task: str, split: str) -> list[str]:
  """The ArrayRecord files of a task's "train" or "heldout" split, checked to exist."""
  task_dir = pathlib.Path(data_dir) / task
  stats = read_stats(data_dir, task)
  paths = ([train_shard(task_dir, i) for i in range(stats["train_shards"])]
           if split == "train" else [heldout_file(task_dir)])
  missing = [p.name for p in paths if not p.exists()]
  if missing:
    raise FileNotFoundError(f"Task {task}: shard files missing in {task_dir}: {missing}")
  return [str(p) for p in paths]


def decontamination(stats: dict) -> dict:
  """A task's decontamination record: {benchmarks, mode, counts}.

  Folders prepared before the record was grouped kept flat keys
  (`decontam_benchmarks`, `decontam_dropped`, ...); they read the same.
  """
  if "decontam" in stats:
    return stats["decontam"]
  hits = {f"hits/{name}": n for name, n in stats.get("decontam_hits", {}).items()}
  return {"benchmarks": stats.get("decontam_benchmarks", []),
          "mode": stats.get("decontam_mode", ""),
          "counts": {"dropped_docs": stats.get("decontam_dropped", 0),
                     "cut_docs": stats.get("decontam_cut", 0), **hits}}


def missing_benchmarks(data_dir: pathlib.Path, tasks: list[str],
                       suite: tuple[str, ...]) -> dict[str, list[str]]:
  """{task: benchmarks of `suite` it was not decontaminated against}, gaps only."""
  gaps = {}
  for task in tasks:
    done = decontamination(read_stats(data_dir, task))["benchmarks"]
    missing = [b for b in suite if b not in done]
    if missing:
      gaps[task] = missing
  return gaps


def decontamination_summary(data_dir: str | pathlib.Path) -> list[dict]:
  """Per task of a prepared folder: benchmarks checked and documents removed.

  Returns:
    One dict per task: task, capability, train_docs, dropped, cut, hits
    ({benchmark: hits}), benchmarks.
  """
  manifest = read_manifest(data_dir)
  if manifest is None:
    raise FileNotFoundError(f"{data_dir} is not a prepared data folder (no {MANIFEST}).")
  rows = []
  for task in sorted(manifest["tasks"]):
    stats = read_stats(data_dir, task)
    record = decontamination(stats)
    counts = record["counts"]
    hits = {k.split("/", 1)[1]: n for k, n in sorted(counts.items()) if k.startswith("hits/")}
    rows.append({"task": task, "capability": stats["capability"],
                 "train_docs": stats["train_docs"], "dropped": counts.get("dropped_docs", 0),
                 "cut": counts.get("cut_docs", 0), "hits": hits,
                 "benchmarks": record["benchmarks"]})
  return rows


def deduplication(stats: dict) -> dict:
  """A task's deduplication record ({} when it was prepared without deduplication)."""
  return stats.get("dedup") or {}


def deduplication_summary(data_dir: str | pathlib.Path) -> list[dict]:
  """Per task of a prepared folder: documents read and removed as duplicates, by level.

  Returns:
    One dict per task: task, train_docs, levels, docs, removed, by_level
    ({level: duplicates}), cross_task (copies of another task's documents),
    reference ({level: matches}), reference_mode, across_tasks (the setting),
    skipped_comparisons (cut by the bucket cap, dedup/buckets.py); an empty
    list when no task was deduplicated.
  """
  manifest = read_manifest(data_dir)
  if manifest is None:
    raise FileNotFoundError(f"{data_dir} is not a prepared data folder (no {MANIFEST}).")
  rows = []
  for task in sorted(manifest["tasks"]):
    stats = read_stats(data_dir, task)
    record = deduplication(stats)
    if not record:
      continue
    found = record["counts"]
    rows.append({
        "task": task, "train_docs": stats["train_docs"], "levels": record["params"]["levels"],
        "docs": found.get("docs", 0), "removed": found.get("removed_docs", 0),
        "by_level": {k.split("/", 1)[1]: n for k, n in sorted(found.items())
                     if k.startswith("duplicates/")},
        "cross_task": found.get("cross_task", 0),
        "reference": {k.split("/", 1)[1]: n for k, n in sorted(found.items())
                      if k.startswith("reference/")},
        "reference_mode": record["params"]["reference_mode"],
        "across_tasks": bool(record.get("cross_task")),
        "skipped_comparisons": found.get("skipped_comparisons", 0)})
  return rows


def cached_counts(task: str) -> tuple[int, int] | None:
  """(train docs, train tokens) of `task` from any prepared folder in the cache."""
  for path in sorted(prepared_root().glob(f"**/{task}/{STATS}")):
    stats = json.loads(path.read_text())
    return stats["train_docs"], stats["train_tokens"]
  return None
