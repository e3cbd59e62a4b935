"""Scanned layers: which layers form the repeating groups, and the two parameter layouts.

With `model.scan_layers` the decoder runs its layers as a `lax.scan` over
groups of `len(window_pattern)` consecutive layers (OLMo 3: three sliding-window
layers and one full), so the compiled program holds one group whatever the
depth. Parameters then live in the *scanned* layout:

    layers/blocks/<j>/...   layer j of every group, stacked on a leading
                            `layers` axis of size n_groups
    tail/<k>/...            layers after the last whole group that matches the
                            pattern (none for OLMo 3 shapes), unscanned

The *unscanned* layout (`blocks/<i>/...`, one entry per layer) is the
interchange format: checkpoints of either layout convert with `to_layout`, and
HF import/export and decoding work on it. Both functions take any tree shaped
like the params (optimiser moments too).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from midtrain_jax.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Groups:
  """How `n_layers` split into scanned groups and an unscanned tail."""
  period: int     # Layers per group.
  n_groups: int   # Groups scanned.
  n_tail: int     # Layers after the groups.

  @property
  def n_scanned(self) -> int:
    return self.period * self.n_groups


def groups(cfg: ModelConfig) -> Groups:
  """The longest prefix of whole pattern periods whose layers all follow the pattern.

  Layers of one group position must agree on window and on being MoE
  (`ModelConfig.layer_kinds`), as the scan stacks them into one array.
  """
  period = len(cfg.window_pattern)
  kinds = cfg.layer_kinds()
  n_groups = 0
  while (n_groups + 1) * period <= cfg.n_layers and all(
      kinds[n_groups * period + j] == kinds[j] and kinds[j][0] == cfg.window_pattern[j]
      for j in range(period)):
    n_groups += 1
  return Groups(period, n_groups, cfg.n_layers - n_groups * period)


def is_scanned(tree) -> bool:
  """Whether a params-shaped tree is in the scanned layout."""
  return "layers" in tree


def _stack(items):
  """Stacks equal-structured trees leaf by leaf.

  Leaves may be arrays (numpy or jax), ShapeDtypeStructs (restore targets) or
  NamedShardings (their stacking axis is not sharded, as the `layers` rule).
  """
  first = items[0]
  if isinstance(first, dict):
    return {k: _stack([it[k] for it in items]) for k in first}
  if isinstance(first, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(items),) + first.shape, first.dtype,
                                sharding=_stack([first.sharding]) if first.sharding else None)
  if isinstance(first, NamedSharding):
    return NamedSharding(first.mesh, P(None, *first.spec))
  return (np if isinstance(first, np.ndarray) else jnp).stack(items)


def _unstack(tree, index: int):
  if isinstance(tree, dict):
    return {k: _unstack(v, index) for k, v in tree.items()}
  if isinstance(tree, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(tree.shape[1:], tree.dtype, sharding=(
        _unstack(tree.sharding, index) if tree.sharding else None))
  if isinstance(tree, NamedSharding):
    return NamedSharding(tree.mesh, P(*tree.spec[1:]))
  return tree[index]


def scan_tree(tree, cfg: ModelConfig) -> dict:
  """Unscanned -> scanned layout (a no-op on a scanned tree)."""
  if is_scanned(tree):
    return tree
  g = groups(cfg)
  blocks = {int(k): v for k, v in tree["blocks"].items()}
  out = {k: v for k, v in tree.items() if k != "blocks"}
  out["layers"] = {"blocks": {j: _stack([blocks[i * g.period + j] for i in range(g.n_groups)])
                              for j in range(g.period)}} if g.n_groups else {}
  if g.n_tail:
    out["tail"] = {k: blocks[g.n_scanned + k] for k in range(g.n_tail)}
  return out


def unscan_tree(tree, cfg: ModelConfig) -> dict:
  """Scanned -> unscanned layout (a no-op on an unscanned tree)."""
  if not is_scanned(tree):
    return tree
  g = groups(cfg)
  stacked = {int(k): v for k, v in tree["layers"].get("blocks", {}).items()}
  tail = {int(k): v for k, v in tree.get("tail", {}).items()}
  out = {k: v for k, v in tree.items() if k not in ("layers", "tail")}
  out["blocks"] = {i * g.period + j: _unstack(stacked[j], i)
                   for i in range(g.n_groups) for j in range(g.period)}
  out["blocks"].update({g.n_scanned + k: v for k, v in tail.items()})
  return out


def to_layout(tree, cfg: ModelConfig) -> dict:
  """A params-shaped tree in the layout `cfg.scan_layers` asks for."""
  return scan_tree(tree, cfg) if cfg.scan_layers else unscan_tree(tree, cfg)


def _is_params(x) -> bool:
  return isinstance(x, dict) and ("blocks" in x or "layers" in x)


def state_to_layout(tree, cfg: ModelConfig):
  """`to_layout` on every params-shaped dict inside `tree` (a train or optimiser state)."""
  return jax.tree.map(lambda x: to_layout(x, cfg) if _is_params(x) else x, tree,
                      is_leaf=_is_params)
