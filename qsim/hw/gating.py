"""The channel-gating accelerator (Hua et al., MICRO 2019): the output-stationary systolic array plus a gate unit
and a conditional pass that runs only where the measured gates are on.

Exports `GatingSpec` (the [gating] section of hw_models/channel_gating_*.toml), `GatedAccelerator`, `load`,
`ChannelGatingArray` (an OutputStationary subclass: only the difference), `simulate`, `summary`, `render`
and SCHEDULES.

A gated layer (a Layer carrying GateMasks, see qsim.hw.workload) runs in three parts:
  base pass        the dense systolic model on the base reduction (C/groups/partitions input channels) for every
                   output: SystolicArray.layer_stats of that smaller layer.
  gate unit        one comparison per output against a per-channel threshold (eval-mode BN without affine
                   parameters folds into it: (y − μ)/σ > Δ  <=>  y > μ + σΔ); `comparators` outputs per cycle,
                   pipelined behind the base pass: each fold's outputs are compared while the next fold computes.
  conditional pass the rest of the reduction (L cycles per output after PE packing) for gated-on outputs only.
The paper does not publish how the conditional work is scheduled; it decides achieved speedup, so it is the
`schedule` parameter. With R x C the array, F = R + C − 2 the fill/drain of one systolic pass, a_{t,n} the gated-on
pixels of output channel n in tile t (tile_pixels consecutive output pixels), per conv group:
  lockstep   the dense folds (R pixels x C channels); a fold runs L + F cycles if any of its outputs is on (the
             fold waits for its busiest PE), and is skipped if all are off.
  compacted  (reconstruction of the paper's) each PE column compacts its channel's on-pixels of a tile and feeds
             them R at a time; the columns of a tile synchronise at its end: s = max_n ceil(a_{t,n} / R) slots of
             L + F cycles per (tile, column fold). The rows of a column then read different pixels, so inputs are
             not shared along rows: ifmap SRAM reads are per executed output (its own window).
  ideal      total work / PEs: ceil(Σ on · (L + F) / (R·C)), every slot of every PE busy.
lockstep >= compacted >= ideal for the same masks (tile_pixels is a multiple of R), since a tile's busiest column
needs at least s row folds with work and at least the mean work. Per-tile imbalance (compacted / ideal conditional
cycles) is what separates achieved from ideal speedup. Dense and gated layers both take max(compute, DRAM) cycles,
so for a layer that fills the array achieved speedup <= ideal speedup (dense MACs / gated MACs) under every
schedule: the second pass pays fill/drain again, the gate adds cycles, imbalance adds slots.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import toml_spec
from .layers import Layer, Workload
from .spec import Accelerator, accelerator_from_table
from .systolic import ASSUMPTIONS as SYSTOLIC_ASSUMPTIONS
from .systolic import OutputStationary

SCHEDULES = ("lockstep", "compacted", "ideal")

ASSUMPTIONS = (
    "Channel gating: the base pass, the gate and the conditional pass of a layer run tile by tile, so partial "
    "sums stay on chip (ofmap SRAM at accumulator width: written once, read by the gate, read again where on).",
    "Channel gating: DRAM traffic is the dense layer's (every input, filter and output still moves once; only MAC "
    "and SRAM work is skipped); a gated layer, and the dense layer it is compared with, takes max(compute, DRAM "
    "transfer) cycles (transfers overlap the whole layer).",
    "Channel gating: a gate comparison costs one accumulator-width integer add of the energy table; the BN of the "
    "gate folds into a per-channel threshold at inference.",
    "Channel gating: comparators, tile_pixels and the conditional-pass schedule are reconstructions (the MICRO 2019 "
    "paper does not publish them): see the accelerator file's [gating] section.",
)


@dataclass(frozen=True)
class GatingSpec:
    """The [gating] section: gate unit and conditional-pass scheduling (all reconstructions, see the TOML)."""

    schedule: str = "compacted"
    tile_pixels: int = 256
    comparators: int = 32

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("tile_pixels", "comparators"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class GatedAccelerator:
    """A systolic Accelerator and its channel-gating extension."""

    accelerator: Accelerator
    gating: GatingSpec

    @property
    def name(self) -> str:
        return self.accelerator.name

    def with_changes(self, **changes) -> "GatedAccelerator":
        """Gating fields (schedule, tile_pixels, comparators) and the accelerator's leaf fields by name."""
        own = {f.name for f in dataclasses.fields(GatingSpec)}
        gating = {k: v for k, v in changes.items() if k in own and v is not None}
        rest = {k: v for k, v in changes.items() if k not in own}
        return GatedAccelerator(self.accelerator.with_changes(**rest), dataclasses.replace(self.gating, **gating))


