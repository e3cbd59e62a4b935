"""Packed tokens/s of the Grain training pipeline on one CPU core, and padding %.

  python -m benchmarks.data_pipeline [--mixture=dolmino_demo] [--seq_len=2048]

Prepares the mixture if needed (into the default cache folder), pins the
process to one core, then times `make_train_iterator` batches: every stage
(ArrayRecord reads, shuffle, mixing, FIM, best-fit packing, batching) runs in
the timed loop. The last line is `tokens_per_s=X padding_pct=Y`, where tokens
are non-padding positions of the batches.
"""
import argparse
import os
import time

import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax.data.load import pipeline


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mixture", default="dolmino_demo")
  parser.add_argument("--seq_len", type=int, default=2048)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--batches", type=int, default=100)
  args = parser.parse_args()
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  cfg = config_lib.data_config()
  cfg.mixture, cfg.seq_len, cfg.batch_size = args.mixture, args.seq_len, args.batch_size
  it = pipeline.make_train_iterator(cfg, seed=0)
  next(it)  # Opens shards and fills the first packing window.
  tokens = padding = 0
  started = time.perf_counter()
  for _ in range(args.batches):
    batch = next(it)
    real = int(np.count_nonzero(batch["segment_ids"]))
    tokens += real
    padding += batch["segment_ids"].size - real
  elapsed = time.perf_counter() - started
  rows = args.batches * args.batch_size
  print(f"{args.mixture}: {rows} rows of {args.seq_len} in {elapsed:.2f}s "
        f"({rows / elapsed:.0f} rows/s, {args.batches / elapsed:.1f} batches/s)")
  print(f"tokens_per_s={tokens / elapsed:.0f} padding_pct={100 * padding / (tokens + padding):.2f}")


if __name__ == "__main__":
  main()
