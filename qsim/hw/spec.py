"""The accelerator description: frozen specs of the array, its PEs and its memories, from TOML.

Exports `Accelerator`, `ArraySpec`, `PESpec`, `MemorySpec` and `load_accelerator(name_or_path,
**changes)`. A description lives in hw_models/NAME.toml (or any path) with sections [array], [pe],
[memory] and a top-level `energy_table` naming a table in hw_models/ (see energy.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from . import toml_spec
from .energy import EnergyTable, load_energy_table

DATAFLOWS = ("os", "ws", "is")
PE_SCALINGS = ("none", "linear", "quadratic")
OPERANDS = ("ifmap", "filter", "ofmap")


def _positive(obj, *names, kind=(int,)):
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
            raise ValueError(f"{name} must be a positive {'integer' if kind == (int,) else 'number'}, got {value!r}")


@dataclass(frozen=True)
class ArraySpec:
    """A rows x cols grid of PEs and the dataflow that maps a GEMM onto it."""

    rows: int
    cols: int
    dataflow: str

    def __post_init__(self):
        _positive(self, "rows", "cols")
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {DATAFLOWS} (output-, weight-, input-stationary), "
                             f"got {self.dataflow!r}")


@dataclass(frozen=True)
class PESpec:
    """One processing element: its native operand width and how it scales with narrower operands.

    scaling "none": one MAC per cycle at any width up to native_bits; "linear": floor(native/width)
    MACs per cycle for the wider operand (an 8-bit PE does two 4-bit MACs); "quadratic": the product
    of the per-operand factors, as in Bit Fusion (an 8x8 unit does four 4x4 or sixteen 2x2 MACs).
    Operands wider than native_bits take ceil(width/native) passes per operand. Widths below
    min_bits are padded up to it.
    """

    native_bits: int = 8
    scaling: str = "none"
    min_bits: int = 1
    accumulator_bits: int = 32

    def __post_init__(self):
        _positive(self, "native_bits", "min_bits", "accumulator_bits")
        if self.scaling not in PE_SCALINGS:
            raise ValueError(f"scaling must be one of {PE_SCALINGS}, got {self.scaling!r}")
        if self.min_bits > self.native_bits:
            raise ValueError(f"min_bits ({self.min_bits}) must be <= native_bits ({self.native_bits})")

    def _factor(self, bits: float) -> Fraction:
        bits = max(float(bits), self.min_bits)
        if bits <= self.native_bits:
            return Fraction(math.floor(self.native_bits / bits))
        return Fraction(1, math.ceil(bits / self.native_bits))

    def macs_per_cycle(self, w_bits: float, a_bits: float) -> Fraction:
        """MACs one PE completes per cycle at these operand widths (a fraction when multi-pass)."""
        fw, fa = self._factor(w_bits), self._factor(a_bits)
        if self.scaling == "quadratic":
            return fw * fa
        slower = min(fw, fa)
        if self.scaling == "linear":
            return slower
        return min(slower, Fraction(1))


@dataclass(frozen=True)
class MemorySpec:
    """On-chip SRAMs (one per operand, KiB) and the DRAM interface (bytes per cycle).

    The optional per-operand bandwidths describe SCALE-Sim's separate DRAM links (ifmap and filter
    reads, ofmap writes); only `simulate(..., scalesim_compat=True)` uses them, each defaulting to
    dram_bytes_per_cycle. qsim's own model shares one link of dram_bytes_per_cycle.
    """

    ifmap_sram_kib: float
    filter_sram_kib: float
    ofmap_sram_kib: float
    dram_bytes_per_cycle: float
    double_buffered: bool = True
    ifmap_dram_bytes_per_cycle: float | None = None
    filter_dram_bytes_per_cycle: float | None = None
    ofmap_dram_bytes_per_cycle: float | None = None

    def __post_init__(self):
        _positive(self, "ifmap_sram_kib", "filter_sram_kib", "ofmap_sram_kib", "dram_bytes_per_cycle",
                  kind=(int, float))
        _positive(self, *(f"{op}_dram_bytes_per_cycle" for op in OPERANDS
                          if getattr(self, f"{op}_dram_bytes_per_cycle") is not None), kind=(int, float))

    def operand_bytes_per_cycle(self, operand: str) -> float:
        """The DRAM bandwidth of one operand's link (SCALE-Sim's convention): its own, else the shared one."""
        own = getattr(self, f"{operand}_dram_bytes_per_cycle")
        return self.dram_bytes_per_cycle if own is None else own

    def capacity_bytes(self, operand: str) -> float:
        """Bytes one operand may keep resident: half the SRAM when double-buffered."""
        kib = {"ifmap": self.ifmap_sram_kib, "filter": self.filter_sram_kib, "ofmap": self.ofmap_sram_kib}[operand]
        return kib * 1024 * (0.5 if self.double_buffered else 1.0)


@dataclass(frozen=True)
class Accelerator:
    """A systolic-array accelerator: array, PE, memories, clock and the energy table it uses."""

    name: str
    clock_mhz: float
    array: ArraySpec
    pe: PESpec
    memory: MemorySpec
    energy: EnergyTable
    description: str = ""

    def __post_init__(self):
        _positive(self, "clock_mhz", kind=(int, float))

    @property
    def pes(self) -> int:
        return self.array.rows * self.array.cols

    def with_changes(self, **changes) -> "Accelerator":
        """A copy with leaf fields replaced by name, e.g. with_changes(dataflow="ws", rows=8)."""
        sections = {"array": ArraySpec, "pe": PESpec, "memory": MemorySpec}
        updated = {}
        for key, value in changes.items():
            if value is None:
                continue
            owner = next((s for s, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}), None)
            if owner is None:
                if key not in ("name", "clock_mhz", "energy", "description"):
                    raise ValueError(f"unknown accelerator field {key!r}")
                updated[key] = value
            else:
                updated.setdefault(owner, {})[key] = value
        for owner in sections:
            if owner in updated:
                updated[owner] = dataclasses.replace(getattr(self, owner), **updated[owner])
        return dataclasses.replace(self, **updated)


@dataclass(frozen=True)
class _AcceleratorFile:
    """The TOML layout of an accelerator file (energy_table names a file instead of holding one)."""

    name: str
    clock_mhz: float
    array: ArraySpec
    memory: MemorySpec
    pe: PESpec = PESpec()
    energy_table: str = "horowitz_45nm"
    description: str = ""

    def __post_init__(self):
        _positive(self, "clock_mhz", kind=(int, float))


def load_accelerator(name_or_path="systolic_32x32", **changes) -> Accelerator:
    """An accelerator from hw_models/NAME.toml or a path; `changes` override leaf fields."""
    table, source = toml_spec.resolve(name_or_path)
    return accelerator_from_table(table, source, **changes)


def accelerator_from_table(table: dict, source: str, **changes) -> Accelerator:
    """An accelerator from a parsed TOML table (a mechanism's loader passes what remains after its own section)."""
    spec = toml_spec.build(_AcceleratorFile, table, source)
    beside = Path(source).parent / spec.energy_table  # a user's table next to their accelerator file
    energy = load_energy_table(beside if beside.is_file() else spec.energy_table)
    accel = Accelerator(name=spec.name, clock_mhz=spec.clock_mhz, array=spec.array, pe=spec.pe,
                        memory=spec.memory, energy=energy, description=spec.description)
    return accel.with_changes(**changes)