def load(name_or_path="channel_gating_32x32", **changes) -> GatedAccelerator:
    """A gated accelerator from hw_models/NAME.toml or a path: an accelerator file with a [gating] section."""
    table, source = toml_spec.resolve(name_or_path)
    if "gating" not in table:
        raise ValueError(f"{source}: no [gating] section: not a channel-gating accelerator "
                         f"(e.g. channel_gating_32x32)")
    table = dict(table)
    gating = toml_spec.build(GatingSpec, table.pop("gating"), source, "gating")
    return GatedAccelerator(accelerator_from_table(table, source), gating).with_changes(**changes)


def _pad(array: np.ndarray, axis: int, multiple: int) -> np.ndarray:
    extra = -array.shape[axis] % multiple
    if not extra:
        return array
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, extra)
    return np.pad(array, widths)


class ChannelGatingArray(OutputStationary):
    """The output-stationary array with a gate unit and a conditional pass; ungated layers run as dense."""

    def __init__(self, accelerator: GatedAccelerator, schedule: str | None = None):
        if not isinstance(accelerator, GatedAccelerator):
            raise TypeError(f"accelerator must be a GatedAccelerator (qsim.hw.gating.load), "
                            f"got {type(accelerator).__name__}")
        if accelerator.accelerator.array.dataflow != "os":
            raise ValueError("channel gating is modelled on the output-stationary array (dataflow 'os'): gated-off "
                             f"outputs free a PE; got dataflow {accelerator.accelerator.array.dataflow!r}")
        super().__init__(accelerator.accelerator)
        schedule = accelerator.gating.schedule if schedule is None else schedule
        self.gating = dataclasses.replace(accelerator.gating, schedule=schedule)  # validates the name
        if self.gating.tile_pixels % self.rows:
            raise ValueError(f"tile_pixels={self.gating.tile_pixels} must be a multiple of the array rows "
                             f"({self.rows}): tiles are whole row folds")

    # --- the conditional pass, vectorised over tiles, folds and channels -----------------------------------
    def conditional(self, on: np.ndarray, length: int) -> dict:
        """Cycles and SRAM element reads of the conditional pass for on[g, M, N] (groups, pixels, channels),
        `length` cycles of reduction per output; all three schedules, so imbalance can be reported."""
        R, C, T = self.rows, self.cols, self.gating.tile_pixels
        fill = R + C - 2
        g = on.shape[0]
        padded = _pad(_pad(on, 1, T), 2, C)  # (g, M', N'): whole tiles and column folds
        # lockstep: a dense fold runs iff any of its outputs is on
        folds = padded.reshape(g, -1, R, padded.shape[2] // C, C).any(axis=(2, 4))  # (g, row folds, col folds)
        lockstep_folds = int(folds.sum())
        # compacted: per (tile, column) the on-pixels, in slots of R; columns of a fold wait for the busiest
        counts = padded.reshape(g, -1, T, padded.shape[2]).sum(axis=2)  # (g, tiles, N')
        slots = (-(-counts // R)).reshape(g, counts.shape[1], -1, C).max(axis=3)  # (g, tiles, col folds)
        work = on.sum(axis=(1, 2))  # (g,)
        cycles = {
            "lockstep": lockstep_folds * (length + fill),
            "compacted": int(slots.sum()) * (length + fill),
            "ideal": int(sum(-(-int(w) * (length + fill) // (R * C)) for w in work)),
        }
        active = int(work.sum())
        slot_total = int(slots.sum())
        ifmap_reads = {"lockstep": lockstep_folds * R, "compacted": active, "ideal": active}
        filter_reads = {"lockstep": lockstep_folds * C, "compacted": slot_total * C, "ideal": slot_total * C}
        return {"cycles": cycles, "active": active, "ifmap_reads": ifmap_reads, "filter_reads": filter_reads}

    def gate_cycles(self, base_plan, groups: int) -> int:
        """Comparisons of fold f overlap the compute of fold f+1; what sticks out is added."""
        per_fold = -(-self.rows * self.cols // self.gating.comparators)
        exposed_per_fold = max(0, per_fold - base_plan.fold_cycles)
        return groups * (base_plan.folds * exposed_per_fold + per_fold)

    # --- one layer ----------------------------------------------------------------------------------------
    def layer_stats(self, layer: Layer) -> dict:
        dense = super().layer_stats(layer)
        if layer.gating is None:
            dense.update(dense_macs=layer.macs, dense_cycles=dense["total_cycles"], base_cycles=dense["compute_cycles"],
                         gate_cycles=0, conditional_cycles=0, ideal_conditional_cycles=0, gated_off=0.0,
                         ideal_speedup=1.0, achieved_speedup=1.0, imbalance=1.0, energy_gate_pj=0.0)
            return dense
        masks, g = layer.gating, layer.groups
        p = masks.partitions
        base_layer = dataclasses.replace(layer, C=layer.C // p, gating=None)
        base = super().layer_stats(base_layer)
        base_plan = self.plan(base_layer)
        accel, pe, table = self.accel, self.accel.pe, self.accel.energy
        rate = pe.macs_per_cycle(layer.weight_bits, layer.act_bits)
        cond_k = layer.gemm_k - base_layer.gemm_k  # reduction of the conditional path, unpacked
        length = -(-cond_k * rate.denominator // rate.numerator)

        # (N, K, P, Q) -> (groups, pixels N·P·Q, channels K/groups), pixels in raster order within the batch
        on = masks.on.reshape(layer.N, g, layer.gemm_n, layer.P, layer.Q).transpose(1, 0, 3, 4, 2)
        cond = self.conditional(on.reshape(g, layer.gemm_m, layer.gemm_n), length)
        schedule = self.gating.schedule
        cond_cycles = cond["cycles"][schedule]
        outputs = layer.ofmap_elems
        gate_cycles = self.gate_cycles(base_plan, g)
        compute = base["compute_cycles"] + gate_cycles + cond_cycles
        dram_cycles = int(self.dram.service(dense["dram_read_bytes"] + dense["dram_write_bytes"]))
        total = max(compute, dram_cycles)
        dense_total = max(dense["compute_cycles"], dram_cycles)  # the same overlap rule as the gated layer

        # Energy: executed MACs only; SRAM as the base pass plus the conditional reads and the partial sums.
        cond_macs = cond["active"] * cond_k
        macs = base_layer.macs + cond_macs
        acc_bytes = pe.accumulator_bits / 8
        sram_read = {
            "ifmap": base["sram_ifmap_read_bytes"] + cond["ifmap_reads"][schedule] * cond_k * layer.act_bits / 8,
            "filter": base["sram_filter_read_bytes"] + cond["filter_reads"][schedule] * cond_k * layer.weight_bits / 8,
            "ofmap": base["sram_ofmap_read_bytes"] + (outputs + cond["active"]) * acc_bytes,  # gate; where on
        }
        sram_write = {  # DRAM fills are the dense layer's; Yp is written once at accumulator width
            "ifmap": dense["sram_ifmap_write_bytes"], "filter": dense["sram_filter_write_bytes"],
            "ofmap": base["sram_ofmap_write_bytes"] + outputs * acc_bytes,
        }
        energy = self.energy(layer, macs, sram_read, sram_write, dense["dram_read_bytes"] + dense["dram_write_bytes"])
        energy["gate"] = outputs * table.arith("int").add(pe.accumulator_bits)
        row = dict(dense)
        row.update({
            "macs": macs, "folds": base["folds"], "compute_cycles": compute, "stall_cycles": total - compute,
            "total_cycles": total,
            "compute_utilization": macs / (compute * self.rows * self.cols * float(rate)),
            "overall_utilization": macs / (total * self.rows * self.cols * float(rate)),
            "mapping_efficiency": base["mapping_efficiency"],
            "dense_macs": layer.macs, "dense_cycles": dense_total, "base_cycles": base["compute_cycles"],
            "gate_cycles": gate_cycles, "conditional_cycles": cond_cycles,
            "ideal_conditional_cycles": cond["cycles"]["ideal"], "gated_off": 1 - masks.on_fraction,
            "ideal_speedup": layer.macs / macs, "achieved_speedup": dense_total / total,
            "imbalance": cond_cycles / cond["cycles"]["ideal"] if cond["cycles"]["ideal"] else 1.0,
        })
        row.update({f"sram_{op}_read_bytes": sram_read[op] for op in sram_read})
        row.update({f"sram_{op}_write_bytes": sram_write[op] for op in sram_write})
        row.update({f"energy_{c}_pj": e for c, e in energy.items()})
        row["energy_pj"] = sum(energy.values())
        return row

    def run(self, workload: Workload):
        from .report import Report
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
        rows = [self.layer_stats(layer) for layer in workload]
        for row in rows:
            row["schedule"] = self.gating.schedule
        notes = (f"Channel gating: schedule {self.gating.schedule}, tile_pixels {self.gating.tile_pixels}, "
                 f"{self.gating.comparators} gate comparators.",)
        return Report.from_rows(rows, self.accel, workload,
                                SYSTOLIC_ASSUMPTIONS + ASSUMPTIONS + notes + workload.notes)


def simulate(workload: Workload, accelerator: GatedAccelerator | str = "channel_gating_32x32",
             schedule: str | None = None):
    """Runs `workload` (with gate masks from qsim.hw.workload of a gated model) on a gated accelerator;
    `schedule` overrides the accelerator's. Returns the systolic Report with gating columns."""
    if isinstance(accelerator, str):
        accelerator = load(accelerator)
    return ChannelGatingArray(accelerator, schedule).run(workload)


def summary(report) -> dict:
    """Whole-network figures of a gated Report: dense and gated MACs and cycles, ideal and achieved speedup."""
    f = report.frame
    dense_macs, macs = float(f["dense_macs"].sum()), float(f["macs"].sum())
    dense_cycles, cycles = float(f["dense_cycles"].sum()), float(f["total_cycles"].sum())
    ideal, achieved = dense_macs / macs, dense_cycles / cycles
    return {"dense_macs": dense_macs, "macs": macs, "dense_cycles": dense_cycles, "cycles": cycles,
            "ideal_speedup": ideal, "achieved_speedup": achieved, "achieved_over_ideal": achieved / ideal}


def render(report):
    """A rich table of the gating columns per layer, with the network totals in its footer."""
    from rich.table import Table

    f, s = report.frame, summary(report)
    schedule = f["schedule"].iloc[0] if "schedule" in f else ""
    table = Table(title=f"{report.workload_name} on {report.accelerator.name}: channel gating, {schedule} schedule",
                  show_footer=True)
    columns = [("layer", "total"), ("gated off", ""), ("dense cyc", f"{s['dense_cycles']:,.0f}"),
               ("base cyc", f"{f['base_cycles'].sum():,}"), ("gate cyc", f"{f['gate_cycles'].sum():,}"),
               ("cond cyc", f"{f['conditional_cycles'].sum():,}"), ("imbalance", ""),
               ("ideal x", f"{s['ideal_speedup']:.2f}"), ("achieved x", f"{s['achieved_speedup']:.2f}"),
               ("overall util", ""), ("energy µJ", f"{f['energy_pj'].sum() * 1e-6:,.1f}")]
    for i, (header, footer) in enumerate(columns):
        table.add_column(header, footer=footer, justify="left" if i == 0 else "right", overflow="fold")
    for name, r in f.iterrows():
        table.add_row(str(name), f"{r.gated_off:.0%}", f"{int(r.dense_cycles):,}", f"{int(r.base_cycles):,}",
                      f"{int(r.gate_cycles):,}", f"{int(r.conditional_cycles):,}", f"{r.imbalance:.2f}",
                      f"{r.ideal_speedup:.2f}", f"{r.achieved_speedup:.2f}", f"{r.overall_utilization:.0%}",
                      f"{r.energy_pj * 1e-6:,.2f}")
    return table
