"""Hugging Face model families <-> this package's `model` section and parameter names.

Every family is the same decoder with a few switches:

  family  norm       QK-norm     q/k/v bias  windows              HF class
  llama   pre        none        no          none                 LlamaForCausalLM (+SmolLM2)
  qwen2   pre        none        yes         layer_types          Qwen2ForCausalLM
  qwen3   pre        per head    no          layer_types          Qwen3ForCausalLM
  olmo2   reordered  projection  no          none                 Olmo2ForCausalLM
  olmo3   reordered  projection  no          layer_types          Olmo3ForCausalLM

RoPE parameters (one set, or one per layer type for OLMo 3) are read and
written by `interop/rope_params.py`.

A window of `sliding_window` tokens means a query sees itself and the
`sliding_window - 1` tokens before it, in HF and here. HF rotates pairs
(i, i + head_dim / 2) (`rotate_half`), as `model/rope.py` does, so q/k weights
need no permutation. HF linear weights are [out, in]; kernels here are
[in..., out...].
"""
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from midtrain_jax.interop import rope_params
from midtrain_jax.interop.rope_params import FULL, SLIDING
from midtrain_jax.model.config import FULL_ATTENTION, ModelConfig


@dataclasses.dataclass(frozen=True)
class Family:
  architecture: str
  norm: str
  qk_norm: str
  qkv_bias: bool
  windows: bool  # Whether the HF class reads `layer_types` / `sliding_window`.


FAMILIES = {
    "llama": Family("LlamaForCausalLM", "pre", "none", False, False),
    "qwen2": Family("Qwen2ForCausalLM", "pre", "none", True, True),
    "qwen3": Family("Qwen3ForCausalLM", "pre", "head", False, True),
    "olmo2": Family("Olmo2ForCausalLM", "reordered", "projection", False, False),
    "olmo3": Family("Olmo3ForCausalLM", "reordered", "projection", False, True),
}


def get_family(model_type: str) -> Family:
  if model_type not in FAMILIES:
    raise ValueError(f"Unknown architecture model_type={model_type!r}; supported: "
                     f"{sorted(FAMILIES)}.")
  return FAMILIES[model_type]


# The sliding_window of transformers' config classes when config.json has none.
_DEFAULT_WINDOW = 4096


def _sliding_window(hf: dict) -> int | None:
  """The window of sliding layers as the family's config class reads it (None: none).

  Qwen 2/3 drop it without `use_sliding_window`.
  """
  if hf.get("model_type") in ("qwen2", "qwen3") and not hf.get("use_sliding_window"):
    return None
  return hf.get("sliding_window", _DEFAULT_WINDOW)


def _layer_types(hf: dict, family: Family) -> list[str]:
  """Each layer's type as the family's config class reads config.json.

  Without `layer_types`, Qwen 2/3 slide from layer `max_window_layers` on
  when they have a window, and OLMo 3 slides on all but every fourth layer;
  families without windows ignore them.
  """
  n_layers = hf["num_hidden_layers"]
  if not family.windows:
    return [FULL] * n_layers
  if hf.get("layer_types"):
    return list(hf["layer_types"])
  if hf.get("model_type") == "olmo3":
    return [SLIDING if (i + 1) % 4 else FULL for i in range(n_layers)]
  first = hf.get("max_window_layers", 28)  # Qwen2Config's default.
  return [SLIDING if _sliding_window(hf) is not None and i >= first else FULL
          for i in range(n_layers)]


