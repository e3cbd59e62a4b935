"""Preparation throughput per core beside datatrove's, on one JSONL corpus and one tokenizer.

  python -m benchmarks.prepare_throughput --size_gb=0.064 [--cores=1] [--runs=...]
  python -m benchmarks.prepare_throughput --scaling=0.25,0.5,1 [--runs=ours_tok,ours_full]

The corpus (`benchmarks/prepare_corpus.py`: demo-source documents varied,
exact and near copies planted at known rates, sharded JSONL) is built once
per size and seed under --root. Every run reads it whole and works with the
same Hugging Face `tokenizer.json` (SmolLM2-135M's, read from the cached GGUF
as `convert import` writes it; --tokenizer for another), each in its own
process pinned to --cores CPUs (the tokenizers' threads too: RAYON_NUM_THREADS):

  ours_tok        our preparation, tokenisation alone (`data/prepare`: read,
                  held-out split, tokenise, ArrayRecord shards; no dedup, no
                  decontamination)
  dt_tok          datatrove: JsonlReader -> DocumentTokenizer (EOS appended,
                  not shuffled: the same work), `tasks` = shards
  ours_full       our preparation with deduplication (exact + MinHash near,
                  word 3-grams, 128 permutations in 32 bands of 4) and
                  decontamination (the tiny config's benchmarks), then tokenising
  ours_dedup      the same without decontamination (datatrove's work exactly)
  dt_full         datatrove's MinHash deduplication (its 4 stages, the same
                  3-grams and 32 x 4 bands) then DocumentTokenizer on the kept
                  documents
  beam1, beam2    our preparation on Apache Beam (FnApiRunner, multi-process,
                  1 and 2 workers), dedup + decontamination + tokenising

Reported per run: wall time, documents/s and MB/s of the corpus's text, MB/s
per core (the run's --cores, or its Beam workers), documents kept, and peak
RSS: of the run's largest process, of its driver (the process started: the
Beam runner's controller, which holds every shuffle on the local FnApiRunner)
and of its largest child process (a Beam SDK worker: the memory one worker
needs; 0 for a run in one process), and summed over all its processes (every
process of the run's tree is polled; a process's VmHWM is its exact peak).
`--scaling` runs the chosen runs at each size and prints time and peak
memory per worker beside the size: time should grow linearly, memory stay
flat. The machine's CPU model is printed first.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import psutil

from benchmarks import prepare_corpus

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNS = ("ours_tok", "dt_tok", "ours_full", "ours_dedup", "dt_full", "beam1", "beam2")
DEFAULT_RUNS = "ours_tok,dt_tok,ours_full,ours_dedup,dt_full,beam1,beam2"
_POLL_S = 0.05
BEAM_WORKERS = {"beam1": 1, "beam2": 2}


def cpu_model() -> str:
  """The CPU model as /proc/cpuinfo names it (train/cpu_limit.py reads it the same way)."""
  from midtrain_jax.train import cpu_limit
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    report = cpu_limit.parse_cpuinfo(f.read())
  return f"{report.model_name or report.vendor or 'unknown CPU'}, {os.cpu_count()} CPUs"


def default_tokenizer(root: pathlib.Path) -> str:
  """SmolLM2-135M's tokenizer.json, written from the cached GGUF (no weights read)."""
  from midtrain_jax.interop import gguf, hf
  folder = root / "smollm2_tokenizer"
  if (folder / "tokenizer.json").exists():
    return str(folder / "tokenizer.json")
  return hf.import_tokenizer(gguf.smollm2_path(), folder)


def _peak_kb(proc: psutil.Process) -> int:
  """The process's peak resident set (VmHWM), in kB; 0 once it is gone."""
  try:
    with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return 0


def measure(command: list[str], cpus: set[int], env: dict, log: pathlib.Path) -> dict:
  """Runs `command` pinned to `cpus`, its stderr to `log`; its wall time, result line
  and peak RSS per process."""
  started = time.perf_counter()
  with open(log, "w", encoding="utf-8") as err:
    child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err,
                             text=True, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    return _watch(child, started, command, log)


def _watch(child: subprocess.Popen, started: float, command: list[str],
           log: pathlib.Path) -> dict:
  root = psutil.Process(child.pid)
  peaks: dict[int, int] = {}
  while child.poll() is None:
    try:
      tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
      tree = []
    for proc in tree:
      peaks[proc.pid] = max(peaks.get(proc.pid, 0), _peak_kb(proc))
    time.sleep(_POLL_S)
  wall = time.perf_counter() - started
  out = child.stdout.read()
  if child.returncode:
    raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}), see {log}:\n"
                       f"{log.read_text()[-2000:]}")
  result = json.loads(out.strip().splitlines()[-1])
  workers = [kb for pid, kb in peaks.items() if pid != root.pid]
  return {**result, "wall_s": wall, "max_rss_mb": max(peaks.values(), default=0) / 1024,
          "sum_rss_mb": sum(peaks.values()) / 1024, "processes": len(peaks),
          "driver_rss_mb": peaks.get(root.pid, 0) / 1024,
          "worker_rss_mb": max(workers, default=0) / 1024}


