"""Dense -> mixture-of-experts: (drop-)upcycling a checkpoint (Nakamura et al., ICLR 2025).

  python -m midtrain_jax.convert upcycle --from=DENSE_RUN_OR_CKPT --out=DIR \
      --experts=8 --top_k=2 --drop_ratio=0.5 [--seed=0] [--every=1]

Every expert of a MoE layer starts as a copy of that layer's dense SwiGLU.
With drop ratio r > 0, each expert then re-initialises round(r * mlp_dim) of
its intermediate dimensions, a different random subset per expert: those
columns of the gate and up projections and rows of the down projection are
drawn from a normal with the mean and standard deviation of the dense matrix
they replace. The rest of each expert stays exactly the dense weights, so the
experts keep most of the dense model's knowledge yet diverge quickly. r = 0
is plain upcycling: every expert is the dense block, and since the top-k
gates are renormalised to sum to one, the MoE model computes exactly what the
dense one did, whatever its router says.

The router starts small (normal, std `ROUTER_STD`), so routing is nearly
uniform at first. DIR is a normal run directory (config.json and a step-0
checkpoint without optimiser state): continue it with
`--config=configs/anneal.py:init=DIR` or `--config.train.init_from=DIR`.
"""
from collections.abc import Callable

import jax
import numpy as np

from midtrain_jax import config as config_lib
from midtrain_jax.model import layer_stack
from midtrain_jax.model.config import ModelConfig
from midtrain_jax.train import checkpoint
from midtrain_jax.train import step as ts

ROUTER_STD = 0.02


def dropped_dims(rng: np.random.Generator, mlp_dim: int, drop_ratio: float) -> np.ndarray:
  """The round(drop_ratio * mlp_dim) intermediate dimensions one expert re-initialises."""
  return np.sort(rng.choice(mlp_dim, size=int(round(drop_ratio * mlp_dim)), replace=False))


def upcycle_mlp(dense: dict, experts: int, drop_ratio: float, rng: np.random.Generator,
                d_model: int) -> tuple[dict, list[np.ndarray]]:
  """One layer's MoE parameters from its dense SwiGLU.

  Args:
    dense: {'gate': {'kernel': [D, F]}, 'up': {...}, 'down': {'kernel': [F, D]}}.
    experts: number of experts E.
    drop_ratio: fraction r of each expert's F dimensions re-initialised.
    rng: the random source (the subsets and the new values).
    d_model: D (the router's input width).

  Returns:
    ({'router': [D, E], 'gate': [E, D, F], 'up': [E, D, F], 'down': [E, F, D]},
     the re-initialised dimensions of each expert).
  """
  gate, up, down = (np.asarray(dense[k]["kernel"]) for k in ("gate", "up", "down"))
  out = {k: np.repeat(w[None], experts, axis=0) for k, w in
         (("gate", gate), ("up", up), ("down", down))}
  stats = {k: (float(w.mean()), float(w.std())) for k, w in (("gate", gate), ("up", up),
                                                              ("down", down))}
  dropped = []
  for e in range(experts):
    dims = dropped_dims(rng, gate.shape[1], drop_ratio)
    dropped.append(dims)
    if not len(dims):
      continue
    for name in ("gate", "up"):
      mean, std = stats[name]
      out[name][e][:, dims] = rng.normal(mean, std, (gate.shape[0], len(dims)))
    mean, std = stats["down"]
    out["down"][e][dims, :] = rng.normal(mean, std, (len(dims), down.shape[1]))
  out = {k: v.astype(gate.dtype) for k, v in out.items()}
  out["router"] = rng.normal(0.0, ROUTER_STD, (d_model, experts)).astype(gate.dtype)
  return out, dropped


def upcycle_params(params: dict, dense_cfg: ModelConfig, moe_cfg: ModelConfig,
                   drop_ratio: float, seed: int) -> dict:
  """A dense model's params (either layer layout) -> the MoE model's, in moe_cfg's layout."""
  params = layer_stack.unscan_tree(params, dense_cfg)
  rng = np.random.default_rng(seed)
  blocks = {}
  for i, block in sorted(params["blocks"].items(), key=lambda kv: int(kv[0])):
    block = dict(block)
    if moe_cfg.layer_is_moe(int(i)):
      block["mlp"], _ = upcycle_mlp(block["mlp"], moe_cfg.moe_experts, drop_ratio, rng,
                                    moe_cfg.d_model)
    blocks[int(i)] = block
  return layer_stack.to_layout({**params, "blocks": blocks}, moe_cfg)


def upcycle(src: str, out: str, *, experts: int, top_k: int, drop_ratio: float,
            seed: int = 0, every: int = 1, log: Callable[[str], None] = print) -> str:
  """Writes the (drop-)upcycled MoE version of a dense checkpoint as a new run directory.

  Args:
    src: dense run directory or checkpoint step directory.
    out: the new run directory.
    experts, top_k, every: the MoE shape (`model.moe`); expert width = the dense mlp_dim.
    drop_ratio: r in [0, 1]; 0 = plain upcycling.
    seed: chooses the re-initialised dimensions and their values.
    log: progress printer.

  Returns:
    The checkpoint step directory written.
  """
  if not 0.0 <= drop_ratio <= 1.0:
    raise ValueError(f"--drop_ratio={drop_ratio} must be between 0 and 1.")
  config = checkpoint.load_config(src)
  if config.model.moe.experts:
    raise ValueError(f"{src} is already a MoE model ({config.model.moe.experts} experts); "
                     "upcycling starts from a dense checkpoint.")
  dense_cfg = config_lib.model_config(config.model)
  params, config, step = checkpoint.load_params(src, ts.abstract_model(dense_cfg)[1])
  config.model.moe.update(experts=experts, top_k=top_k, every=every, mlp_dim=0)
  config_lib.validate(config)
  moe_cfg = config_lib.model_config(config.model)
  moe_params = upcycle_params(params, dense_cfg, moe_cfg, drop_ratio, seed)
  expected = ts.abstract_model(moe_cfg)[1]
  checkpoint.check_compatible(moe_params, expected, out)
  config.train.init_optimizer = False  # A new model: no optimiser state to continue.
  written = checkpoint.write_params(out, jax.tree.map(np.asarray, moe_params), config,
                                    upcycled_from=f"{src} (step {step})",
                                    drop_ratio=drop_ratio, seed=seed)
  n_dense = sum(x.size for x in jax.tree.leaves(params))
  n_moe = sum(x.size for x in jax.tree.leaves(moe_params))
  log(f"[convert] upcycled {src} (step {step}): {experts} experts, top-{top_k}, drop ratio "
      f"{drop_ratio}; {n_dense:,} -> {n_moe:,} params; wrote {written}")
  return written
