"""What the model is: `ModelConfig` (frozen), the preset shapes, the `model` settings.

`ModelConfig`'s fields declare the `model` config section (and its `moe`
subsection): default, help, allowed values. The model never sees a
ConfigDict; `model_config` freezes the section into a `ModelConfig` at the
boundary.
"""
import dataclasses
import math
from typing import Any

import ml_collections

from midtrain_jax import settings

FULL_ATTENTION = 0  # A window size of 0 in `window_pattern` means full attention.

# Model shapes. `tiny` matches the PyTorch reference benchmark's default shape.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=8192, d_model=256, n_layers=4, n_heads=4,
                 n_kv_heads=4, mlp_dim=1024, window_pattern=(64, 64, 64, 0),
                 rope_theta=10_000.0),
    "150m": dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12,
                 n_kv_heads=12, mlp_dim=3072, window_pattern=(1024, 1024, 1024, 0),
                 rope_theta=500_000.0),
    "1b": dict(vocab_size=100278, d_model=2048, n_layers=16, n_heads=16,
               n_kv_heads=16, mlp_dim=8192, window_pattern=(4096, 4096, 4096, 0),
               rope_theta=500_000.0),
    # OLMo 3 7B (weight-compatible with the published checkpoint: QK-norm over
    # the whole q / k projection, as HF Olmo3Attention, is the default).
    "7b": dict(vocab_size=100278, d_model=4096, n_layers=32, n_heads=32,
               n_kv_heads=32, mlp_dim=11008, window_pattern=(4096, 4096, 4096, 0),
               rope_theta=500_000.0),
    # OLMo 3 32B (GQA with 8 KV heads).
    "32b": dict(vocab_size=100278, d_model=5120, n_layers=64, n_heads=40,
                n_kv_heads=8, mlp_dim=27648, window_pattern=(4096, 4096, 4096, 0),
                rope_theta=500_000.0),
    # tiny with 8 experts of half its MLP width, top-2: the same active FLOPs
    # per token as tiny, 4x its feed-forward parameters.
    "tiny_moe": dict(vocab_size=8192, d_model=256, n_layers=4, n_heads=4,
                     n_kv_heads=4, mlp_dim=1024, window_pattern=(64, 64, 64, 0),
                     rope_theta=10_000.0, moe=dict(experts=8, top_k=2, mlp_dim=512)),
    # OLMoE-1B-7B's shape (64 experts, top-8, 1.3B active of 6.9B), for planning.
    "olmoe_1b_7b": dict(vocab_size=50304, d_model=2048, n_layers=16, n_heads=16,
                        n_kv_heads=16, mlp_dim=1024, window_pattern=(0,), norm="pre",
                        rope_theta=10_000.0, moe=dict(experts=64, top_k=8)),
}

# A model whose shape keys come from elsewhere (an imported checkpoint's
# config.json); its section starts from tiny's values.
CUSTOM_SIZE = "custom"
# Presets at least this deep scan their layers by default.
SCAN_MIN_LAYERS = 8

