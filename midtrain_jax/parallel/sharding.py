"""Device mesh, logical-axis rules and the host-batch -> global-array helper.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, ...). One short
rules list maps them onto the three mesh axes, so a new parallelism layout is a
change of mesh shape, never of model code.
"""
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Batch is split over both data-parallel axes; FSDP
# shards the model dimension of every weight; tensor parallelism splits heads,
# MLP hidden units and the vocabulary.
LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("seq", None),
    # The stacking axis of scanned layers: every device holds its shard of every
    # layer, and each scan step reads one layer's slice.
    ("layers", None),
  # Mixture-of-experts weights are split by expert over the FSDP axis (each
  # device stores E / fsdp experts whole; `embed` then stays unsplit in them).
  ("expert", "fsdp"),
)


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
  """Resolves `-1` entries of the mesh config against the device count.

  Args:
    mesh_cfg: sizes for `data`, `fsdp`, `tensor`; at most one may be -1.
    num_devices: devices available.

  Returns:
    The (data, fsdp, tensor) shape whose product is `num_devices`.
  """
  sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"At most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}.")
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"Mesh axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}.")
  fixed = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if num_devices % fixed:
      raise ValueError(f"config.mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices "
                       f"are not divisible by the fixed axes' product {fixed}.")
    sizes[sizes.index(-1)] = num_devices // fixed
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(f"config.mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} "
                     f"devices but {num_devices} are available.")
  return tuple(sizes)


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh from the `mesh` config section."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  # jax.make_mesh places devices topology-aware (ICI rings on TPU).
  # Auto axes: shardings are given by jit's in/out shardings, not by types.
  return jax.make_mesh(shape, MESH_AXES, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(axes: Sequence[str | None], rules=LOGICAL_RULES) -> P:
  """Maps logical axis names to a PartitionSpec; a mesh axis is used once."""
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name in axes:
    if name is not None and name not in table:
      raise KeyError(f"Logical axis {name!r} has no sharding rule; add it to LOGICAL_RULES.")
    target = table.get(name) if name is not None else None
    targets = (target,) if isinstance(target, str) else tuple(target or ())
    targets = tuple(t for t in targets if t not in used)
    used.update(targets)
    spec.append(targets[0] if len(targets) == 1 else (targets or None))
  return P(*spec)


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
  """Drops mesh axes from dimensions they do not divide (replicates instead)."""
  fitted = []
  for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (entry,) if isinstance(entry, str) else tuple(entry or ())
    size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
    fitted.append(entry if dim % size == 0 else None)
  return P(*fitted)


def named_sharding(mesh: Mesh, axes: Sequence[str | None], shape: Sequence[int]) -> NamedSharding:
  """The NamedSharding for an array with the given logical axes and shape."""
  return NamedSharding(mesh, fit_spec(logical_to_spec(axes), shape, mesh))


def constrain(x, axes: Sequence[str | None]):
  """Pins an activation's layout to its logical axes when tracing under a mesh.

  Without it, SPMD propagation can pick layouts that force full
  rematerialisation between layers. Outside `jax.set_mesh` (plain
  single-device calls, tests) it is a no-op.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(axes))


def batch_shards() -> int:
  """How many ways the current mesh splits the batch axis (1 outside `jax.set_mesh`)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return 1
  axes = logical_to_spec(("batch",))[0] or ()
  return math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of a [batch, seq] input array."""
  return NamedSharding(mesh, logical_to_spec(("batch", "seq")))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def host_batch_to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Turns this process's slice of a batch into global sharded arrays.

  Every process passes its own rows (local_batch = global_batch / processes);
  the result is one global array per key, split over the batch mesh axes. On a
  single host this is a plain device_put.

  Args:
    batch: numpy arrays of shape [local_batch, ...].
    mesh: the training mesh.

  Returns:
    A dict of global jax.Arrays of shape [global_batch, ...].
  """
  sharding = batch_sharding(mesh)
  out = {}
  for key, local in batch.items():
    global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, local, global_shape)
  return out
