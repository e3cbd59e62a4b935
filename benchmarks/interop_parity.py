"""Logit and decoding parity of imported checkpoints with transformers, per family, and SmolLM2.

  python -m benchmarks.interop_parity            # needs pip install -e ".[interop]"
  python -m benchmarks.interop_parity --nosmollm2 --cases=olmo3,qwen2

Each case is a tiny random transformers model (fp32, norm weights and biases
perturbed) of one family and RoPE setting, with sliding windows shorter than
the sequence where the family has them. It is saved, imported and compared
three ways:

  match      greedy decoding of `--new_tokens` tokens after an 8-token prompt
             (KV cache, ring buffers for windowed layers), here vs
             transformers' `generate`: leading new tokens that agree
  prefill    max |logit difference| over prompt + transformers' new tokens,
             one forward pass each
  decode     max |logit difference| of the logits each new token was picked
             from, over the agreeing tokens
  export     the import exported back: whether transformers reads the same
             RoPE parameters per layer type, and its max |logit difference|
             from the original

A case whose RoPE setting the importer refuses prints the error instead.
Then SmolLM2-135M (GGUF) is imported and compared with transformers loading
the same file.
"""
import argparse
import pathlib
import tempfile
import time

import numpy as np
import torch
import transformers
from flax import nnx

from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import scoring
from midtrain_jax.interop import gguf, hf
from midtrain_jax.model import sampling

_SLIDING, _FULL = "sliding_attention", "full_attention"
COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               rms_norm_eps=1e-6)
_QWEN_SLIDING = dict(use_sliding_window=True, sliding_window=8, max_window_layers=2)
_OLMO3_LAYERS = dict(sliding_window=8, layer_types=[_SLIDING] * 3 + [_FULL])
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16}
CASES = {
    "llama_llama3": lambda: transformers.LlamaConfig(**COMMON, rope_scaling=dict(LLAMA3)),
    "llama_linear": lambda: transformers.LlamaConfig(**COMMON, rope_theta=50_000.0, rope_scaling={
        "rope_type": "linear", "factor": 4.0}),
    # SmolLM2 is a Llama: tied embeddings, theta 1e5.
    "smollm2": lambda: transformers.LlamaConfig(**COMMON, rope_theta=100_000.0,
                                                tie_word_embeddings=True),
    "qwen2": lambda: transformers.Qwen2Config(**COMMON, **_QWEN_SLIDING, rope_theta=1e6,
                                              tie_word_embeddings=True),
    "qwen3_yarn": lambda: transformers.Qwen3Config(**COMMON, **_QWEN_SLIDING, head_dim=32,
                                                   rope_scaling=dict(YARN)),
    "olmo2": lambda: transformers.Olmo2Config(**COMMON, rope_theta=500_000.0),
    # transformers gives OLMo 3's sliding layers their own theta (500000).
    "olmo3": lambda: transformers.Olmo3Config(**COMMON, **_OLMO3_LAYERS, rope_theta=10_000.0),
    "olmo3_yarn": lambda: transformers.Olmo3Config(**COMMON, **_OLMO3_LAYERS,
                                                   rope_theta=10_000.0, rope_scaling=dict(YARN)),
}

def hf_model(case: str):
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(CASES[case]()).eval()
  model.generation_config.eos_token_id = None  # Decode every step, as ours does.
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name or name.endswith("bias"):
        param.add_(0.3 * torch.randn_like(param))
  return model


def hf_logits(model, ids: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor(ids)).logits.numpy()


def our_logits(loaded: scoring.LoadedModel, ids: np.ndarray) -> np.ndarray:
  model = nnx.merge(loaded.graphdef, loaded.params)
  positions = np.tile(np.arange(ids.shape[1], dtype=np.int32), (ids.shape[0], 1))
  logits = model(ids.astype(np.int32), positions, np.ones_like(positions))[0]
  return np.asarray(logits)[..., :loaded.model_cfg.vocab_size]


def rope_by_layer_type(config) -> dict:
  """transformers' RoPE parameters of each layer type of a loaded config, with
  YaRN's defaults filled in and unset (None) entries left out."""
  params = dict(config.rope_parameters)
  types = sorted(set(getattr(config, "layer_types", None) or [_FULL]))
  nested = any(t in params for t in types)
  out = {}
  for t in types:
    p = {k: v for k, v in (params[t] if nested else params).items() if v is not None}
    if p.get("rope_type") == "yarn":
      p = {"beta_fast": 32.0, "beta_slow": 1.0, **p}
    out[t] = {k: float(v) if isinstance(v, int) else v for k, v in p.items()}
  return out


