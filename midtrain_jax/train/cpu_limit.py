"""The physical FLOP/s limit of this CPU host: what no measured rate can exceed.

    limit = physical cores x FMA units x float32 lanes per unit x 2 x max clock

Every factor comes from what the CPU and the OS report, never from an allowance:

- physical cores: the distinct (package, core) pairs of the logical CPUs this
  process may run on (`os.sched_getaffinity`), from /proc/cpuinfo's
  `physical id` / `core id` or else /sys/devices/system/cpu/cpuN/topology:
  SMT siblings share one core's FMA units. Where neither says, each logical
  CPU counts as a core (an upper bound, said so). In a VM the topology is
  the hypervisor's: vCPUs it places on one host core's SMT threads count as
  two cores, which keeps the limit an upper bound.
- FMA units and lanes: per microarchitecture (cpu_models.py), since the
  flags say which instructions a core accepts, not how wide it runs them;
  capped by the widest vector extension the flags allow (a VM that hides
  AVX-512 leaves 256-bit code). An x86 CPU of no listed microarchitecture
  gets two FMA units (no x86 core has more) and its flags' width.
- max clock: cpufreq's `cpuinfo_max_freq` (not where acpi-cpufreq runs with
  boost on: it reports the base clock then); where a VM hides cpufreq, the
  model name's SKU (`cpu_models.SKU_CLOCKS`), else the fastest SKU of the
  microarchitecture (an upper bound, said so).

bfloat16: AMX tiles do 1024 FLOPs per cycle and core (Sapphire Rapids and
later); AVX512-BF16's dot products twice the float32 FMA rate; without either,
bfloat16 runs in float32 units. A factor that cannot be known leaves the limit
unknown (None), which a check reports as unchecked, never as passed.
"""
import dataclasses
import functools
import os

from midtrain_jax.train import cpu_models

_SYS_CPU = "/sys/devices/system/cpu"
AMX_BF16_FLOPS_PER_CYCLE = 1024


@dataclasses.dataclass(frozen=True)
class CpuReport:
  """What /proc/cpuinfo says of the CPU.

  Attributes:
    vendor: `vendor_id` (GenuineIntel, AuthenticAMD; "" on Arm).
    family: `cpu family` (x86), or None.
    model: `model` (x86), or None.
    model_name: `model name`.
    flags: `flags` (x86) or `Features` (Arm).
    topology: logical CPU -> (package, core), None where not given.
    arm_part: (`CPU implementer`, `CPU part`) on Arm, else None.
  """
  vendor: str
  family: int | None
  model: int | None
  model_name: str
  flags: frozenset[str]
  topology: dict[int, tuple[int, int] | None]
  arm_part: tuple[int, int] | None = None


def _int(value: str | None, base: int = 10) -> int | None:
  try:
    return int(value, base) if value is not None else None
  except ValueError:
    return None


def parse_cpuinfo(text: str) -> CpuReport:
  """Parses /proc/cpuinfo's text: one block of `key : value` lines per logical CPU."""
  blocks = []
  for chunk in text.split("\n\n"):
    fields = {}
    for line in chunk.splitlines():
      key, sep, value = line.partition(":")
      if sep:
        fields.setdefault(key.strip(), value.strip())
    if "processor" in fields and _int(fields["processor"]) is not None:
      blocks.append(fields)
  first = blocks[0] if blocks else {}
  topology = {}
  for fields in blocks:
    package, core = _int(fields.get("physical id")), _int(fields.get("core id"))
    topology[int(fields["processor"])] = (package, core) if None not in (package, core) else None
  implementer, part = _int(first.get("CPU implementer"), 16), _int(first.get("CPU part"), 16)
  flags = (first.get("flags") or first.get("Features") or "").split()
  return CpuReport(vendor=first.get("vendor_id", ""), family=_int(first.get("cpu family")),
                   model=_int(first.get("model")), model_name=first.get("model name", ""),
                   flags=frozenset(flags), topology=topology,
                   arm_part=(implementer, part) if None not in (implementer, part) else None)


def _read(path: str) -> str | None:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().strip()
  except OSError:
    return None