_TINY = PRESETS["tiny"]
_DTYPES = ("float32", "bfloat16")
_POSITIVE, _NON_NEGATIVE = settings.POSITIVE, settings.NON_NEGATIVE
_PRESET = " Set by model.size's preset (tiny's value shown)."


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything the model needs; built from the `model` config section.

  Each field is also the declaration of its config key: `model.<name>`, or
  `model.moe.<name>` for the `moe_<name>` fields. Shape keys default to 0
  and take their values from `model.size`'s preset.
  """
  vocab_size: int = settings.field(_TINY["vocab_size"], "Vocabulary size (embedding rows, "
                                   "padded to a multiple of 128)." + _PRESET, check=_POSITIVE)
  d_model: int = settings.field(_TINY["d_model"], "Width of the residual stream." + _PRESET,
                                check=_POSITIVE)
  n_layers: int = settings.field(_TINY["n_layers"], "Decoder layers." + _PRESET,
                                 check=_POSITIVE)
  n_heads: int = settings.field(_TINY["n_heads"], "Query heads." + _PRESET, check=_POSITIVE)
  n_kv_heads: int = settings.field(_TINY["n_kv_heads"], "Key/value heads (grouped-query "
                                   "attention); must divide n_heads." + _PRESET,
                                   check=_POSITIVE)
  head_dim: int = settings.field(0, "Per-head width; 0: d_model // n_heads.",
                                 check=_NON_NEGATIVE)
  mlp_dim: int = settings.field(_TINY["mlp_dim"], "Hidden width of the SwiGLU feed-forward "
                                "layers." + _PRESET, check=_POSITIVE)
  window_pattern: tuple[int, ...] = settings.field(
      _TINY["window_pattern"], "Sliding-window sizes repeated through depth; 0 = full "
      "attention." + _PRESET)
  last_layer_full: bool = settings.field(True, "The last layer attends to the whole row, "
                                         "whatever window_pattern gives it.")
  rope_theta: float = settings.field(_TINY["rope_theta"], "RoPE base frequency of every "
                                     "layer (of full-attention layers when rope_theta_sliding "
                                     "is set)." + _PRESET, check=_POSITIVE)
  rope_theta_sliding: float = settings.field(
      0.0, "RoPE base frequency of sliding-window layers; 0: rope_theta. (transformers' "
      "OLMo 3 keeps one per layer type: an imported model may have two.)", check=_NON_NEGATIVE)
  rope_linear_factor: float = settings.field(
      1.0, "Linear RoPE scaling (position interpolation, HF rope_type 'linear'): every "
      "frequency divided by this, in every layer; 1 disables it.", check=_POSITIVE)
  llama3_factor: float = settings.field(
      1.0, "Llama 3 RoPE frequency scaling (HF rope_type 'llama3'), in every layer; 1 "
      "disables it.")
  llama3_low_freq_factor: float = settings.field(1.0, "Llama 3 RoPE scaling: low-frequency "
                                                 "factor.")
  llama3_high_freq_factor: float = settings.field(4.0, "Llama 3 RoPE scaling: high-frequency "
                                                  "factor.")
  llama3_original_max_len: int = settings.field(8192, "Llama 3 RoPE scaling: the context "
                                                "length the model was trained at.")
  yarn_factor: float = settings.field(1.0, "YaRN context extension factor; 1 disables it. "
                                      "At most one of llama3_factor, yarn_factor and "
                                      "rope_linear_factor scales RoPE.",
                                      check=settings.Check("must be >= 1", lambda v: v >= 1))
  yarn_beta_fast: float = settings.field(32.0, "YaRN: rotations above which frequencies are "
                                         "kept (beta_fast).")
  yarn_beta_slow: float = settings.field(1.0, "YaRN: rotations below which frequencies are "
                                         "interpolated (beta_slow).")
  yarn_original_max_len: int = settings.field(8192, "YaRN: the context length the model "
                                              "was trained at.")
  yarn_attention_factor: float = settings.field(0.0, "YaRN logit scale; 0: the paper's "
                                                "0.1 ln(factor) + 1.")
  yarn_full_layers_only: bool = settings.field(True, "Apply YaRN only to full-attention "
                                               "layers (windowed layers keep plain RoPE).")
  qk_norm: str = settings.field(
      "projection", "RMSNorm of queries and keys before RoPE: over the whole q / k "
      "projection (OLMo 2/3, every preset), per head over head_dim (Qwen3) or none "
      "(Llama, Qwen2).", choices=("none", "head", "projection"))
  qkv_bias: bool = settings.field(False, "Biases on the q/k/v projections (Qwen2).")
  norm: str = settings.field("reordered", "Norm placement: reordered (OLMo 2/3: norm after "
                             "each sublayer) or pre (Llama).", choices=("reordered", "pre"))
  norm_eps: float = settings.field(1e-6, "RMSNorm epsilon.", check=settings.POSITIVE)
  tie_embeddings: bool = settings.field(False, "The output projection is the embedding "
                                        "matrix.")
  init_std: float = settings.field(0.02, "Standard deviation of the initial weights.",
                                   check=_NON_NEGATIVE)
  param_dtype: str = settings.field("float32", "Parameter dtype.", choices=_DTYPES)
  compute_dtype: str = settings.field("float32", "Activation dtype (bfloat16 on "
                                      "accelerators).", choices=_DTYPES)
  remat: str = settings.field("none", "Rematerialisation of each layer in the backward "
                              "pass.", choices=("none", "full", "save_dots"))
  attention: str = settings.field(
      "auto", "Attention kernel; auto picks the best applicable one for the platform "
      "(kernels/select.py)", choices=("auto", "xla", "cudnn", "splash", "cpu_native",
                                      "reference"))
  matmul: str = settings.field("auto", "Matmul kernel; cpu_native is MKL's GEMM (pip extra "
                               "[cpu])", choices=("auto", "xla", "cpu_native"))
  scan_layers: bool = settings.field(
      False, "Run layers as a scan over groups of len(window_pattern) layers: compile time "
      "and program size stop growing with depth (layer_stack.py). On for presets of "
      f"{SCAN_MIN_LAYERS}+ layers.")
  # Mixture of experts (model/moe.py): the `model.moe` config section.
  moe_experts: int = settings.field(0, "Experts per MoE layer; 0 is a dense model.",
                                    check=_NON_NEGATIVE)
  moe_top_k: int = settings.field(2, "Experts per token; their gates are renormalised over "
                                  "the k chosen.")
  moe_every: int = settings.field(1, "Layer i is MoE when (i + 1) % every == 0 (2: every "
                                  "second layer).", check=settings.POSITIVE)
  moe_mlp_dim: int = settings.field(0, "Each expert's hidden width; 0: model.mlp_dim.",
                                    check=_NON_NEGATIVE)
  moe_shared_experts: int = settings.field(0, "Always-on experts (a dense SwiGLU of "
                                           "shared_experts * mlp_dim).", check=_NON_NEGATIVE)
  moe_dispatch: str = settings.field(
      "dropless", "dropless (grouped matmuls, every assignment computed) or capacity (fixed "
      "per-expert buffers of capacity_factor * tokens * top_k / experts; padding takes no "
      "slot).", choices=("dropless", "capacity"))
  moe_capacity_factor: float = settings.field(1.25, "Expert buffer size for capacity "
                                              "dispatch.", check=settings.POSITIVE)
  moe_load_balance_loss: float = settings.field(
      0.01, "Weight of the load-balancing loss (Switch / OLMoE), over real tokens. With "
      "train.microbatches > 1 the logged value is the batch's and the gradient each "
      "microbatch's own, weighted by its tokens (model/moe.py).", check=_NON_NEGATIVE)
  moe_router_z_loss: float = settings.field(0.001, "Weight of the router z-loss (ST-MoE).",
                                            check=_NON_NEGATIVE)

  @property
  def padded_vocab_size(self) -> int:
    """Embedding rows, rounded up to 128 so the vocab axis shards evenly."""
    return int(math.ceil(self.vocab_size / 128) * 128)

  @property
  def expert_mlp_dim(self) -> int:
    return self.moe_mlp_dim or self.mlp_dim

  def layer_is_moe(self, layer: int) -> bool:
    return bool(self.moe_experts) and (layer + 1) % self.moe_every == 0

  def layer_kinds(self) -> tuple[tuple[int, bool], ...]:
    """(window, is MoE) per layer: what a scanned group's layers must agree on."""
    return tuple((w, self.layer_is_moe(i)) for i, w in enumerate(self.layer_windows()))

  def layer_windows(self) -> tuple[int, ...]:
    """Window size per layer (0 = full attention)."""
    pattern = self.window_pattern
    windows = [pattern[i % len(pattern)] for i in range(self.n_layers)]
    if self.last_layer_full:
      windows[-1] = FULL_ATTENTION
    return tuple(windows)