def model_section(hf: dict) -> dict[str, Any]:
  """Values for the `model` config section from an HF `config.json` dict.

  Raises:
    ValueError: naming an unknown model_type, layer types or RoPE parameters
      the model cannot express (interop/rope_params.py).
  """
  model_type = hf.get("model_type")
  family = get_family(model_type)
  n_layers = hf["num_hidden_layers"]
  layer_types = _layer_types(hf, family)
  unknown = sorted(set(layer_types) - {FULL, SLIDING})
  if unknown or len(layer_types) != n_layers:
    raise ValueError(f"config.json layer_types must name {n_layers} layers, each "
                     f"{FULL!r} or {SLIDING!r}; it has {unknown or len(layer_types)}.")
  sliding = _sliding_window(hf) or 0
  if SLIDING in layer_types and not sliding:
    raise ValueError(f"config.json has sliding layers but no sliding_window ({model_type}; "
                     "Qwen 2/3 read it only with use_sliding_window).")
  windows = tuple(sliding if t == SLIDING else FULL_ATTENTION for t in layer_types)
  heads = hf["num_attention_heads"]
  values = dict(
      size="custom", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=n_layers,
      n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      mlp_dim=hf["intermediate_size"], window_pattern=windows,
      last_layer_full=windows[-1] == FULL_ATTENTION, norm=family.norm,
      qk_norm=family.qk_norm, qkv_bias=family.qkv_bias or bool(hf.get("attention_bias")),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
  values.update(rope_params.model_values(hf, model_type, layer_types))
  return values


def family_of(cfg: ModelConfig) -> str:
  """The HF family that expresses `cfg` exactly.

  Raises:
    ValueError: when no family has this combination of switches.
  """
  windowed = any(w != FULL_ATTENTION for w in cfg.layer_windows())
  for name, family in FAMILIES.items():
    if (family.norm, family.qk_norm) != (cfg.norm, cfg.qk_norm):
      continue
    if family.qkv_bias != cfg.qkv_bias or (windowed and not family.windows):
      continue
    if name == "olmo2" and (windowed or cfg.yarn_factor != 1.0):
      continue  # OLMo 3 adds windows and per-layer-type RoPE.
    return name
  raise ValueError(f"No Hugging Face family has norm={cfg.norm!r}, qk_norm={cfg.qk_norm!r}, "
                   f"qkv_bias={cfg.qkv_bias}, windows={windowed}; see midtrain_jax/interop/"
                   "families.py for the ones that export.")


def hf_config(cfg: ModelConfig, family: str, *, bos_id: int, eos_id: int,
              pad_id: int | None) -> dict[str, Any]:
  """An HF `config.json` dict for `cfg` as a model of `family`."""
  windows = cfg.layer_windows()
  sliding = sorted({w for w in windows if w != FULL_ATTENTION})
  if len(sliding) > 1:
    raise ValueError(f"HF configs hold one sliding_window; this model has {sliding}.")
  out = {
      "architectures": [FAMILIES[family].architecture], "model_type": family,
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
      "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
      "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
      "intermediate_size": cfg.mlp_dim, "hidden_act": "silu", "rms_norm_eps": cfg.norm_eps,
      "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": False,
      "max_position_embeddings": max(8192, cfg.yarn_original_max_len),
      "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id,
      **rope_params.hf_values(cfg, family), "torch_dtype": "float32",
  }
  if family == "qwen2":
    out["attention_bias"] = True  # Biases on q/k/v (the o projection has none).
  if FAMILIES[family].windows:
    out["layer_types"] = [FULL if w == FULL_ATTENTION else SLIDING for w in windows]
    out["sliding_window"] = sliding[0] if sliding else None
    out["use_sliding_window"] = bool(sliding)
    out["max_window_layers"] = 0 if sliding else cfg.n_layers
  return out


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One HF tensor and where it lives here.

  Attributes:
    path: the parameter's key path in this package's params tree.
    kind: "linear" (HF [out, in] <-> kernel [in..., out...]), "vector"
      (reshaped only), "embed" (rows padded to the padded vocab) or "head"
      (the output projection: padded and transposed).
    n_in: input axes of a linear kernel.
  """
  path: tuple[str | int, ...]
  kind: str
  n_in: int = 1


def tensor_names(cfg: ModelConfig, family: str) -> dict[str, Tensor]:
  """{HF tensor name: Tensor} for every parameter of `cfg` as a `family` model."""
  reordered = get_family(family).norm == "reordered"
  names = {"model.embed_tokens.weight": Tensor(("embed", "embedding"), "embed"),
           "model.norm.weight": Tensor(("final_norm", "scale"), "vector")}
  if not cfg.tie_embeddings:
    names["lm_head.weight"] = Tensor(("lm_head", "kernel"), "head")
  for i in range(cfg.n_layers):
    hf, ours = f"model.layers.{i}.", ("blocks", i)
    for proj in "qkv":
      names[f"{hf}self_attn.{proj}_proj.weight"] = Tensor(ours + ("attn", proj, "kernel"),
                                                          "linear")
      if cfg.qkv_bias:
        names[f"{hf}self_attn.{proj}_proj.bias"] = Tensor(ours + ("attn", proj, "bias"),
                                                          "vector")
    names[f"{hf}self_attn.o_proj.weight"] = Tensor(ours + ("attn", "o", "kernel"), "linear", 2)
    if cfg.qk_norm != "none":
      for proj in "qk":
        names[f"{hf}self_attn.{proj}_norm.weight"] = Tensor(
            ours + ("attn", f"{proj}_norm", "scale"), "vector")
    for proj in ("gate", "up", "down"):
      names[f"{hf}mlp.{proj}_proj.weight"] = Tensor(ours + ("mlp", proj, "kernel"), "linear")
    # Pre-norm: the norms before attention and MLP; reordered: the ones after.
    attn_norm = "post_attention_layernorm" if reordered else "input_layernorm"
    mlp_norm = "post_feedforward_layernorm" if reordered else "post_attention_layernorm"
    names[f"{hf}{attn_norm}.weight"] = Tensor(ours + ("attn_norm", "scale"), "vector")
    names[f"{hf}{mlp_norm}.weight"] = Tensor(ours + ("mlp_norm", "scale"), "vector")
  return names


def to_ours(tensor: Tensor, weight: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """An HF tensor in this package's layout and `shape` (float32)."""
  weight = np.asarray(weight, np.float32)
  if tensor.kind == "linear":
    return np.ascontiguousarray(weight.T).reshape(shape)
  if tensor.kind == "vector":
    return weight.reshape(shape)
  padded = np.zeros((shape[0], shape[1]) if tensor.kind == "embed" else (shape[1], shape[0]),
                    np.float32)
  padded[:weight.shape[0]] = weight
  return padded if tensor.kind == "embed" else np.ascontiguousarray(padded.T)


def to_hf(tensor: Tensor, value: np.ndarray, vocab_size: int) -> np.ndarray:
  """This package's parameter as the HF tensor (float32, [out, in] for linears)."""
  value = np.asarray(value, np.float32)
  if tensor.kind == "linear":
    n_in = math.prod(value.shape[:tensor.n_in])
    return np.ascontiguousarray(value.reshape(n_in, -1).T)
  if tensor.kind == "vector":
    return value.reshape(-1)
  rows = value if tensor.kind == "embed" else value.T
  return np.ascontiguousarray(rows[:vocab_size])


def get_path(tree: dict, path: tuple) -> Any:
  """The leaf at `path` (checkpoints restore list indices as strings, "0")."""
  for key in path:
    tree = tree[key] if key in tree else tree[str(key)]
  return tree


def set_path(tree: dict, path: tuple, value: Any, make: Callable[[], dict] = dict) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, make())
  tree[path[-1]] = value
