"""What a CPU's flags do not say: FMA datapaths and maximum clocks per microarchitecture.

The vector flags of /proc/cpuinfo name the instructions a core accepts, not the
hardware that runs them: `avx512f` is set on Zen 4, which runs 512-bit FMAs
as two halves on its two 256-bit pipes, on Zen 5 desktop and server parts,
which run them on two full 512-bit pipes, and on Zen 5 mobile parts, which
split them like Zen 4. Intel's Skylake-SP and later server cores have two
512-bit FMA units on most SKUs and one on some (Xeon Bronze, Silver and most
Gold 5100/5200). So the datapath is looked up per microarchitecture, from the
family and model numbers the CPU reports (`UARCHES`).

The maximum clock is looked up where the OS does not report it (virtual
machines hide cpufreq): the model name's SKU (`SKU_CLOCKS`), else the fastest
max boost of any SKU of the microarchitecture, an upper bound (a VM may hide
the SKU, as "AMD EPYC" does). Each figure is a vendor's published maximum;
where unsure, the bound is rounded up, never down: too high a bound only
loosens the check, too low a one would call a real measurement wrong.
"""
import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Uarch:
  """One microarchitecture's FMA datapath and the clock bound of its fastest SKU.

  Attributes:
    name: what it is called (with the parts it covers).
    fma_pipes: FMA units per core.
    fma_bits: the width each unit computes per cycle (256 where 512-bit
      instructions are split in two halves).
    max_clock_ghz: the highest max boost clock of any SKU of it (None: no
      bound known; the clock must then come from the OS or the SKU).
    note: where the figures come from.
    assumed: what is taken as an upper bound rather than known (shown with
      the limit).
  """
  name: str
  fma_pipes: int
  fma_bits: int
  max_clock_ghz: float | None
  note: str = ""
  assumed: str = ""


_ZEN5_NOTE = ("AMD's EPYC 9005 (Turin) and Ryzen 9000 run AVX-512 on full 512-bit "
              "pipes (a 2-core Turin VM runs a GEMM at 490 GFLOP/s at 2.6 GHz "
              "base, impossible on 256-bit pipes)")