def run_one(name: str, corpus: pathlib.Path, work: pathlib.Path, tokenizer: str,
            cores: int) -> dict:
  """One run in its own process (see the module docstring); its measurements."""
  out = work / name
  shutil.rmtree(out, ignore_errors=True)
  out.mkdir(parents=True)
  workers = BEAM_WORKERS.get(name, cores)
  cpus = set(sorted(os.sched_getaffinity(0))[:workers])
  env = {**os.environ, "RAYON_NUM_THREADS": str(workers), "TOKENIZERS_PARALLELISM": "true",
         # Beam's worker processes import the package the driver imported.
         "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
  command = [sys.executable, "-m", "benchmarks.prepare_throughput_runs", name, str(corpus),
             str(out), tokenizer, str(workers)]
  result = measure(command, cpus, env, work / f"{name}.log")
  return {**result, "run": name, "cores": workers}


def table(rows: list[dict], meta: dict) -> str:
  mb = meta["bytes"] / 1e6
  lines = [f"{'run':<11} {'cores':>5} {'wall s':>8} {'docs/s':>9} {'MB/s':>7} {'MB/s/core':>9} "
           f"{'kept docs':>9} {'peak RSS MB':>11} {'driver MB':>9} {'worker MB':>9} "
           f"{'all procs MB':>12} {'procs':>5}"]
  for r in rows:
    if "error" in r:
      lines.append(f"{r['run']:<11} {r['cores']:>5} n/a: {r['error']}")
      continue
    rate = mb / r["wall_s"]
    lines.append(f"{r['run']:<11} {r['cores']:>5} {r['wall_s']:>8.1f} "
                 f"{meta['docs'] / r['wall_s']:>9.0f} {rate:>7.2f} {rate / r['cores']:>9.2f} "
                 f"{r.get('kept_docs', 0):>9} {r['max_rss_mb']:>11.0f} "
                 f"{r['driver_rss_mb']:>9.0f} {r['worker_rss_mb']:>9.0f} "
                 f"{r['sum_rss_mb']:>12.0f} {r['processes']:>5}")
  return "\n".join(lines)


def bench(size_gb: float, args, tokenizer: str) -> tuple[dict, list[dict]]:
  """Builds (or finds) the corpus of `size_gb` and runs every chosen run on it."""
  root = pathlib.Path(args.root)
  corpus = root / f"corpus-{size_gb:g}gb-seed{args.seed}"
  meta = prepare_corpus.build(corpus, size_gb, args.seed, args.shard_mb)
  print(f"corpus {corpus}: {meta['docs']} docs, {meta['bytes'] / 1e6:.1f} MB of text in "
        f"{meta['files']} files ({meta['exact_copies']} exact, {meta['near_copies']} near "
        "copies planted)", flush=True)
  rows = []
  for name in args.runs.split(","):
    try:
      rows.append(run_one(name, corpus, root / "work", tokenizer, args.cores))
    except RuntimeError as e:
      lines = str(e).splitlines()
      reason = next((l for l in reversed(lines) if "Error" in l), lines[-1])
      rows.append({"run": name, "cores": BEAM_WORKERS.get(name, args.cores),
                   "error": reason[:160]})
    print(f"  {name}: {json.dumps(rows[-1])}", flush=True)
  return meta, rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size_gb", type=float, default=0.064)
  parser.add_argument("--scaling", default="", help="sizes in GB, e.g. 0.25,0.5,1")
  parser.add_argument("--runs", default=DEFAULT_RUNS, help=f"of {RUNS}")
  parser.add_argument("--cores", type=int, default=1)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--shard_mb", type=int, default=16)
  parser.add_argument("--root", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                     "midtrain_jax_bench", "prepare"))
  parser.add_argument("--tokenizer", default="")
  args = parser.parse_args()
  unknown = sorted(set(args.runs.split(",")) - set(RUNS))
  if unknown:
    parser.error(f"--runs: unknown {unknown}; known: {RUNS}")
  pathlib.Path(args.root).mkdir(parents=True, exist_ok=True)
  tokenizer = args.tokenizer or default_tokenizer(pathlib.Path(args.root))
  print(f"CPU: {cpu_model()}; tokenizer {tokenizer}", flush=True)
  sizes = [float(s) for s in args.scaling.split(",")] if args.scaling else [args.size_gb]
  results = [bench(size, args, tokenizer) for size in sizes]
  for meta, rows in results:
    print(f"\n{meta['size_gb']:g} GB corpus ({meta['bytes'] / 1e6:.1f} MB of text, "
          f"{meta['docs']} docs):")
    print(table(rows, meta))
  if len(results) > 1:
    print("\nscaling (wall s / peak RSS MB of the largest process (driver, largest worker),"
          " per size):")
    for name in args.runs.split(","):
      cells = [next((f"{r['wall_s']:.1f} s / {r['max_rss_mb']:.0f} MB "
                     f"({r['driver_rss_mb']:.0f}, {r['worker_rss_mb']:.0f})"
                     for r in rows if r["run"] == name and "error" not in r), "n/a")
               for _, rows in results]
      print(f"  {name:<11} " + "   ".join(f"{m['size_gb']:g} GB: {c}"
                                         for (m, _), c in zip(results, cells)))
    groups = [(m, r) for m, rows in results for r in rows if r.get("largest")]
    if groups:
      print("\nlargest groups a Beam worker was given (records), per size:")
      for meta, r in groups:
        print(f"  {r['run']:<11} {meta['size_gb']:g} GB: "
              + ", ".join(f"{k} {v:,}" for k, v in r["largest"].items()))


if __name__ == "__main__":
  main()