def _decode(model, loaded, prompt: list[int], new_tokens: int) -> str:
  """Greedy decoding both ways: the `match` and `decode` columns."""
  with torch.no_grad():
    out = model.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False,
                         pad_token_id=0, output_logits=True, return_dict_in_generate=True)
  theirs = out.sequences[0, len(prompt):].tolist()
  their_logits = torch.stack(out.logits, 1)[0].numpy()
  ours, decoded_logits = sampling.generate(
      loaded.params, loaded.graphdef, loaded.model_cfg, [prompt],
      sampling.SampleConfig(max_new_tokens=new_tokens), return_logits=True)
  ours = ours[0]
  agree = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), len(theirs))
  vocab = loaded.model_cfg.vocab_size
  decode = np.abs(decoded_logits[0, :max(agree, 1), :vocab] - their_logits[:max(agree, 1)]).max()
  prefill = np.abs(our_logits(loaded, np.asarray([prompt + theirs]))
                   - hf_logits(model, np.asarray([prompt + theirs]))).max()
  return f"match={agree:2d}/{len(theirs)} prefill={prefill:.1e} decode={decode:.1e}"


def _export(model, run: pathlib.Path, out: pathlib.Path) -> str:
  """The `export` column: RoPE parameters and logits of the exported model."""
  hf.export_model(str(run), str(out), log=lambda _: None)
  back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  same = rope_by_layer_type(back.config) == rope_by_layer_type(model.config)
  ids = np.random.RandomState(1).randint(0, 300, size=(2, 40))
  diff = np.abs(hf_logits(back, ids) - hf_logits(model, ids)).max()
  return f"export: rope_same={same} diff={diff:.1e}"


def _case(case: str, root: pathlib.Path, new_tokens: int) -> str:
  model = hf_model(case)
  model.save_pretrained(root / case)
  try:
    hf.import_model(str(root / case), str(root / f"{case}_run"), log=lambda _: None)
  except ValueError as e:
    return f"refused: {e}"
  loaded = scoring.load_model(str(root / f"{case}_run"))
  prompt = np.random.RandomState(0).randint(0, 300, size=8).tolist()
  return (f"{_decode(model, loaded, prompt, new_tokens)}  "
          f"{_export(model, root / f'{case}_run', root / f'{case}_export')}")


def _smollm2(root: pathlib.Path) -> str:
  path = gguf.smollm2_path()
  start = time.perf_counter()
  hf.import_model(str(path), str(root / "smollm2"), log=lambda _: None)
  seconds = time.perf_counter() - start
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, torch_dtype=torch.float32).eval()
  loaded = scoring.load_model(str(root / "smollm2"))
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  text = "The capital of France is Paris. In 2024, 12 apples cost $3.50.\ndef f(x):\n    return x\n"
  ids = np.asarray([tok.encode_prompt(text)])  # As its tokenizer starts a text: no BOS.
  theirs = hf_logits(reference, ids)
  diff = np.abs(our_logits(loaded, ids) - theirs).max()
  return (f"max_abs_logit_diff={diff:.2e} logit_std={theirs.std():.3f} "
          f"import_s={seconds:.1f} tokens={ids.shape[1]}")


def main():
  transformers.logging.set_verbosity_error()
  transformers.logging.disable_progress_bar()
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", default=",".join(CASES),
                      help=f"comma-separated cases, of {sorted(CASES)}")
  parser.add_argument("--new_tokens", type=int, default=32,
                      help="tokens decoded greedily after the prompt")
  parser.add_argument("--nosmollm2", action="store_true", help="skip SmolLM2-135M (GGUF)")
  args = parser.parse_args()
  root = pathlib.Path(tempfile.mkdtemp())
  for case in args.cases.split(","):
    print(f"{case:12s} {_case(case, root, args.new_tokens)}", flush=True)
  if not args.nosmollm2:
    print(f"{'smollm2_gguf':12s} {_smollm2(root)}")


if __name__ == "__main__":
  main()
