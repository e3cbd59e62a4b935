"""Decoding parity: SmolLM2's greedy text against transformers, KV-cache logits against
the full forward pass.

  python -m benchmarks.decode_parity            # needs pip install -e ".[interop]"

1. SmolLM2-135M-Instruct (GGUF) is imported; for each prompt, 64 greedy tokens
   from the prompt encoded as its own tokenizer encodes a text
   (`Tokenizer.encode_prompt`, what `python -m midtrain_jax.generate --prompt`
   runs: no BOS, its GGUF says add_bos_token = False) are compared with
   transformers' greedy `generate` on the same file, its prompt encoded by
   transformers' tokenizer, EOS not stopping either side. The same with BOS
   forced before the prompt (what generation did before it followed the
   tokenizer's rule) is printed beside it.
2. The logits each token was picked from during KV-cache decoding
   (`sampling.generate`, prefill + scan over the cache) against the full
   forward pass over prompt + generated tokens: a random 30-layer GQA model
   (float32) at prompt buckets and batch layouts of different cache lengths,
   then SmolLM2 itself. Prints the maximum absolute difference and the logits'
   largest magnitude.
"""
import pathlib
import tempfile

import numpy as np
from flax import nnx

from midtrain_jax import config as config_lib
from midtrain_jax.model import sampling
from midtrain_jax.model.transformer import Transformer

NEW_TOKENS = 64
PROMPTS = ("The capital of France is", "def fibonacci(n):", "Once upon a time")
# (name, prompt lengths, bucket): one prompt, and several left-padded to one width.
LAYOUTS = (("batch 1, prompt 20, bucket 16", (20,), 16),
           ("batch 4, prompts 3/17/31/48, bucket 16", (3, 17, 31, 48), 16),
           ("batch 2, prompts 5/9, bucket 64", (5, 9), 64))


def decode_vs_forward(params, graphdef, cfg, prompts, max_new_tokens: int, bucket: int):
  """Greedy KV-cache decoding of `prompts`, and the full forward over what it produced.

  Args:
    params: model params (unscanned layers are decoded as they are; scanned
      ones as `sampling.generate` does).
    graphdef: the model's graph definition.
    cfg: its config (scan_layers False for the forward here).
    prompts: token id lists.
    max_new_tokens: tokens generated per prompt (EOS never stops a row).
    bucket: `SampleConfig.bucket`: prompts are left-padded to a multiple of it.

  Returns:
    (new tokens [B, N], decoded logits [B, N, V], forward logits [B, N, V]):
    forward logits at the positions that predicted each new token, from one
    pass over every row right-padded (segment 0), which no real token sees.
  """
  sample = sampling.SampleConfig(max_new_tokens=max_new_tokens, bucket=bucket)
  new, decoded = sampling.generate(params, graphdef, cfg, prompts, sample, return_logits=True)
  rows = [list(p) + n for p, n in zip(prompts, new)]
  width = max(len(r) for r in rows)
  tokens = np.zeros((len(rows), width), np.int32)
  segments, positions = np.zeros_like(tokens), np.zeros_like(tokens)
  for i, row in enumerate(rows):
    tokens[i, :len(row)], segments[i, :len(row)] = row, 1
    positions[i, :len(row)] = np.arange(len(row))
  full = np.asarray(nnx.merge(graphdef, params)(tokens, positions, segments)[0])
  forward = np.stack([full[i, len(p) - 1:len(p) - 1 + max_new_tokens]
                      for i, p in enumerate(prompts)])
  return np.asarray(new), np.asarray(decoded), forward


def deep_random_model(layers: int = 30):
  """(params, graphdef, cfg): a random float32 GQA model, narrow but deep."""
  c = config_lib.base_config("tiny")
  c.model.update(dict(vocab_size=512, d_model=64, n_layers=layers, n_heads=4, n_kv_heads=2,
                      mlp_dim=128, window_pattern=(16, 0), scan_layers=False))
  cfg = config_lib.model_config(c.model)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  return nnx.to_pure_dict(state), graphdef, cfg


def _random_model_parity() -> None:
  params, graphdef, cfg = deep_random_model()
  rng = np.random.default_rng(0)
  for name, lengths, bucket in LAYOUTS:
    prompts = [rng.integers(3, cfg.vocab_size, size=n).tolist() for n in lengths]
    new, decoded, forward = decode_vs_forward(params, graphdef, cfg, prompts, NEW_TOKENS,
                                              bucket)
    cache = -(-max(lengths) // bucket) * bucket + NEW_TOKENS
    print(f"random 30 layers, {name}, cache {cache}: max_abs_logit_diff="
          f"{np.abs(decoded - forward).max():.2e} max_abs_logit={np.abs(forward).max():.2f} "
          f"greedy_is_argmax={bool((forward.argmax(-1) == new).all())}")


def _agreeing(ours, theirs) -> int:
  """How many leading tokens two greedy continuations share."""
  return next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))


def _smollm2_parity() -> None:
  import torch
  import transformers

  from midtrain_jax.data import tokenizer as tokenizer_lib
  from midtrain_jax.evals import scoring
  from midtrain_jax.interop import gguf, hf
  path = gguf.smollm2_path()
  run = pathlib.Path(tempfile.mkdtemp()) / "smollm2"
  hf.import_model(str(path), str(run), log=lambda _: None)
  loaded = scoring.load_model(str(run))
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
  reference.generation_config.eos_token_id = None  # 64 tokens on both sides.
  theirs_tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
  params, graphdef, cfg = loaded.params, loaded.graphdef, loaded.model_cfg
  for text in PROMPTS:
    ids = theirs_tok(text).input_ids
    with torch.no_grad():
      expected = reference.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS,
                                    do_sample=False)[0, len(ids):].tolist()
    bucket = sampling.SampleConfig.bucket
    new, decoded, forward = decode_vs_forward(params, graphdef, cfg, [tok.encode_prompt(text)],
                                              NEW_TOKENS, bucket)
    forced, _, _ = decode_vs_forward(params, graphdef, cfg, [[tok.bos_id] + tok.encode(text)],
                                     NEW_TOKENS, bucket)
    print(f"smollm2 {text!r}: prompt ids equal transformers'="
          f"{tok.encode_prompt(text) == ids}, greedy tokens agreeing before the first "
          f"difference: own rule {_agreeing(new[0], expected)}/{NEW_TOKENS}, BOS forced "
          f"{_agreeing(forced[0], expected)}/{NEW_TOKENS}; decoded vs forward max_abs_logit_diff="
          f"{np.abs(decoded - forward).max():.2e} max_abs_logit={np.abs(forward).max():.1f}")


def main():
  _random_model_parity()
  _smollm2_parity()


if __name__ == "__main__":
  main()
