"""Logit parity of imported checkpoints with transformers, per family and for SmolLM2.

  python -m benchmarks.interop_parity            # needs pip install -e ".[interop]"

For each family a tiny random transformers model (norm weights and biases
perturbed) is saved, imported and run on the same tokens; then SmolLM2-135M
(GGUF) is imported and compared with transformers loading the same file. Prints
one line per model: the maximum absolute logit difference and the logits' std.
"""
import pathlib
import tempfile
import time

import numpy as np
import torch
import transformers
from flax import nnx

from midtrain_jax.data import tokenizer as tokenizer_lib
from midtrain_jax.evals import scoring
from midtrain_jax.interop import families, gguf, hf

_COMMON = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               rms_norm_eps=1e-6)
_CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**_COMMON, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}),
    "qwen2": lambda: transformers.Qwen2Config(**_COMMON, tie_word_embeddings=True),
    "qwen3": lambda: transformers.Qwen3Config(**_COMMON, head_dim=32),
    "olmo2": lambda: transformers.Olmo2Config(**_COMMON),
    "olmo3": lambda: transformers.Olmo3Config(
        **_COMMON, sliding_window=5, layer_types=["sliding_attention"] * 3 + ["full_attention"],
        rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16}),
}


def _ours(run: pathlib.Path, ids: np.ndarray) -> np.ndarray:
  loaded = scoring.load_model(str(run))
  model = nnx.merge(loaded.graphdef, loaded.params)
  positions = np.tile(np.arange(ids.shape[1], dtype=np.int32), (ids.shape[0], 1))
  logits = model(ids.astype(np.int32), positions, np.ones_like(positions))[0]
  return np.asarray(logits)[..., :loaded.model_cfg.vocab_size]


def main():
  root = pathlib.Path(tempfile.mkdtemp())
  ids = np.random.RandomState(0).randint(0, 300, size=(2, 24))
  for family in families.FAMILIES:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(_CONFIGS[family]()).eval()
    with torch.no_grad():
      for name, param in model.named_parameters():
        if "norm" in name or name.endswith("bias"):
          param.add_(0.3 * torch.randn_like(param))
    model.save_pretrained(root / family)
    hf.import_model(str(root / family), str(root / f"{family}_run"), log=lambda _: None)
    with torch.no_grad():
      theirs = model(torch.tensor(ids)).logits.numpy()
    diff = np.abs(_ours(root / f"{family}_run", ids) - theirs).max()
    print(f"{family:8s} max_abs_logit_diff={diff:.2e} logit_std={theirs.std():.3f}")

  path = gguf.smollm2_path()
  start = time.perf_counter()
  hf.import_model(str(path), str(root / "smollm2"), log=lambda _: None)
  seconds = time.perf_counter() - start
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      str(path.parent), gguf_file=path.name, torch_dtype=torch.float32).eval()
  loaded = scoring.load_model(str(root / "smollm2"))
  tok = tokenizer_lib.load_tokenizer(loaded.config.data.tokenizer)
  text = "The capital of France is Paris. In 2024, 12 apples cost $3.50.\ndef f(x):\n    return x\n"
  smol_ids = np.asarray([tok.encode_prompt(text)])  # As its tokenizer starts a text: no BOS.
  with torch.no_grad():
    theirs = reference(torch.tensor(smol_ids)).logits.numpy()
  diff = np.abs(_ours(root / "smollm2", smol_ids) - theirs).max()
  print(f"smollm2  max_abs_logit_diff={diff:.2e} logit_std={theirs.std():.3f} "
        f"import_s={seconds:.1f} tokens={smol_ids.shape[1]}")


if __name__ == "__main__":
  main()
