"""OLMES scoring speed: shared contexts through the KV cache vs one row per request.

  python -m benchmarks.olmes_scoring                         # SmolLM2-135M, arc_easy:rc, 24 items
  python -m benchmarks.olmes_scoring --task=hellaswag:rc --items=16 --samples=3

Scores the same requests of an OLMES task two ways on the imported
SmolLM2-135M-Instruct (the GGUF on PyPI) and checks they agree:

  shared   evals/loglikelihood.py: each distinct context once into the KV
           cache, every choice against a copy of it (what `evaluate` runs)
  per-row  every request's context + continuation as its own row, batched by
           length (lm-eval-harness's way), the continuation's loss summed

Each is run once first (compilation), then `--samples` synchronised samples
alternate between them; the figures are the median requests/s and model
tokens/s (the tokens each form actually runs through the model) with the
spread, on the machine named in the first line.
"""
import argparse
import statistics
import time

import jax
import numpy as np

from midtrain_jax.benchmark_data import olmes as olmes_tasks
from midtrain_jax.evals import loglikelihood, olmes, scoring
from midtrain_jax.interop import gguf, hf
from midtrain_jax.train import cpu_limit


def per_row(model, encoded, batch: int = 4, bucket: int = 128) -> list[float]:
  """Log-probabilities with every request a row of its own (no context sharing)."""
  order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
  out = [0.0] * len(encoded)
  for start in range(0, len(order), batch):
    chunk = order[start:start + batch]
    width = -(-max(len(encoded[i][0]) + len(encoded[i][1]) for i in chunk) // bucket) * bucket
    rows = np.zeros((batch, width + 1), np.int32)
    mask = np.zeros((batch, width), np.float32)
    segments = np.zeros((batch, width), np.int32)
    for r, i in enumerate(chunk):
      ids = list(encoded[i][0]) + list(encoded[i][1])
      rows[r, :len(ids)] = ids
      segments[r, :len(ids) - 1] = 1
      mask[r, len(encoded[i][0]) - 1:len(ids) - 1] = 1.0
    batch_arrays = {"inputs": rows[:, :-1], "targets": rows[:, 1:], "segment_ids": segments,
                    "positions": np.tile(np.arange(width, dtype=np.int32), (batch, 1))}
    nats = jax.device_get(scoring.row_nats(model.params, batch_arrays, mask,
                                           graphdef=model.graphdef))
    for r, i in enumerate(chunk):
      out[i] = -float(nats[r])
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--task", default="arc_easy:rc")
  p.add_argument("--items", type=int, default=24)
  p.add_argument("--samples", type=int, default=3)
  args = p.parse_args()
  print(f"machine: {cpu_limit.host().summary()}", flush=True)
  model = scoring.load_model(hf.imported_run(str(gguf.smollm2_path()), log=lambda _: None))
  tok = olmes.model_tokenizer(model)
  task = olmes_tasks.sample(olmes_tasks.load_task(args.task), args.items)
  requests = [r for doc in task.docs for r in (*doc.choices, *(doc.uncond or ()))]
  encoded = [loglikelihood.encode_pair(tok, r.context, r.continuation)
             for r in requests]
  fed = {"shared": sum(len(c) for c in {tuple(c) for c, _ in encoded})
         + sum(len(x) for _, x in encoded),
         "per-row": sum(len(c) + len(x) for c, x in encoded)}
  forms = {"shared": lambda: [s.logprob for s in loglikelihood.loglikelihoods(model, encoded)],
           "per-row": lambda: per_row(model, encoded)}
  first = {name: run() for name, run in forms.items()}  # Compile; check agreement.
  gap = max(abs(a - b) for a, b in zip(first["shared"], first["per-row"]))
  print(f"{args.task}: {len(task.docs)} items, {len(requests)} requests; max |shared - "
        f"per-row| = {gap:.2e} nats", flush=True)
  seconds = {name: [] for name in forms}
  for _ in range(args.samples):
    for name, run in forms.items():
      start = time.perf_counter()
      run()  # Results come back to the host: every sample is synchronised.
      seconds[name].append(time.perf_counter() - start)
  for name, values in seconds.items():
    rates = [len(requests) / s for s in values]
    print(f"  {name:8s} {statistics.median(rates):7.1f} requests/s "
          f"(spread {min(rates):.1f}-{max(rates):.1f}), "
          f"{fed[name] / statistics.median(values):7.0f} model tokens/s, "
          f"{fed[name]:,} tokens per pass", flush=True)
  ratio = statistics.median(seconds["per-row"]) / statistics.median(seconds["shared"])
  print(f"  shared contexts are {ratio:.2f}x faster per request", flush=True)


if __name__ == "__main__":
  main()
