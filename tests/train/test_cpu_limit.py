"""The physical FLOP/s limit (train/cpu_limit.py) from synthetic /proc/cpuinfo and sysfs."""
import pytest

from midtrain_jax.train import cpu_limit, peaks

AVX512 = "fpu sse2 fma avx avx2 avx512f avx512dq avx512bw avx512vl"


def _cpuinfo(places, vendor="AuthenticAMD", family=26, model=2, name="AMD EPYC",
             flags=AVX512) -> str:
  """/proc/cpuinfo text with one block per logical CPU at (package, core) `places`."""
  blocks = []
  for i, (package, core) in enumerate(places):
    blocks.append(f"processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
                  f"model\t\t: {model}\nmodel name\t: {name}\ncpu MHz\t\t: 2596.124\n"
                  f"physical id\t: {package}\ncore id\t\t: {core}\nflags\t\t: {flags}\n")
  return "\n".join(blocks) + "\n"


def _limit(text: str, allowed=None, cpufreq_hz=None) -> cpu_limit.CpuLimit:
  report = cpu_limit.parse_cpuinfo(text)
  allowed = sorted(report.topology) if allowed is None else allowed
  return cpu_limit.limit_of(report, allowed, cpufreq_hz=cpufreq_hz)


def test_smt_siblings_share_a_core_and_the_affinity_mask_counts():
  # 2 packages x 2 cores x 2 threads: 8 logical CPUs, 4 physical cores.
  places = [(p, c) for p in (0, 1) for c in (0, 1) for _ in range(2)]
  text = _cpuinfo(places, "GenuineIntel", 6, 0x8F, "Intel(R) Xeon(R) Platinum 8480+")
  assert _limit(text).cores == 4
  assert _limit(text, allowed=[0, 1]).cores == 1  # Two siblings of one core.
  assert _limit(text, allowed=[0, 2, 4]).cores == 3
  # Core ids repeat across packages: (package, core) pairs are counted, not core ids.
  assert _limit(text, allowed=[2, 6]).cores == 2
  # cpuinfo without ids (some VMs, Arm): sysfs gives them, else each CPU is a core.
  bare = cpu_limit.parse_cpuinfo(text.replace("core id", "x").replace("physical id", "y"))
  sysfs = {i: place for i, place in enumerate(places)}
  assert cpu_limit.limit_of(bare, range(8), sysfs).cores == 4
  alone = cpu_limit.limit_of(bare, range(8))
  assert alone.cores == 8 and "an upper bound" in alone.cores_how


@pytest.mark.parametrize("family, model, name, units, lanes, clock_ghz", [
    # Zen 4 (Genoa): AVX-512 on two 256-bit pipes, 512-bit FMAs split in two.
    (25, 0x11, "AMD EPYC 9654 96-Core Processor", 2, 8, 3.7),
    # Zen 5 server (Turin): full 512-bit pipes; SKU hidden -> fastest Turin boost.
    (26, 0x02, "AMD EPYC", 2, 16, 5.0),
    # Zen 5 mobile (Strix Point): AVX-512 on 256-bit pipes again.
    (26, 0x24, "AMD Ryzen AI 9 HX 370 w/ Radeon 890M", 2, 8, 5.2),
    # Zen 5 desktop (Granite Ridge): full 512-bit pipes.
    (26, 0x44, "AMD Ryzen 9 9950X 16-Core Processor", 2, 16, 5.7),
])
def test_amd_datapath_and_clock_per_microarchitecture(family, model, name, units, lanes,
                                                      clock_ghz):
  limit = _limit(_cpuinfo([(0, 0), (0, 1)], family=family, model=model, name=name))
  assert (limit.fma_units, limit.lanes, limit.clock_hz) == (units, lanes, clock_ghz * 1e9)
  # cores x units x lanes x 2 FLOPs x clock.
  assert limit.flops() == pytest.approx(2 * units * lanes * 2 * clock_ghz * 1e9)
  assert limit.flops("bfloat16") == limit.flops()  # No avx512_bf16 flag: fp32 units.


def test_what_is_assumed_rather_than_known_is_said():
  turin = _limit(_cpuinfo([(0, 0)]))
  assert "assumed" not in turin.describe()
  assert "clock: no cpufreq, SKU unknown" in turin.describe()  # The clock is a bound.
  dense = _limit(_cpuinfo([(0, 0)], model=0x11, name="AMD EPYC"))
  assert dense.lanes == 16 and dense.clock_hz == 3.7e9
  assert "assumed: full 512-bit FMA pipes as on Turin" in dense.describe()


