"""OverQ's hardware cost on the weight-stationary systolic array: what the mechanism adds to each PE and
to the activation traffic, beside the bits-wide and 2·bits-wide baselines it sits between.

Exports OverQSpec / OverQCost (hw_models/overq_*.toml, loaded with load_overq), OverQArray (a
WeightStationary array with OverQ PEs), pe_area_ge and compare(workload, spec) -> DataFrame.

What OverQ adds (Zhao et al., OverQ; the gate-level design is a reconstruction, see the TOML file):
  - a weight multiplexer per PE (weight_mux_ways, cascade + 1 in the packaged file): a slot that holds a
    shifted value or the extra bits of its neighbour multiplies by that neighbour's weight;
  - a shifter: the high half of a range-overwritten outlier is worth 2^bits (and with precision the low
    bits 2^-bits) of its product: a conditional shift, one 2:1 mux level per direction over the
    weight_bits + 2·bits product;
  - tag_bits per activation, stored and moved with it (SRAM, DRAM, the PE pipeline registers).
The multiplier stays bits wide, so the array runs the bits-wide baseline's folds and compute cycles;
only the tags' extra memory traffic can add stall cycles.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .energy import ENERGY_COMPONENTS
from .layers import Workload
from .spec import Accelerator, load_accelerator
from .systolic import WeightStationary
from . import toml_spec


@dataclass(frozen=True)
class OverQCost:
    """Per-gate costs: areas in NAND2 gate equivalents, switching energy per 2:1 mux bit, activity."""

    mux2_ge: float
    full_adder_ge: float
    flop_ge: float
    mux2_pj_per_bit: float
    activity: float = 1.0
    source: str = ""

    def __post_init__(self):
        for name in ("mux2_ge", "full_adder_ge", "flop_ge"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.mux2_pj_per_bit >= 0:
            raise ValueError(f"mux2_pj_per_bit must be >= 0, got {self.mux2_pj_per_bit!r}")
        if not 0 <= self.activity <= 1:
            raise ValueError(f"activity must be in [0, 1], got {self.activity!r}")


@dataclass(frozen=True)
class OverQSpec:
    """An OverQ accelerator: the base accelerator's name, the OverQ configuration and its costs."""

    name: str
    accelerator: str
    bits: int
    cascade: int
    precision: bool
    tag_bits: int
    weight_mux_ways: int
    cost: OverQCost
    description: str = ""

    def __post_init__(self):
        for name, low in (("bits", 2), ("cascade", 0), ("tag_bits", 1), ("weight_mux_ways", 1)):
            value = getattr(self, name)
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value!r}")

    def mux_bits(self, weight_bits: float) -> float:
        """2:1 mux bits per PE: the weight multiplexer and the shifter's levels."""
        weight_mux = (self.weight_mux_ways - 1) * weight_bits  # a w-way mux: w - 1 levels of 2:1
        shifter = (weight_bits + 2 * self.bits) * (2 if self.precision else 1)
        return weight_mux + shifter


def load_overq(name_or_path="overq_ws_32x32") -> tuple[OverQSpec, Accelerator]:
    """The OverQ spec and its base accelerator, set to the weight-stationary dataflow."""
    table, source = toml_spec.resolve(name_or_path)
    spec = toml_spec.build(OverQSpec, table, source)
    return spec, load_accelerator(spec.accelerator, dataflow="ws")


def pe_area_ge(accel: Accelerator, cost: OverQCost, weight_bits: float, act_bits: float,
               spec: OverQSpec | None = None) -> float:
    """One PE's area in gate equivalents: a weight_bits x act_bits array multiplier (one full adder per
    partial-product bit), an accumulator-wide adder and the weight, activation and partial-sum registers;
    with `spec`, OverQ's multiplexers and tag registers."""
    acc = accel.pe.accumulator_bits
    area = (weight_bits * act_bits + acc) * cost.full_adder_ge + (weight_bits + act_bits + acc) * cost.flop_ge
    if spec is not None:
        area += spec.mux_bits(weight_bits) * cost.mux2_ge + spec.tag_bits * cost.flop_ge
    return area


