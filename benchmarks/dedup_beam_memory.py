"""Peak memory per Beam worker of `beam_components.Resolve` against corpus size.

Run through `python -m benchmarks.dedup --worker_memory` (see its docstring):
each size runs in a fresh process (`--one_size`), whose FnApiRunner starts
`--beam_workers` (2) worker processes; a sampler reads the peak resident memory (VmHWM) of every
child process while the pipeline runs.
"""
import json
import math
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import threading
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from midtrain_jax.dedup import beam_components, components, deduplicator, params

_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
_VOCABULARY = 20_000
_WORDS = 400
_SHARD = 500  # Documents made by one element on a worker.


def _text(j: int) -> str:
  rng = random.Random(j)
  return " ".join(f"v{rng.randrange(_VOCABULARY)}" for _ in range(_WORDS))


def _edited(text: str, seed: int, rate: float = 0.05) -> str:
  rng = random.Random(seed)
  return " ".join(f"v{rng.randrange(_VOCABULARY)}" if rng.random() < rate else w
                  for w in text.split())


def _documents(shard: int, n: int):
  """(key, text) of documents shard * _SHARD.. of a corpus of n, with its copies."""
  for j in range(shard * _SHARD, min(n, (shard + 1) * _SHARD)):
    yield (j, 0), _text(j)
    if j % 10 == 0:  # A near copy of another document (usually of another shard).
      yield (j, 1), _edited(_text(j * 7919 % n), j)
    if j % 50 == 0:  # An exact copy (normalised text equal).
      yield (j, 2), _text(j * 104729 % n).upper()


class _Generate(beam.DoFn):
  """Items of one shard of the synthetic corpus, made and fingerprinted on a worker."""

  def __init__(self, n: int):
    self._n = n
    self._dedup = None

  def setup(self):
    self._dedup = deduplicator.Deduplicator(params.DedupParams())

  def process(self, shard):
    docs = list(_documents(shard, self._n))
    for (key, _), fp in zip(docs, self._dedup.fingerprint([text for _, text in docs])):
      yield components.Item(key, str(key), "synthetic", fp)


def _peak_rss_mb(pid: int) -> float:
  try:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def _descendants(pid: int) -> list[int]:
  """Every process below `pid` (children of any of its threads, recursively)."""
  found = []
  try:
    threads = os.listdir(f"/proc/{pid}/task")
  except OSError:
    return found
  for tid in threads:
    try:
      with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
        children = [int(c) for c in f.read().split()]
    except OSError:
      continue
    for child in children:
      found += [child] + _descendants(child)
  return found


def _sample(peaks: dict, stop: threading.Event) -> None:
  """Keeps each child process' latest peak resident memory (VmHWM only grows)."""
  while not stop.is_set():
    for child in _descendants(os.getpid()):
      peaks[child] = max(peaks.get(child, 0.0), _peak_rss_mb(child))
    stop.wait(0.2)


def run_once(n: int, workers: int = 2) -> dict:
  """Runs Resolve over a synthetic corpus of n documents (and their copies) on `workers`."""
  os.environ["PYTHONPATH"] = _ROOT  # The workers import this checkout.
  options = PipelineOptions(["--runner=FnApiRunner", f"--direct_num_workers={workers}",
                             "--direct_running_mode=multi_processing"])
  peaks, stop = {}, threading.Event()
  sampler = threading.Thread(target=_sample, args=(peaks, stop), daemon=True)
  sampler.start()
  out = tempfile.mkdtemp(prefix="dedup_memory_")
  started = time.perf_counter()
  with beam.Pipeline(options=options) as pipeline:
    verdicts = (pipeline | beam.Create(range(math.ceil(n / _SHARD))) | beam.Reshuffle()
                | beam.ParDo(_Generate(n)) | beam_components.Resolve(params.DedupParams()))
    _ = (verdicts | beam.Map(lambda kv: (0 if kv[1].kept else 1, 1)) | beam.CombinePerKey(sum)
         | beam.Map(json.dumps) | beam.io.WriteToText(os.path.join(out, "counts")))
  wall = time.perf_counter() - started
  stop.set()
  sampler.join()
  found = dict(json.loads(line) for name in os.listdir(out)
               for line in open(os.path.join(out, name), encoding="utf-8"))
  return {"docs": found.get(0, 0) + found.get(1, 0), "removed": found.get(1, 0),
          "worker_peak_mb": round(max(peaks.values(), default=0.0), 1),
          "workers_seen": len(peaks), "runner_peak_mb": round(_peak_rss_mb(os.getpid()), 1),
          "wall_s": round(wall, 1)}


def report(sizes: list[int], workers: int = 2) -> None:
  """Runs each size in a fresh process and prints one line per size."""
  print(f"Resolve on FnApiRunner, {workers} worker processes, default settings (max_bucket "
        "256, component_rounds 12)")
  for n in sizes:
    result = subprocess.run([sys.executable, "-m", "benchmarks.dedup", f"--one_size={n}",
                             f"--beam_workers={workers}"],
                            capture_output=True, text=True, check=False, cwd=_ROOT,
                            env={**os.environ, "PYTHONPATH": _ROOT})
    if result.returncode:
      raise SystemExit(f"--one_size={n} failed:\n{result.stderr[-3000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"docs={found['docs']:,} removed={found['removed']:,} "
          f"worker_peak_mb={found['worker_peak_mb']} (largest of {found['workers_seen']} "
          f"worker processes) runner_peak_mb={found['runner_peak_mb']} "
          f"wall_s={found['wall_s']}", flush=True)