def _check_shape(m, path: str) -> None:
  """The shape keys must make whole heads with an even (RoPE) head dimension."""
  if m.n_heads % m.n_kv_heads:
    raise ValueError(f"{path}.n_heads={m.n_heads} is not divisible by "
                     f"{path}.n_kv_heads={m.n_kv_heads}.")
  if not m.head_dim and m.d_model % m.n_heads:
    raise ValueError(f"{path}.d_model={m.d_model} is not divisible by "
                     f"{path}.n_heads={m.n_heads}; set {path}.head_dim.")
  if (m.head_dim or m.d_model // m.n_heads) % 2:
    raise ValueError(f"RoPE needs an even head dimension ({path}.head_dim).")
  if not m.window_pattern or any(not isinstance(w, int) or w < 0 for w in m.window_pattern):
    raise ValueError(f"{path}.window_pattern={m.window_pattern} must be a "
                     "non-empty list of window sizes >= 0 (0 = full attention).")


def _check_rope(m, path: str) -> None:
  """One RoPE scaling at a time: HF configs name one rope_type per layer type."""
  scaled = [name for name in ("llama3_factor", "yarn_factor", "rope_linear_factor")
            if m[name] != 1.0]
  if len(scaled) > 1:
    raise ValueError(f"{path}: {' and '.join(f'{n}={m[n]}' for n in scaled)} both scale RoPE; "
                     "set at most one of them (the others 1).")


def _check_moe(moe, path: str) -> None:
  if moe.experts and not 1 <= moe.top_k <= moe.experts:
    raise ValueError(f"{path}: top_k={moe.top_k} must be between 1 and "
                     f"experts={moe.experts} (experts=0 is a dense model).")


def _migrate(stored: dict) -> dict:
  """A stored `model` section of an earlier version in today's form."""
  if isinstance(stored.get("qk_norm"), bool):  # A bool before the QK-norm kinds.
    stored["qk_norm"] = "head" if stored["qk_norm"] else "none"
  if "scan_layers" not in stored:
    stored["scan_layers"] = False  # Written before layers could be scanned.
  if "matmul" not in stored and stored.get("attention") == "xla":
    stored["attention"] = "auto"  # Written when "xla" was the default, before "auto".
  return stored


_FIELDS = settings.dataclass_settings(ModelConfig)
MOE = settings.Section(
    {name[len("moe_"):]: s for name, s in _FIELDS.items() if name.startswith("moe_")},
    help="mixture-of-experts feed-forward layers (model/moe.py); 0 experts = dense.",
    checks=(_check_moe,))
SECTION = settings.Section(
    {"size": settings.Setting("tiny", "Preset shape whose values the shape keys take "
                              f"({CUSTOM_SIZE}: an imported model's, starting from tiny's).",
                              choices=(*PRESETS, CUSTOM_SIZE)),
     **{name: s for name, s in _FIELDS.items() if not name.startswith("moe_")},
     "moe": MOE},
    help="the model (ModelConfig, model/config.py).", checks=(_check_shape, _check_rope),
    migrate=_migrate)


def model_section(size: str) -> ml_collections.ConfigDict:
  """The `model` section for a preset size (or "custom"), every key declared."""
  if size not in PRESETS and size != CUSTOM_SIZE:
    raise ValueError(f"Unknown model size {size!r}; choose from {sorted(PRESETS)}.")
  c = settings.defaults(SECTION)
  c.size = size
  c.update(PRESETS.get(size, PRESETS["tiny"]))
  # Deep presets scan their layers: compile time stops growing with depth.
  c.scan_layers = size != CUSTOM_SIZE and c.n_layers >= SCAN_MIN_LAYERS
  return c


def model_config(model: ml_collections.ConfigDict) -> ModelConfig:
  """Freezes the `model` section into a ModelConfig."""
  values = {f.name: (model.moe[f.name[len("moe_"):]] if f.name.startswith("moe_")
                     else model[f.name]) for f in dataclasses.fields(ModelConfig)}
  values["window_pattern"] = tuple(int(w) for w in values["window_pattern"])
  values["head_dim"] = model.head_dim or model.d_model // model.n_heads
  return ModelConfig(**values)