ASSUMPTIONS = (
    "OverQ: PE structure reconstructed (the paper's gate-level design is not public): a weight_mux_ways-way "
    "weight mux, a conditional shift by bits (each direction), tag_bits per activation; see the TOML file.",
    "OverQ: tags are stored and moved with every activation (SRAM, DRAM, PE registers); the multiplier "
    "stays bits wide, so compute cycles equal the bits-wide baseline's.",
    "OverQ: mux and shifter bits switch with the configured activity on every MAC; wires to the "
    "neighbouring PEs' weights cost no area or energy.",
    "Area: a PE is an array multiplier (one full adder per partial-product bit), an accumulator-wide "
    "adder and its registers; SRAMs, control and wiring are excluded.",
)


class OverQArray(WeightStationary):
    """A weight-stationary array whose PEs take OverQ activations (spec.bits data + spec.tag_bits tag)."""

    def __init__(self, accelerator: Accelerator, spec: OverQSpec):
        super().__init__(accelerator)
        self.spec = spec

    def layer_stats(self, layer) -> dict:
        spec = self.spec
        plain = super().layer_stats(layer.with_bits(act_bits=spec.bits))
        # The same layer with each activation tag_bits wider: the memory traffic and register bits of the tags.
        tagged = super().layer_stats(layer.with_bits(act_bits=spec.bits + spec.tag_bits))
        if plain["macs_per_pe_cycle"] != tagged["macs_per_pe_cycle"]:
            raise ValueError(f"layer {layer.name!r}: this PE's MAC rate depends on the activation width "
                             f"({spec.bits} vs {spec.bits + spec.tag_bits} bits), but OverQ's tags bypass the "
                             f"multiplier; model OverQ on a PE with scaling 'none' or a wide enough native_bits")
        row = dict(tagged)
        row["act_bits"] = spec.bits
        # Tag register bits are in `tagged`'s register energy; the multiplier is `plain`'s, plus the muxes.
        overhead_mac = layer.macs * spec.mux_bits(layer.weight_bits) * spec.cost.mux2_pj_per_bit * spec.cost.activity
        row["energy_mac_pj"] = plain["energy_mac_pj"] + overhead_mac
        row["energy_pj"] = sum(row[f"energy_{c}_pj"] for c in ENERGY_COMPONENTS)
        row["overq_overhead_pj"] = row["energy_pj"] - plain["energy_pj"]
        row["tag_bits"] = spec.tag_bits
        return row

    def run(self, workload: Workload):
        report = super().run(workload)
        return type(report)(report.accelerator, report.workload_name, report.frame,
                            report.assumptions + ASSUMPTIONS, report.batch)


def compare(workload: Workload, spec: OverQSpec, accelerator: Accelerator,
            accuracy: dict | None = None) -> pd.DataFrame:
    """bits-wide baseline, OverQ at bits, and 2·bits-wide baseline side by side on `workload`: cycles,
    energy by component (µJ), PE area (GE) and its overhead over the bits-wide PE; `accuracy` (a dict
    keyed by the three row labels) adds a column."""
    if not isinstance(workload, Workload):
        raise TypeError(f"workload: expected a Workload; got {type(workload).__name__}")
    b = spec.bits
    weight_bits = max(layer.weight_bits for layer in workload)  # the PE is built for the widest weights
    cost = spec.cost
    rows = {}
    for label, act_bits, with_overq in ((f"{b}-bit baseline", b, False), (f"OverQ {b}-bit", b, True),
                                        (f"{2 * b}-bit baseline", 2 * b, False)):
        layers = Workload(workload.name, tuple(layer.with_bits(act_bits=act_bits) for layer in workload),
                          workload.notes, workload.batch)
        array = OverQArray(accelerator, spec) if with_overq else WeightStationary(accelerator)
        totals = array.run(layers).totals()
        area = pe_area_ge(accelerator, cost, weight_bits, act_bits, spec if with_overq else None)
        rows[label] = {"act_bits": act_bits, "total_cycles": totals["total_cycles"],
                       "compute_cycles": totals["compute_cycles"],
                       **{f"energy_{c}_uj": totals[f"energy_{c}_uj"] for c in ENERGY_COMPONENTS},
                       "energy_uj": totals["energy_uj"], "pe_area_ge": area}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    base_area = frame["pe_area_ge"].iloc[0]
    frame["pe_area_overhead"] = frame["pe_area_ge"] / base_area - 1
    frame["energy_vs_baseline"] = frame["energy_uj"] / frame["energy_uj"].iloc[0] - 1
    if accuracy is not None:
        frame["accuracy"] = [accuracy.get(label) for label in frame.index]
    return frame
