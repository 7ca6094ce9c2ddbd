"""ASIC area of a qsim.hw accelerator: mm² per component at 45 nm from a cited table, other nodes by scaling.

Exports `AreaTable` (loaded with `load_area_table(name_or_path)`, default hw_models/asic_45nm.toml),
`AsicEstimate`, `estimate(accelerator, node_nm=45, precision=..., workload=...)` and `simulate(workload,
accelerator, node_nm)` (the systolic Report with the estimate attached: area, and power = energy per
inference at node_nm x inferences/s, the on-chip energy moved from the energy table's node by Stillmaker
and Baas's energy fit, DRAM's kept).

Per PE: one multiplier at the operand widths (integer or floating point, as the energy model), one
accumulator-wide adder and a flip-flop per operand and accumulator bit; the three operand SRAMs by capacity.
Widths between the published ones follow a power law fitted through Horowitz's two printed widths (the
table file states the exponents); nodes other than 45 nm scale area by Stillmaker and Baas's (2017) table
(qsim.hw.node_scaling), not by a classical (node/45)^2.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from . import toml_spec
from .node_scaling import load_node_scaling

COMPONENTS = ("multiplier", "adder", "register", "sram")


@dataclass(frozen=True)
class AreaRule:
    """um2 at ref_bits, scaled by (bits/ref)^exponent (adders) or (w*a/ref^2)^(exponent/2) (multipliers)."""

    um2: float
    ref_bits: float
    exponent: float

    def __post_init__(self):
        if not (self.um2 > 0 and self.ref_bits > 0 and self.exponent >= 0):
            raise ValueError(f"um2 and ref_bits must be > 0 and exponent >= 0, got {self}")

    def adder(self, bits: float) -> float:
        return self.um2 * (bits / self.ref_bits) ** self.exponent

    def multiplier(self, w_bits: float, a_bits: float) -> float:
        return self.um2 * (w_bits * a_bits / self.ref_bits ** 2) ** (self.exponent / 2)


@dataclass(frozen=True)
class PublishedArea:
    """A printed value the rule was not anchored on (the tests compare the rule with it)."""

    op: str
    bits: float
    um2: float


@dataclass(frozen=True)
class AreaTable:
    name: str
    node_nm: float
    source: str
    register_um2_per_bit: float
    sram_bitcell_um2: float
    sram_array_efficiency: float
    int_add: AreaRule
    int_mult: AreaRule
    float_add: AreaRule
    float_mult: AreaRule
    scaling_rule: str = ""
    published: tuple[PublishedArea, ...] = ()

    def __post_init__(self):
        for field in ("node_nm", "register_um2_per_bit", "sram_bitcell_um2"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)!r}")
        if not 0 < self.sram_array_efficiency <= 1:
            raise ValueError(f"sram_array_efficiency must be in (0, 1], got {self.sram_array_efficiency!r}")

    def node_factor(self, node_nm: float) -> float:
        """Area at `node_nm` relative to the table's node (Stillmaker and Baas, qsim.hw.node_scaling)."""
        return load_node_scaling().area_factor(self.node_nm, node_nm)


def load_area_table(name_or_path="asic_45nm") -> AreaTable:
    table, source = toml_spec.resolve(name_or_path)
    return toml_spec.build(AreaTable, table, source)


@dataclass(frozen=True)
class AsicEstimate:
    """Area by component (mm² at node_nm) of an accelerator at given operand widths."""

    accelerator: str
    node_nm: float
    w_bits: int
    a_bits: int
    arith: str
    pe_um2: dict       # one PE at the table's node: multiplier, adder, register
    area_mm2: dict     # the whole accelerator at node_nm, by component
    table: AreaTable
    energy_scale: float = 1.0  # on-chip energy at node_nm / at the energy table's node (Stillmaker and Baas)

    @property
    def total_mm2(self) -> float:
        return sum(self.area_mm2.values())

    def totals(self, report_totals: dict | None = None) -> dict:
        out = {"asic_node_nm": self.node_nm, "area_mm2": self.total_mm2}
        out.update({f"area_{c}_mm2": v for c, v in self.area_mm2.items()})
        if report_totals is not None:  # energy per inference at node_nm x inferences/s
            energy = report_totals["energy_per_inference_uj"]
            dram = energy * report_totals["energy_dram_uj"] / report_totals["energy_uj"] if energy else 0.0
            out["asic_energy_per_inference_uj"] = (energy - dram) * self.energy_scale + dram  # DRAM is off-chip
            out["power_w"] = out["asic_energy_per_inference_uj"] * 1e-6 * report_totals["inferences_per_s"]
        return out

    def summary(self, report_totals: dict | None = None) -> str:
        parts = ", ".join(f"{c} {v:.3f}" for c, v in self.area_mm2.items())
        text = f"ASIC {self.node_nm:g} nm: {self.total_mm2:.3f} mm² ({parts} mm²)"
        if report_totals is not None:
            text += (f", power {self.totals(report_totals)['power_w']:.3f} W (on-chip energy x "
                     f"{self.energy_scale:.3g} at {self.node_nm:g} nm)")
        return text