def sysfs_topology(cpus, root: str = _SYS_CPU) -> dict[int, tuple[int, int] | None]:
  """Logical CPU -> (package, core) from /sys/devices/system/cpu/cpuN/topology."""
  out = {}
  for cpu in cpus:
    base = os.path.join(root, f"cpu{cpu}", "topology")
    package = _int(_read(os.path.join(base, "physical_package_id")))
    core = _int(_read(os.path.join(base, "core_id")))
    out[cpu] = (package, core) if None not in (package, core) else None
  return out


def physical_cores(allowed, *topologies) -> tuple[int, str]:
  """(physical cores among the `allowed` logical CPUs, how they were counted).

  Each logical CPU takes its (package, core) from the first topology that
  gives one; one that none gives counts as a core of its own.
  """
  allowed = sorted(allowed)
  cores, unplaced = set(), 0
  for cpu in allowed:
    place = next((t[cpu] for t in topologies if t.get(cpu) is not None), None)
    if place is None:
      unplaced += 1
    else:
      cores.add(place)
  count = len(cores) + unplaced
  how = f"{count} physical cores of {len(allowed)} logical CPUs"
  if unplaced:
    how += f" ({unplaced} with no core id, each counted as a core: an upper bound)"
  return count, how


def cpufreq_max_hz(cpus, root: str = _SYS_CPU) -> float | None:
  """The highest `cpuinfo_max_freq` of `cpus` in Hz, or None where it is not the max clock.

  acpi-cpufreq with boost on reports the highest P-state, the base clock,
  as its maximum; the boost clocks above it are not listed.
  """
  khz = [_int(_read(os.path.join(root, f"cpu{cpu}", "cpufreq", "cpuinfo_max_freq")))
         for cpu in cpus]
  khz = [k for k in khz if k]
  if not khz:
    return None
  driver = _read(os.path.join(root, f"cpu{min(cpus)}", "cpufreq", "scaling_driver"))
  if driver == "acpi-cpufreq" and _read(os.path.join(root, "cpufreq", "boost")) == "1":
    return None
  return max(khz) * 1e3


@dataclasses.dataclass(frozen=True)
class CpuLimit:
  """The host's physical FLOP/s limit and how each factor was found.

  Attributes:
    model_name: the CPU's model name.
    uarch: its microarchitecture (or "unlisted ...").
    cores: physical cores this process may run on.
    cores_how: how `cores` was counted.
    fma_units: FMA units per core (None: unknown).
    lanes: float32 lanes each unit computes per cycle (None: unknown).
    bf16_per_cycle: bfloat16 FLOPs per cycle and core (None: unknown).
    bf16_how: where `bf16_per_cycle` comes from.
    clock_hz: the maximum clock (None: unknown).
    clock_how: where `clock_hz` comes from, or why it is unknown.
    notes: the datapath taken as an upper bound rather than known.
  """
  model_name: str
  uarch: str
  cores: int
  cores_how: str
  fma_units: int | None
  lanes: int | None
  bf16_per_cycle: int | None
  bf16_how: str
  clock_hz: float | None
  clock_how: str
  notes: tuple[str, ...] = ()

  @property
  def f32_per_cycle(self) -> int | None:
    """float32 FLOPs per cycle and core: units x lanes x 2 (an FMA is two FLOPs)."""
    return self.fma_units * self.lanes * 2 if self.fma_units and self.lanes else None

  def flops(self, dtype: str = "float32") -> float | None:
    """The limit in FLOP/s in `dtype` ("float32" or "bfloat16"), None when unknown."""
    per_cycle = self.bf16_per_cycle if dtype == "bfloat16" else self.f32_per_cycle
    if per_cycle is None or self.clock_hz is None:
      return None
    return self.cores * per_cycle * self.clock_hz

  def describe(self, dtype: str = "float32") -> str:
    """The limit with its factors and where each comes from, or why it is unknown."""
    limit = self.flops(dtype)
    unit = "fp32" if dtype == "float32" else "bf16"
    if self.f32_per_cycle is None:
      per_core = "FMA units and lanes unknown"
    elif dtype == "float32":
      per_core = f"{self.fma_units} FMA units x {self.lanes} lanes x 2"
    else:
      per_core = f"{self.bf16_per_cycle} FLOPs/cycle ({self.bf16_how})"
    clock = f"{self.clock_hz / 1e9:.2f} GHz" if self.clock_hz else "clock unknown"
    total = f"{limit / 1e9:,.0f} GFLOP/s {unit}" if limit else f"unknown {unit}"
    assumed = "".join(f"; assumed: {note}" for note in self.notes)
    return (f"{total} = {self.cores} cores x {per_core} x {clock} [{self.summary()}; "
            f"clock: {self.clock_how}{assumed}]")

  def summary(self) -> str:
    """The CPU in one phrase: model name, microarchitecture and cores."""
    return f"{self.model_name or 'model name not reported'}, {self.uarch}, {self.cores_how}"