def test_intel_fma_units_amx_and_bf16():
  spr = _limit(_cpuinfo([(0, 0)], "GenuineIntel", 6, 0x8F, "Intel(R) Xeon(R) Platinum "
                        "8480+", AVX512 + " avx512_bf16 amx_bf16 amx_tile"), cpufreq_hz=3.8e9)
  assert spr.flops() == pytest.approx(2 * 16 * 2 * 3.8e9)  # Two 512-bit FMA units.
  assert spr.flops("bfloat16") == pytest.approx(1024 * 3.8e9)  # AMX tiles.
  # Skylake-SP: Gold 6xxx has two 512-bit FMA units, Silver and Gold 5xxx one.
  gold = _limit(_cpuinfo([(0, 0)], "GenuineIntel", 6, 0x55,
                         "Intel(R) Xeon(R) Gold 6154 CPU @ 3.00GHz"), cpufreq_hz=3.7e9)
  silver = _limit(_cpuinfo([(0, 0)], "GenuineIntel", 6, 0x55,
                           "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz"), cpufreq_hz=3.0e9)
  assert (gold.fma_units, silver.fma_units) == (2, 1)
  assert silver.flops() == pytest.approx(1 * 16 * 2 * 3.0e9)
  # Zen 5 with AVX512-BF16: dot products of bf16 pairs, twice the fp32 rate.
  zen5 = _limit(_cpuinfo([(0, 0)], flags=AVX512 + " avx512_bf16"))
  assert zen5.flops("bfloat16") == 2 * zen5.flops()
  # A VM hiding AVX-512 leaves 256-bit code, whatever the hardware runs.
  hidden = _limit(_cpuinfo([(0, 0)], flags="sse2 fma avx avx2"))
  assert hidden.lanes == 8


def test_missing_clock_leaves_the_limit_unknown_never_passed():
  # An x86 model in no table (Alder Lake) in a VM without cpufreq: no max clock.
  text = _cpuinfo([(0, 0), (0, 1)], "GenuineIntel", 6, 0x97,
                  "12th Gen Intel(R) Core(TM) i9-12900K", "sse2 fma avx avx2")
  unknown = _limit(text)
  assert unknown.clock_hz is None and unknown.flops() is None
  assert unknown.describe().startswith("unknown fp32")
  assert peaks.check_against_limit(1e15, "float32", unknown).startswith("unchecked")
  # With cpufreq's maximum: 2 FMA units (no x86 core has more) x the flags' 8 lanes.
  known = _limit(text, cpufreq_hz=5.2e9)
  assert known.flops() == pytest.approx(2 * 2 * 8 * 2 * 5.2e9)
  with pytest.raises(peaks.AboveLimitError, match="the measurement is wrong"):
    peaks.check_against_limit(400e9, "float32", known)
  # An Arm core in no table: FMA units unknown, so the limit too.
  arm = cpu_limit.parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd\n"
                                "CPU implementer\t: 0x61\nCPU part\t: 0x022\n\n")
  assert cpu_limit.limit_of(arm, [0], cpufreq_hz=3e9).flops() is None


def test_clock_from_cpufreq_sku_or_microarchitecture(tmp_path):
  genoa = _cpuinfo([(0, 0)], family=25, model=0x11, name="AMD EPYC 9B14 96-Core Processor")
  assert _limit(genoa).clock_hz == 3.7e9  # The SKU's max boost.
  assert _limit(genoa.replace("9B14", "9999")).clock_hz == 5.3e9  # Fastest Zen 4 server part.
  assert _limit(genoa, cpufreq_hz=3.1e9).clock_hz == 3.1e9  # cpufreq's maximum first.
  for cpu, khz in ((0, 3700000), (1, 3500000)):
    (tmp_path / f"cpu{cpu}" / "cpufreq").mkdir(parents=True)
    (tmp_path / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq").write_text(f"{khz}\n")
    (tmp_path / f"cpu{cpu}" / "topology").mkdir()
    (tmp_path / f"cpu{cpu}" / "topology" / "physical_package_id").write_text("0\n")
    (tmp_path / f"cpu{cpu}" / "topology" / "core_id").write_text("0\n")
  assert cpu_limit.cpufreq_max_hz([0, 1], str(tmp_path)) == 3.7e9
  assert cpu_limit.sysfs_topology([0, 1], str(tmp_path)) == {0: (0, 0), 1: (0, 0)}
  # acpi-cpufreq with boost on lists the base clock as its maximum: not used.
  (tmp_path / "cpu0" / "cpufreq" / "scaling_driver").write_text("acpi-cpufreq\n")
  (tmp_path / "cpufreq").mkdir()
  (tmp_path / "cpufreq" / "boost").write_text("1\n")
  assert cpu_limit.cpufreq_max_hz([0, 1], str(tmp_path)) is None


def test_this_host_limit_is_derived():
  limit = cpu_limit.host()
  assert limit.cores >= 1
  text = limit.describe()
  assert "cores x" in text and ("GFLOP/s fp32" in text or text.startswith("unknown"))
