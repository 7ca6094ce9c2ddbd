"""Energy per operation and per access, from a cited table in hw_models/, scaled to any bit width.

Exports `EnergyTable` (loaded with `load_energy_table(name_or_path)`), `ArithEnergy` (multiplier and
adder energies with their width-scaling rule) and `layer_energy(...)`, which turns action counts into
picojoules split into MAC, register/PE, SRAM and DRAM: energy = sum(actions x energy per action), as
Accelergy and ZigZag do.

Scaling rule (stated in each table file): a multiplier's energy grows with the product of its operand
widths, E = mult_pj * (w*a / ref^2)^(mult_exponent/2) (so ~ bits^2 for equal widths when the exponent
is 2); an adder's with its width, E = add_pj * (bits/ref)^add_exponent. SRAM energy per bit is
interpolated log-log in capacity between the published sizes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import toml_spec


@dataclass(frozen=True)
class ArithEnergy:
    """Multiplier and adder energies at a reference width, and the exponents that scale them."""

    mult_pj: float
    mult_ref_bits: float
    add_pj: float
    add_ref_bits: float
    mult_exponent: float = 2.0
    add_exponent: float = 1.0

    def __post_init__(self):
        for field in ("mult_pj", "mult_ref_bits", "add_pj", "add_ref_bits"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)!r}")
        for field in ("mult_exponent", "add_exponent"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)!r}")

    def mult(self, w_bits: float, a_bits: float) -> float:
        """pJ for one w_bits x a_bits multiply."""
        return self.mult_pj * (w_bits * a_bits / self.mult_ref_bits ** 2) ** (self.mult_exponent / 2)

    def add(self, bits: float) -> float:
        """pJ for one bits-wide addition."""
        return self.add_pj * (bits / self.add_ref_bits) ** self.add_exponent


@dataclass(frozen=True)
class PublishedPoint:
    """A value printed in the source that the scaling rule was not anchored on (the tests compare)."""

    op: str  # "int_mult", "int_add", "float_mult", "float_add"
    bits: float
    pj: float


@dataclass(frozen=True)
class EnergyTable:
    """Per-action energies (pJ) of one technology, with the source they come from."""

    name: str
    source: str
    int_mac: ArithEnergy
    float_mac: ArithEnergy
    register_pj_per_bit: float
    sram_capacity_kib: tuple[float, ...]
    sram_pj_per_64bit: tuple[float, ...]
    dram_pj_per_bit: float
    scaling_rule: str = ""
    register_source: str = ""
    published: tuple[PublishedPoint, ...] = ()
    node_nm: float = 0.0  # the process node and supply the energies are for (0: not stated; then an ASIC
    vdd: float = 0.0      # estimate at another node keeps them as they are), see qsim.hw.node_scaling

    def __post_init__(self):
        for field in ("register_pj_per_bit", "dram_pj_per_bit", "node_nm", "vdd"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)!r}")
        caps, energies = self.sram_capacity_kib, self.sram_pj_per_64bit
        if len(caps) != len(energies) or not caps:
            raise ValueError("sram_capacity_kib and sram_pj_per_64bit must be non-empty and equally long")
        if any(c <= 0 for c in caps) or any(e <= 0 for e in energies) or list(caps) != sorted(set(caps)):
            raise ValueError("sram_capacity_kib must be increasing and positive, sram_pj_per_64bit positive")

    def arith(self, kind: str) -> ArithEnergy:
        if kind not in ("int", "float"):
            raise ValueError(f"arith must be 'int' or 'float', got {kind!r}")
        return self.int_mac if kind == "int" else self.float_mac

    def mac_pj(self, w_bits: float, a_bits: float, acc_bits: float, kind: str = "int") -> float:
        """One multiply-accumulate: a w x a multiply plus an accumulator-wide add."""
        ops = self.arith(kind)
        return ops.mult(w_bits, a_bits) + ops.add(acc_bits)

    def sram_pj_per_bit(self, capacity_kib: float) -> float:
        """Log-log interpolation between the published capacities, extended with the end slopes."""
        if not capacity_kib > 0:
            raise ValueError(f"SRAM capacity must be > 0 KiB, got {capacity_kib!r}")
        x, y = np.log(self.sram_capacity_kib), np.log(self.sram_pj_per_64bit)
        lx = math.log(capacity_kib)
        if len(x) == 1:
            return float(self.sram_pj_per_64bit[0]) / 64
        if lx < x[0]:
            ly = y[0] + (lx - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        elif lx > x[-1]:
            ly = y[-1] + (lx - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
        else:
            ly = float(np.interp(lx, x, y))
        return math.exp(ly) / 64


def load_energy_table(name_or_path="horowitz_45nm") -> EnergyTable:
    """A packaged table by name (hw_models/NAME.toml) or a TOML file of the same shape."""
    table, source = toml_spec.resolve(name_or_path)
    return toml_spec.build(EnergyTable, table, source)


ENERGY_COMPONENTS = ("mac", "register", "sram", "dram")