def estimate(accelerator, node_nm: float = 45, precision=None, workload=None, table=None) -> AsicEstimate:
    """Area of `accelerator` at `node_nm` for the widths of `precision` or of `workload`'s widest layer."""
    from .fpga import operand_widths
    from .spec import Accelerator, load_accelerator
    accel = accelerator if isinstance(accelerator, Accelerator) else load_accelerator(accelerator)
    table = table if isinstance(table, AreaTable) else load_area_table(table or "asic_45nm")
    factor = table.node_factor(node_nm)
    energy_scale = _energy_scale(accel.energy, node_nm)
    w, a, arith = operand_widths(precision, workload)
    pe = accel.pe
    if arith == "int" and pe.scaling == "none":  # a fixed-width PE multiplies at most native_bits per pass
        w, a = min(w, pe.native_bits), min(a, pe.native_bits)
    elif arith == "int":  # a precision-scalable PE is built for its native width
        w = a = pe.native_bits
    mult, add = (table.float_mult, table.float_add) if arith == "float" else (table.int_mult, table.int_add)
    acc = pe.accumulator_bits
    pe_um2 = {"multiplier": mult.multiplier(w, a), "adder": add.adder(acc),
              "register": (w + a + acc) * table.register_um2_per_bit}
    mem = accel.memory
    sram_bits = (mem.ifmap_sram_kib + mem.filter_sram_kib + mem.ofmap_sram_kib) * 1024 * 8
    um2 = {c: v * accel.pes for c, v in pe_um2.items()}
    um2["sram"] = sram_bits * table.sram_bitcell_um2 / table.sram_array_efficiency
    return AsicEstimate(accel.name, float(node_nm), w, a, arith, pe_um2,
                        {c: v * factor * 1e-6 for c, v in um2.items()}, table, energy_scale)


def _energy_scale(energy, node_nm: float) -> float:
    """On-chip energy at node_nm / at the energy table's node. The supply keeps its ratio to the node's
    nominal one (Horowitz's 0.9 V is 0.9 x the 45 nm nominal 1.0 V, so 0.63 V at 7 nm): an assumption
    that leaves the table's own node unchanged."""
    if not energy.node_nm:
        return 1.0
    scaling = load_node_scaling()
    vdd = energy.vdd or scaling.nominal_vdd(energy.node_nm)
    to_vdd = vdd * scaling.nominal_vdd(node_nm) / scaling.nominal_vdd(energy.node_nm)
    return scaling.energy_factor(energy.node_nm, node_nm, vdd, to_vdd)


ASSUMPTIONS = (
    "ASIC area: per PE one multiplier, one accumulator adder and a flip-flop per operand and accumulator bit, "
    "plus the operand SRAMs by capacity; control, wiring, clock tree and I/O are not counted; other nodes "
    "scale by Stillmaker and Baas's (2017) area table, interpolated log-log between its nodes.",
    "ASIC power: on-chip energy per inference moved from the energy table's node to node_nm by Stillmaker and "
    "Baas's energy fit (high-performance devices; the supply keeps its ratio to each node's nominal one), DRAM "
    "energy unchanged, times the inferences/s at the accelerator's clock (which the node does not change).",
)


def simulate(workload, accelerator, node_nm: float = 45, table=None):
    """The systolic Report of `workload` on `accelerator`, with the area estimate attached (`report.asic`)."""
    from .spec import Accelerator, load_accelerator
    from .systolic import simulate as run
    accel = accelerator if isinstance(accelerator, Accelerator) else load_accelerator(accelerator)
    return attach(run(workload, accel), workload, node_nm, table)


def attach(report, workload, node_nm: float = 45, table=None, extension: str = ""):
    """`report` (of `workload` on its accelerator) with the area at `node_nm` attached; `extension` names
    a channel-gating or OverQ extension the Report ran with, whose own logic the area does not count."""
    asic = estimate(report.accelerator, node_nm, workload=workload, table=table)
    notes = ASSUMPTIONS + ((f"ASIC area: the {extension} logic is not counted, only the base array's PEs and "
                            "SRAMs (its FPGA estimate does count it).",) if extension else ())
    return dataclasses.replace(report, asic=asic, assumptions=report.assumptions + notes)