# (vendor, family, first model, last model) -> Uarch. Family and model as
# /proc/cpuinfo gives them (`cpu family`, `model`, decimal there).
UARCHES = (
    ("AuthenticAMD", 0x17, 0x00, 0x2F,
     Uarch("Zen / Zen+", 2, 128, 4.4, "256-bit ops split on 128-bit pipes; "
           "Threadripper 2950X boosts to 4.4 GHz")),
    ("AuthenticAMD", 0x17, 0x30, 0xFF,
     Uarch("Zen 2", 2, 256, 4.7, "Ryzen 9 3950X boosts to 4.7 GHz")),
    ("AuthenticAMD", 0x19, 0x00, 0x0F,
     Uarch("Zen 3 (EPYC 7003 Milan, Threadripper 5000)", 2, 256, 4.5,
           "Threadripper PRO 5995WX boosts to 4.5 GHz")),
    ("AuthenticAMD", 0x19, 0x10, 0x1F,
     Uarch("Zen 4 (EPYC 9004 Genoa, Threadripper 7000)", 2, 256, 5.3,
           "512-bit ops split on 256-bit pipes; Threadripper 7960X boosts to 5.3 GHz")),
    ("AuthenticAMD", 0x19, 0x20, 0x5F,
     Uarch("Zen 3 (Ryzen 5000 / 6000)", 2, 256, 5.0, "Ryzen 9 6980HX boosts to 5.0 GHz")),
    ("AuthenticAMD", 0x19, 0x60, 0x7F,
     Uarch("Zen 4 (Ryzen 7000 / 8000, EPYC 4004)", 2, 256, 5.7,
           "512-bit ops split on 256-bit pipes; Ryzen 9 7950X boosts to 5.7 GHz")),
    ("AuthenticAMD", 0x19, 0xA0, 0xAF,
     Uarch("Zen 4c (EPYC 97x4 Bergamo, 8004 Siena)", 2, 256, 3.1,
           "512-bit ops split on 256-bit pipes; EPYC 9754 boosts to 3.1 GHz")),
    ("AuthenticAMD", 0x1A, 0x00, 0x0F,
     Uarch("Zen 5 (EPYC 9005 Turin)", 2, 512, 5.0,
           _ZEN5_NOTE + "; EPYC 9175F and 9575F boost to 5.0 GHz, the fastest Turin SKUs")),
    ("AuthenticAMD", 0x1A, 0x10, 0x1F,
     Uarch("Zen 5c (EPYC 9005 Turin Dense)", 2, 512, 3.7, "EPYC 9965 boosts to 3.7 GHz",
           "full 512-bit FMA pipes as on Turin")),
    ("AuthenticAMD", 0x1A, 0x20, 0x2F,
     Uarch("Zen 5 mobile (Ryzen AI 300 Strix Point)", 2, 256, 5.2,
           "512-bit ops split on 256-bit pipes; Ryzen AI 9 HX 370 boosts to 5.1 GHz")),
    ("AuthenticAMD", 0x1A, 0x40, 0x4F,
     Uarch("Zen 5 (Ryzen 9000 Granite Ridge, EPYC 4005)", 2, 512, 5.7,
           _ZEN5_NOTE + "; Ryzen 9 9950X boosts to 5.7 GHz")),
    ("AuthenticAMD", 0x1A, 0x50, 0xFF,
     Uarch("Zen 5 (other)", 2, 512, 5.7, "Ryzen 9 9950X boosts to 5.7 GHz",
           "an unlisted Zen 5 model: full 512-bit FMA pipes")),
    ("GenuineIntel", 6, 0x55, 0x55,
     Uarch("Skylake-SP / Cascade Lake / Cooper Lake", 2, 512, 4.8,
           "Core i9-10980XE boosts to 4.8 GHz (Turbo Boost Max 3.0)",
           "two 512-bit FMA units: the model name names no one-unit SKU (Xeon Bronze, "
           "Silver, Gold 5100/5200 but 5122/5222)")),
    ("GenuineIntel", 6, 0x6A, 0x6C,
     Uarch("Ice Lake-SP / D", 2, 512, 4.0, "Xeon W-3375 boosts to 4.0 GHz")),
    ("GenuineIntel", 6, 0x8F, 0x8F,
     Uarch("Sapphire Rapids", 2, 512, 4.8, "Xeon w9-3495X boosts to 4.8 GHz")),
    ("GenuineIntel", 6, 0xCF, 0xCF,
     Uarch("Emerald Rapids", 2, 512, 4.2,
           "5th-gen Xeon Scalable SKUs boost to at most 4.1 GHz; 4.2 taken")),
    ("GenuineIntel", 6, 0xAD, 0xAE,
     Uarch("Granite Rapids", 2, 512, None, "no clock bound known: cpufreq or the SKU")),
)
# Arm Neoverse cores by (`CPU implementer`, `CPU part`); their clocks vary by
# vendor, so only cpufreq gives one.
ARM_PARTS = {
    (0x41, 0xD0C): Uarch("Neoverse N1", 2, 128, None),
    (0x41, 0xD40): Uarch("Neoverse V1", 4, 128, None, "2x256-bit SVE or 4x128-bit NEON"),
    (0x41, 0xD49): Uarch("Neoverse N2", 2, 128, None),
    (0x41, 0xD4F): Uarch("Neoverse V2", 4, 128, None),
}

# Max boost clocks (GHz) of SKUs as the model name spells them, cloud variants
# included (the vendors' published "max boost" / "max turbo").
SKU_CLOCKS = {
    "EPYC 7763": 3.5, "EPYC 7B13": 3.5, "EPYC 75F3": 4.0,
    "EPYC 9654": 3.7, "EPYC 9B14": 3.7, "EPYC 9R14": 3.7, "EPYC 9754": 3.1,
    "EPYC 9175F": 5.0, "EPYC 9575F": 5.0, "EPYC 9755": 4.1, "EPYC 9965": 3.7,
    "EPYC 9B45": 4.1, "EPYC 9R45": 4.5,
    "Xeon(R) Platinum 8375C": 3.5,
}

# Skylake-SP / Cascade Lake SKUs with one 512-bit FMA unit: Bronze, Silver and
# Gold 5100 / 5200 but the 5122 and 5222.
_ONE_FMA_UNIT = re.compile(r"Xeon\(R\) (Bronze|Silver|Gold 5(?!122|222)[12]\d\d)")


def uarch_of(vendor: str, family: int | None, model: int | None, model_name: str = "",
             arm_part: tuple[int, int] | None = None) -> Uarch | None:
  """The microarchitecture of a CPU's identification, or None where it is not listed."""
  if arm_part is not None:
    return ARM_PARTS.get(arm_part)
  for v, fam, first, last, uarch in UARCHES:
    if vendor == v and family == fam and model is not None and first <= model <= last:
      if fam == 6 and model == 0x55 and _ONE_FMA_UNIT.search(model_name):
        return dataclasses.replace(uarch, fma_pipes=1, assumed="")
      return uarch
  return None


def sku_clock_ghz(model_name: str) -> tuple[str, float] | None:
  """(the SKU, its max boost clock in GHz) named by a model name, or None."""
  for sku, ghz in SKU_CLOCKS.items():
    if re.search(re.escape(sku) + r"(?![\w+])", model_name):
      return sku, ghz
  return None
