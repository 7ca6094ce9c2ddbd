"""A cycle-approximate systolic array: one base class, each dataflow supplies only its mapping.

Exports `SystolicArray` (the base), `OutputStationary`, `WeightStationary`, `InputStationary`,
`DATAFLOW_CLASSES` and `simulate(workload, accelerator) -> Report`.

A layer is a GEMM (M x K) @ (K x N) per group (M = output pixels, K = reduction, N = filters). A
mapping places two of {M, K, N} on the array's rows and columns and streams the third in time:

    output-stationary  rows=M  cols=N  time=K    (SCALE-Sim's Sr, Sc, T for "os")
    weight-stationary  rows=K  cols=N  time=M
    input-stationary   rows=K  cols=M  time=N

The GEMM is cut into folds of rows x cols; folds run one after another, column folds outermost (as
SCALE-Sim orders them). A fold takes T + rows + cols - 2 cycles (operands skew in, results drain),
plus `rows` cycles to preload the stationary operand when it is a weight or an input. SCALE-Sim v3
reports folds x that - 1 per layer: its total is the index of the last cycle, starting at 0.
Everything is closed-form per layer or numpy over the folds of one or a few column passes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .energy import ENERGY_COMPONENTS
from .layers import Layer, Workload
from .memory import MemoryLevel, double_buffered_cycles
from .spec import Accelerator

OPERAND_DIMS = {"ifmap": ("m", "k"), "filter": ("k", "n"), "ofmap": ("m", "n")}

ASSUMPTIONS = (
    "Compute cycles per fold follow SCALE-Sim v3: T + rows + cols - 2, plus rows to preload the "
    "stationary operand (WS, IS); SCALE-Sim prints one cycle less per layer (last cycle index).",
    "Each fold's operands are prefetched while the previous fold computes (double buffering) over one "
    "DRAM interface; stall cycles are the cycles DRAM traffic adds beyond compute.",
    "DRAM moves each distinct tensor element once per pass; an operand re-streamed every column pass "
    "stays on chip when it fits its SRAM (half of it when double-buffered); im2col halo reuse is ideal.",
    "Partial sums of a reduction folded over rows (WS, IS) stay in the ofmap SRAM at accumulator width "
    "and spill to DRAM when they do not fit.",
    "Precision-scalable PEs pack several narrow MACs of the same dot product into one PE cycle; "
    "operands wider than the PE take several passes (bit-slicing along the reduction).",
    "Groups (depthwise, batched matmul) run one after another as independent GEMMs.",
    "Energy = MACs x (multiply + accumulate) + register bits x pJ/bit + SRAM and DRAM bytes x pJ/bit; "
    "idle PEs, leakage, clock tree, control and on-chip wires cost nothing.",
    "Not modelled: pooling, element-wise and activation layers, SRAM banking conflicts, DRAM latency "
    "and row-buffer effects, inter-layer fusion (every layer reads its input from DRAM).",
)


@dataclass(frozen=True)
class FoldPlan:
    """How one group of a layer folds onto the array."""

    dims: dict  # gemm dim -> size, K already packed by the PE's MACs per cycle
    row_folds: int
    col_folds: int
    fold_cycles: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds


class SystolicArray:
    """The array model; a subclass names its mapping with `rows_dim` and `cols_dim` and nothing else."""

    name = ""
    rows_dim = ""
    cols_dim = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        dims = {cls.rows_dim, cls.cols_dim}
        if len(dims) != 2 or not dims <= {"m", "k", "n"}:
            raise TypeError(f"{cls.__name__}: rows_dim and cols_dim must be two of 'm', 'k', 'n'")
        if cls.cols_dim == "k":
            raise TypeError(f"{cls.__name__}: the reduction may run along rows or time, not columns")
        cls.time_dim = ({"m", "k", "n"} - dims).pop()

    def __init__(self, accelerator: Accelerator):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, got {type(accelerator).__name__}")
        if accelerator.array.dataflow != self.name:
            raise ValueError(f"{type(self).__name__} models dataflow {self.name!r}, the accelerator "
                             f"asks for {accelerator.array.dataflow!r}")
        self.accel = accelerator
        self.rows, self.cols = accelerator.array.rows, accelerator.array.cols
        self.dram = MemoryLevel("dram", accelerator.memory.dram_bytes_per_cycle)
        self.stationary_is_output = {self.rows_dim, self.cols_dim} == {"m", "n"}

    # --- mapping -------------------------------------------------------------------------------
    def plan(self, layer: Layer) -> FoldPlan:
        rate = self.accel.pe.macs_per_cycle(layer.weight_bits, layer.act_bits)
        k_packed = -(-layer.gemm_k * rate.denominator // rate.numerator)
        dims = {"m": layer.gemm_m, "k": k_packed, "n": layer.gemm_n}
        preload = 0 if self.stationary_is_output else self.rows
        return FoldPlan(dims, -(-dims[self.rows_dim] // self.rows), -(-dims[self.cols_dim] // self.cols),
                        dims[self.time_dim] + self.rows + self.cols - 2 + preload)

    def _folds_along(self, plan: FoldPlan, dim: str) -> int:
        return {self.rows_dim: plan.row_folds, self.cols_dim: plan.col_folds}.get(dim, 1)

    # --- one layer -----------------------------------------------------------------------------
    def layer_stats(self, layer: Layer) -> dict:
        """Cycles, utilisation, SRAM/DRAM traffic (bytes) and energy (pJ) of one layer."""
        accel, g = self.accel, layer.groups
        plan = self.plan(layer)
        rate = accel.pe.macs_per_cycle(layer.weight_bits, layer.act_bits)
        acc_bytes = accel.pe.accumulator_bits / 8
        bytes_of = {"ifmap": layer.act_bits / 8, "filter": layer.weight_bits / 8, "ofmap": layer.out_bits / 8}
        sram_elems = self.sram_elems(layer, plan)
        k_folds = self._folds_along(plan, "k")
        outputs = layer.gemm_m * layer.gemm_n
        psum_bytes = outputs * (k_folds - 1) * acc_bytes  # written then read back, once per extra k-fold

        # DRAM traffic and stalls, per group.
        unique = {"ifmap": layer.ifmap_elems / g * bytes_of["ifmap"],
                  "filter": layer.filter_elems / g * bytes_of["filter"],
                  "ofmap": layer.ofmap_elems / g * bytes_of["ofmap"]}
        loads0, loads1, writes, parts = self._dram_schedule(plan, unique, outputs * acc_bytes)
        compute = plan.fold_cycles
        overlap = accel.memory.double_buffered
        cycles_group = self._pipeline(compute, loads0, loads1, writes, plan.col_folds, overlap)
        compute_cycles = g * plan.folds * compute
        total_cycles = int(round(g * cycles_group))
        dram_read = g * _all_passes((loads0, loads1), plan.col_folds)
        dram_write = g * plan.col_folds * writes.sum()

        sram_read = {"ifmap": g * sram_elems["ifmap"] * bytes_of["ifmap"],
                     "filter": g * sram_elems["filter"] * bytes_of["filter"],
                     "ofmap": g * psum_bytes + dram_write}
        # DRAM fills write the input SRAMs; the ofmap SRAM takes outputs, partial sums and spill reloads.
        sram_write = {"ifmap": g * _all_passes(parts["ifmap"], plan.col_folds),
                      "filter": g * _all_passes(parts["filter"], plan.col_folds),
                      "ofmap": g * (outputs * bytes_of["ofmap"] + psum_bytes
                                    + _all_passes(parts["psum"], plan.col_folds))}

        macs = layer.macs
        energy = self.energy(layer, macs, sram_read, sram_write, dram_read + dram_write)
        slots = g * plan.folds * self.rows * self.cols
        row = {
            "layer": layer.name, "op": layer.op, "macs": macs,
            "weight_bits": layer.weight_bits, "act_bits": layer.act_bits,
            "macs_per_pe_cycle": float(rate), "folds": g * plan.folds,
            "compute_cycles": compute_cycles, "stall_cycles": total_cycles - compute_cycles,
            "total_cycles": total_cycles,
            # Of the PEs' peak at this width: over compute cycles (SCALE-Sim's Overall Util %, whose total has
            # no stalls when its SRAMs hold the layer) and over all cycles, memory stalls included.
            "compute_utilization": macs / (compute_cycles * self.rows * self.cols * float(rate)),
            "overall_utilization": macs / (total_cycles * self.rows * self.cols * float(rate)),
            "mapping_efficiency": g * plan.dims[self.rows_dim] * plan.dims[self.cols_dim] / slots,
        }
        row.update({f"sram_{op}_read_bytes": sram_read[op] for op in sram_read})
        row.update({f"sram_{op}_write_bytes": sram_write[op] for op in sram_write})
        row.update({"dram_read_bytes": dram_read, "dram_write_bytes": dram_write})
        row.update({f"energy_{c}_pj": energy[c] for c in ENERGY_COMPONENTS})
        row["energy_pj"] = sum(energy.values())
        return row

    def sram_elems(self, layer: Layer, plan: FoldPlan) -> dict:
        """SRAM -> array traffic of one group, in elements: an operand is re-read once per fold along a
        spatial dim it lacks."""
        gemm = {"m": layer.gemm_m, "k": layer.gemm_k, "n": layer.gemm_n}
        return {op: gemm[dims[0]] * gemm[dims[1]] * math.prod(
                    self._folds_along(plan, d) for d in (self.rows_dim, self.cols_dim) if d not in dims)
                for op, dims in OPERAND_DIMS.items()}

    def energy(self, layer: Layer, macs: float, sram_read: dict, sram_write: dict, dram_bytes: float) -> dict:
        """pJ by component of `macs` MACs at the layer's widths and of the SRAM (bytes per buffer) and DRAM
        traffic given: MAC, register, SRAM and DRAM energy from the accelerator's cost table."""
        table, pe, memory = self.accel.energy, self.accel.pe, self.accel.memory
        kib = {"ifmap": memory.ifmap_sram_kib, "filter": memory.filter_sram_kib, "ofmap": memory.ofmap_sram_kib}
        return {
            "mac": macs * table.mac_pj(layer.weight_bits, layer.act_bits, pe.accumulator_bits, layer.arith),
            "register": macs * (layer.weight_bits + layer.act_bits + pe.accumulator_bits) * table.register_pj_per_bit,
            "sram": sum((sram_read[op] + sram_write[op]) * 8 * table.sram_pj_per_bit(kib[op]) for op in kib),
            "dram": dram_bytes * 8 * table.dram_pj_per_bit,
        }

    def _dram_schedule(self, plan: FoldPlan, unique: dict, psum_set_bytes: float):
        """Bytes loaded before each fold of the first and of a later column pass, bytes written after each.

        Returns (loads_first_pass, loads_later_pass, writes, parts) with arrays over the row folds;
        `parts` maps "ifmap"/"filter"/"psum" to their own (first, later) load arrays.
        """
        rf, cf = plan.row_folds, plan.col_folds
        fr = np.arange(rf)
        first_row = (fr == 0).astype(np.float64)
        every = np.ones(rf)
        mem = self.accel.memory
        parts = {}
        for op in ("ifmap", "filter"):
            dims, size = OPERAND_DIMS[op], unique[op]
            if self.rows_dim in dims and self.cols_dim in dims:  # the stationary operand: a new tile per fold
                parts[op] = (every * size / plan.folds, every * size / plan.folds)
            elif self.cols_dim not in dims:  # re-streamed in every column pass unless it stays on chip
                per_fold = every * size / rf
                parts[op] = (per_fold, per_fold * (0.0 if size <= mem.capacity_bytes(op) else 1.0))
            else:  # one slice per column pass, reused across the pass's row folds if the slice fits
                slice_bytes = size / cf
                pattern = first_row if slice_bytes <= mem.capacity_bytes(op) else every
                parts[op] = (pattern * slice_bytes, pattern * slice_bytes)

        writes = np.zeros(rf)
        psum = np.zeros(rf)
        if self.time_dim == "k":  # each fold completes its outputs
            writes += unique["ofmap"] / plan.folds
        else:  # the reduction is folded over rows: outputs complete on the last row fold
            writes[-1] += unique["ofmap"] / cf
            pass_set = psum_set_bytes / cf
            if rf > 1 and pass_set > mem.capacity_bytes("ofmap"):
                writes[:-1] += pass_set  # spill after every row fold but the last
                psum[1:] += pass_set  # and read back before every row fold but the first
        parts["psum"] = (psum, psum)
        loads0 = parts["ifmap"][0] + parts["filter"][0] + psum
        loads1 = parts["ifmap"][1] + parts["filter"][1] + psum
        return loads0, loads1, writes, parts

    def _pipeline(self, compute, loads0, loads1, writes, passes: int, overlap: bool) -> float:
        """Cycles of `passes` column passes: the first with loads0, the rest with loads1.

        Passes 2 .. n-1 see the same neighbours, so each adds the same cycles: the sequence is
        evaluated for three and four passes and the difference extrapolated (exact, O(row folds)).
        """
        def run(n):
            return double_buffered_cycles(self.dram, compute, np.concatenate([loads0] + [loads1] * (n - 1)),
                                          np.tile(writes, n), overlap)
        if passes <= 4:
            return run(passes)
        three, four = run(3), run(4)
        return three + (passes - 3) * (four - three)

    # --- a workload ----------------------------------------------------------------------------
    def run(self, workload: Workload):
        from .report import Report
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
        rows = [self.layer_stats(layer) for layer in workload]
        return Report.from_rows(rows, self.accel, workload, ASSUMPTIONS + workload.notes)


