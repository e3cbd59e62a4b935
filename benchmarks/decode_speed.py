"""Decoding speed: batched KV-cache decoding against transformers' `generate`.

  python -m benchmarks.decode_speed                    # needs pip install -e ".[interop]"
  python -m benchmarks.decode_speed --prompts=16 --batch=8 --max_new_tokens=64 --samples=3

The imported SmolLM2-135M-Instruct (its GGUF, dequantised to float32) continues
the same GSM8K prompts ("Question: ...\\nAnswer:", greedy, float32, batches of
`--batch` sorted by length) two ways, side by side in one run:

  ours          evals/batch_decode.py (what `evaluate` runs: prefill, then
                decoding steps on the device, stop checks every few steps)
  transformers  `AutoModelForCausalLM.generate` on the same GGUF, left-padded

in two modes:

  fixed         every row runs --max_new_tokens (no EOS, no stop sequences):
                raw decoding tokens/s = rows x new tokens / seconds
  stops         GSM8K's stop sequences and EOS end each row (transformers:
                `stop_strings`), a batch ends when all its rows have: the
                seconds per prompt set, and the tokens kept per second

Each form runs once first (compilation, warm-up), then `--samples` samples
alternate between them; every sample returns its tokens to the host, so it is
synchronised. Prints the machine, the median and spread, the ratio, and how
many rows agree token for token.
"""
import argparse
import functools
import os
import statistics
import time

import jax

from midtrain_jax.benchmark_data import items as benchmarks
from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import batch_decode, generative, scoring
from midtrain_jax.interop import gguf, hf
from midtrain_jax.model import sampling
from midtrain_jax.train import cpu_limit


def ours(model, prompts, sample, batch: int, detok, stops) -> list[list[int]]:
  """New tokens of each prompt from `batch_decode.decode`."""
  return batch_decode.decode(model.params, model.graphdef, model.model_cfg, prompts, sample,
                             detok=detok, stops=stops, batch=batch).tokens


def theirs(reference, hf_tok, prompts, max_new: int, batch: int, stops, eos) -> list[list[int]]:
  """New tokens of each prompt from transformers' greedy `generate`, in the same
  length-sorted batches, left-padded; cut after EOS or the stop as ours are."""
  import torch
  order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
  out = [None] * len(prompts)
  for start in range(0, len(order), batch):
    rows = order[start:start + batch]
    width = max(len(prompts[i]) for i in rows)
    ids = torch.full((len(rows), width), hf_tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(rows):
      ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
      mask[r, width - len(prompts[i]):] = 1
    extra = {"stop_strings": list(stops), "tokenizer": hf_tok} if stops else {}
    reference.generation_config.eos_token_id = eos  # None: every row runs max_new.
    with torch.no_grad():
      new = reference.generate(ids, attention_mask=mask, max_new_tokens=max_new,
                               do_sample=False, pad_token_id=hf_tok.pad_token_id,
                               **extra)[:, width:].tolist()
    for r, i in enumerate(rows):
      out[i] = new[r]
  return out


def _cut(rows, detok, stops, eos) -> list[list[int]]:
  """Each row up to its first EOS or stop sequence (`batch_decode.first_stop`)."""
  out = []
  for row in rows:
    n = batch_decode.first_stop(row, detok, stops, -1 if eos is None else eos)
    out.append(row[:n] if n else row)
  return out


def _time(forms: dict, samples: int) -> tuple[dict, dict]:
  """(first results, seconds of each sample) per form; the first run is the warm-up."""
  first = {name: run() for name, run in forms.items()}
  seconds = {name: [] for name in forms}
  for _ in range(samples):
    for name, run in forms.items():
      start = time.perf_counter()
      run()  # Lists of ints on the host: synchronised.
      seconds[name].append(time.perf_counter() - start)
  return first, seconds


def _report(mode: str, first: dict, seconds: dict, detok, stops, eos) -> None:
  a, b = (_cut(first[k], detok, stops, eos) for k in ("ours", "transformers"))
  same = sum(x == y for x, y in zip(a, b))
  print(f"{mode}: rows equal token for token {same}/{len(a)}", flush=True)
  median = {}
  for name, values in seconds.items():
    kept = sum(len(r) for r in _cut(first[name], detok, stops, eos))
    rates = [kept / s for s in values]
    median[name] = statistics.median(values)
    print(f"  {name:13s} {kept / median[name]:8.1f} tokens/s (spread {min(rates):.1f}-"
          f"{max(rates):.1f}), {median[name]:.2f} s per set, {kept} tokens kept", flush=True)
  print(f"  ours / transformers: {median['transformers'] / median['ours']:.2f}x", flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--prompts", type=int, default=16)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--max_new_tokens", type=int, default=64)
  p.add_argument("--samples", type=int, default=3)
  p.add_argument("--modes", default="fixed,stops")
  args = p.parse_args()
  import torch
  import transformers
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  print(f"machine: {cpu_limit.host().summary()}; jax {jax.devices()[0].device_kind}, torch "
        f"{threads} threads; transformers {transformers.__version__}", flush=True)
  path = gguf.smollm2_path()
  model = scoring.load_model(hf.imported_run(str(path), log=lambda _: None))
  tok = tokenizer_lib.load_tokenizer(model.config.data.tokenizer)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
  hf_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  if hf_tok.pad_token_id is None:
    hf_tok.pad_token = hf_tok.eos_token
  texts = [f"Question: {it.question}\nAnswer:"
           for it in benchmarks.sample_items("gsm8k", args.prompts, 0)]
  prompts = [tok.encode_prompt(t) for t in texts]
  assert prompts == [hf_tok(t).input_ids for t in texts], "the tokenizers disagree"
  print(f"{len(prompts)} GSM8K prompts of {min(map(len, prompts))}-{max(map(len, prompts))} "
        f"tokens, batch {args.batch}, {args.max_new_tokens} new tokens, greedy, float32, "
        f"{args.samples} samples after a warm-up", flush=True)

  def detok(ids):
    return tok.decode([t for t in ids if t != tok.eos_id])

  for mode in args.modes.split(","):
    stops, eos = (generative.GSM8K_STOPS, tok.eos_id) if mode == "stops" else ((), None)
    sample = sampling.SampleConfig(max_new_tokens=args.max_new_tokens,
                                   eos_id=-1 if eos is None else eos)
    forms = {"ours": functools.partial(ours, model, prompts, sample, args.batch, detok, stops),
             "transformers": functools.partial(theirs, reference, hf_tok, prompts,
                                               args.max_new_tokens, args.batch, stops, eos)}
    first, seconds = _time(forms, args.samples)
    _report(mode, first, seconds, detok, stops, eos)


if __name__ == "__main__":
  main()
