"""The `mesh` settings, declared once (read by parallel/sharding.py's make_mesh)."""
from midtrain_jax import settings

_AXIS = " -1 fills the devices left over by the other axes."
_SIZE = settings.Check("must be -1 or positive", lambda v: v == -1 or v > 0)

SECTION = settings.Section({
    "data": settings.Setting(-1, "Data-parallel axis size." + _AXIS, check=_SIZE),
    "fsdp": settings.Setting(1, "Fully sharded data-parallel axis size (parameters and "
                             "optimiser state split over it)." + _AXIS, check=_SIZE),
    "tensor": settings.Setting(1, "Tensor-parallel axis size (heads and MLP width split "
                               "over it)." + _AXIS, check=_SIZE),
}, help="the device mesh (parallel/sharding.py).")