def _all_passes(loads: tuple, passes: int) -> float:
    """Total of a (first pass, later pass) pair of per-fold load arrays over all column passes."""
    first, later = loads
    return float(first.sum() + (passes - 1) * later.sum())


class OutputStationary(SystolicArray):
    """Each PE accumulates one output; inputs flow along rows, weights down columns."""

    name, rows_dim, cols_dim = "os", "m", "n"


class WeightStationary(SystolicArray):
    """Each PE holds one weight; inputs stream through, partial sums flow down the columns."""

    name, rows_dim, cols_dim = "ws", "k", "n"


class InputStationary(SystolicArray):
    """Each PE holds one input element; weights stream through, partial sums flow down the columns."""

    name, rows_dim, cols_dim = "is", "k", "m"


DATAFLOW_CLASSES = {cls.name: cls for cls in (OutputStationary, WeightStationary, InputStationary)}


def simulate(workload: Workload, accelerator: Accelerator, scalesim_compat=False):
    """Runs every layer of `workload` on `accelerator` with its dataflow; returns a Report.

    scalesim_compat=True (or "user", "calc") counts cycles, stalls and traffic with SCALE-Sim v3's
    conventions instead of qsim's (see qsim.hw.scalesim_compat)."""
    if scalesim_compat is not False:
        from .scalesim_compat import simulate as simulate_compat
        return simulate_compat(workload, accelerator, scalesim_compat)
    return DATAFLOW_CLASSES[accelerator.array.dataflow](accelerator).run(workload)
