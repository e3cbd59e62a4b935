"""What the model is: `ModelConfig` (frozen) and the preset shapes.

The model never sees a ConfigDict; `midtrain_jax.config.model_config` freezes
the `model` section into a `ModelConfig` at the boundary.
"""
import dataclasses
import math
from typing import Any

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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything the model needs; built from the `model` config section."""
  vocab_size: int
  d_model: int
  n_layers: int
  n_heads: int
  n_kv_heads: int
  head_dim: int
  mlp_dim: int
  window_pattern: tuple[int, ...]
  last_layer_full: bool
  rope_theta: float
  # Llama 3 RoPE frequency scaling ("rope_type": "llama3"); factor 1 disables it.
  llama3_factor: float
  llama3_low_freq_factor: float
  llama3_high_freq_factor: float
  llama3_original_max_len: int
  yarn_factor: float
  yarn_beta_fast: float
  yarn_beta_slow: float
  yarn_original_max_len: int
  yarn_attention_factor: float  # 0: the paper's 0.1 ln(factor) + 1.
  yarn_full_layers_only: bool
  # RMSNorm of queries and keys before RoPE: "none", "head" (per head over
  # head_dim: Qwen3) or "projection" (over the whole projection: OLMo 2/3).
  qk_norm: str
  qkv_bias: bool  # Biases on the q/k/v projections (Qwen2).
  norm: str
  norm_eps: float
  tie_embeddings: bool
  init_std: float
  param_dtype: str
  compute_dtype: str
  remat: str
  # Kernels requested (kernels/select.py decides what runs): attention "auto",
  # "xla", "cudnn", "splash", "cpu_native" or "reference"; GEMMs "auto", "xla"
  # or "cpu_native".
  attention: str = "auto"
  matmul: str = "auto"
  # Run layers as a scan over groups of len(window_pattern) layers (layer_stack.py).
  scan_layers: bool = False
  # Mixture of experts (model/moe.py; the `model.moe` config section): 0 experts
  # is a dense model. Layer i is MoE when (i + 1) % moe_every == 0.
  moe_experts: int = 0
  moe_top_k: int = 2
  moe_every: int = 1
  moe_mlp_dim: int = 0  # Each expert's hidden width; 0: mlp_dim.
  moe_shared_experts: int = 0
  moe_dispatch: str = "dropless"
  moe_capacity_factor: float = 1.25
  moe_load_balance_loss: float = 0.01
  moe_router_z_loss: float = 0.001

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