def _isa_bits(flags: frozenset[str]) -> int | None:
  """The widest vector a core may run as the flags allow (None: no FMA vectors)."""
  if "avx512f" in flags:
    return 512
  if "avx2" in flags and "fma" in flags:
    return 256
  if "sve" in flags:
    return 2048  # SVE's width is the hardware's: up to 2048 bits.
  if "asimd" in flags:
    return 128
  return None


def _datapath(report: CpuReport):
  """(its Uarch or None, microarchitecture name, FMA units, float32 lanes per unit, notes)."""
  uarch = cpu_models.uarch_of(report.vendor, report.family, report.model, report.model_name,
                              report.arm_part)
  isa = _isa_bits(report.flags)
  notes = [uarch.assumed] if uarch and uarch.assumed else []
  if uarch is not None:
    bits = min(uarch.fma_bits, isa or uarch.fma_bits)
    return uarch, uarch.name, uarch.fma_pipes, bits // 32, notes
  if report.vendor in ("GenuineIntel", "AuthenticAMD") and isa:
    notes.append(f"2 FMA units (no x86 core has more) at the flags' {isa}-bit width")
    return (None, f"unlisted x86 (family {report.family}, model {report.model})", 2,
            isa // 32, notes)
  return None, "unlisted microarchitecture", None, None, notes


def _bf16(report: CpuReport, f32_per_cycle: int | None) -> tuple[int | None, str]:
  if "amx_bf16" in report.flags:
    return AMX_BF16_FLOPS_PER_CYCLE, "AMX tiles"
  if f32_per_cycle is None:
    return None, "unknown"
  if "avx512_bf16" in report.flags:
    return 2 * f32_per_cycle, "AVX512-BF16 dot products, 2x float32"
  return f32_per_cycle, "float32 units"


def _clock(report: CpuReport, uarch, cpufreq_hz: float | None) -> tuple[float | None, str]:
  if cpufreq_hz:
    return cpufreq_hz, "cpufreq's maximum"
  sku = cpu_models.sku_clock_ghz(report.model_name)
  if sku is not None:
    return sku[1] * 1e9, f"max boost of the {sku[0]}, no cpufreq"
  if uarch is not None and uarch.max_clock_ghz:
    return (uarch.max_clock_ghz * 1e9,
            "no cpufreq, SKU unknown: the fastest boost of the microarchitecture, an upper "
            "bound")
  return None, "no cpufreq maximum; SKU and microarchitecture not in the table"


def limit_of(report: CpuReport, allowed, sys_topology=None,
             cpufreq_hz: float | None = None) -> CpuLimit:
  """The limit of a CPU as reported (see the module docstring).

  Args:
    report: /proc/cpuinfo parsed (`parse_cpuinfo`).
    allowed: the logical CPUs the process may run on.
    sys_topology: logical CPU -> (package, core) from sysfs, where cpuinfo has none.
    cpufreq_hz: cpufreq's maximum clock (`cpufreq_max_hz`), or None.
  """
  cores, cores_how = physical_cores(allowed, report.topology, sys_topology or {})
  uarch, name, units, lanes, notes = _datapath(report)
  f32 = units * lanes * 2 if units and lanes else None
  bf16, bf16_how = _bf16(report, f32)
  clock, clock_how = _clock(report, uarch, cpufreq_hz)
  return CpuLimit(model_name=report.model_name, uarch=name, cores=cores, cores_how=cores_how,
                  fma_units=units, lanes=lanes, bf16_per_cycle=bf16, bf16_how=bf16_how,
                  clock_hz=clock, clock_how=clock_how, notes=tuple(notes))


@functools.lru_cache(maxsize=1)
def host() -> CpuLimit:
  """This host's limit, for the CPUs this process may run on."""
  text = _read("/proc/cpuinfo") or ""
  allowed = (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else list(range(os.cpu_count() or 1)))
  return limit_of(parse_cpuinfo(text), allowed, sysfs_topology(allowed),
                  cpufreq_max_hz(allowed))
