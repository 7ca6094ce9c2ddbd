"""SCALE-Sim v3's accounting conventions, so that a design can be checked against it number for number.

Exports `simulate(workload, accelerator, mode)` (what `qsim.hw.simulate(..., scalesim_compat=mode)`
calls) and `MODES`. qsim's own model shares one DRAM link, counts bytes at each operand's width and
spills 32-bit partial sums; SCALE-Sim gives each operand its own link, counts 1-byte words, writes
each partial output once and never reads it back, and prefetches an operand that fits its SRAM
before cycle 0. Mode "user" is SCALE-Sim's InterfaceBandwidth USER (the accelerator's per-operand
`[memory]` bandwidths, in words per cycle); "calc" is its CALC mode (bandwidth sized to need: no stalls,
each distinct word fetched once). Exact where the operands fit SCALE-Sim's read buffers (see
`_read_words`); where they overflow, SCALE-Sim's set-window refills are approximated (docs/hw.md).
"""
from __future__ import annotations

import dataclasses
import math

from .layers import Layer, Workload
from .spec import Accelerator
from .systolic import DATAFLOW_CLASSES, OPERAND_DIMS, FoldPlan, SystolicArray

MODES = ("user", "calc")
READ_OPERANDS = ("ifmap", "filter")
ASSUMPTIONS = (
    "SCALE-Sim v3 conventions (scalesim_compat): 1-byte words whatever the operand width; cycles are "
    "SCALE-Sim's (folds x fold cycles - 1, the index of the last cycle); partial outputs of a reduction "
    "folded over rows are written to DRAM once per fold and never read back.",
    "SCALE-Sim's OS ofmap SRAM write count, which adds rows + cols per fold, is reproduced.",
    "Read buffers: half of each SRAM is prefetched before cycle 0 in lines of the operand's bandwidth; "
    "an operand that fits costs that fill and no stalls. One that overflows is modelled as re-streamed "
    "once per column pass that re-reads it, stalling by the refill time beyond compute (an approximation "
    "of SCALE-Sim's 50-set window).",
    "CALC mode: no stalls; each distinct word is fetched once per pass while the operand fits the "
    "buffer's 50 sets (an input window outside the tensor counts, as in SCALE-Sim's addresses).",
)


def simulate(workload: Workload, accelerator: Accelerator, mode=True):
    """A Report of `workload` on `accelerator` counted as SCALE-Sim counts (mode True = "user", or "calc")."""
    from .report import Report

    if mode is True:
        mode = "user"
    if mode not in MODES:
        raise ValueError(f"scalesim_compat must be True, False or one of {MODES} (SCALE-Sim's USER or CALC "
                         f"bandwidth mode), got {mode!r}")
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    array = DATAFLOW_CLASSES[accelerator.array.dataflow](accelerator)
    words_per_cycle = _bandwidths(accelerator) if mode == "user" else None
    rows = [layer_stats(array, layer, words_per_cycle) for layer in workload]
    notes = ASSUMPTIONS + (f"SCALE-Sim {mode.upper()} bandwidth mode.",)
    return Report.from_rows(rows, accelerator, workload, notes + workload.notes)


def _bandwidths(accelerator: Accelerator) -> dict:
    """Each operand's DRAM link in words per cycle; SCALE-Sim takes whole words (its fetch-line width)."""
    words = {}
    for op in ("ifmap", "filter", "ofmap"):
        value = accelerator.memory.operand_bytes_per_cycle(op)
        if value != int(value):
            raise ValueError(f"scalesim_compat: memory.{op}_dram_bytes_per_cycle (default: dram_bytes_per_cycle) "
                             f"must be a whole number of 1-byte words per cycle, as SCALE-Sim's, got {value!r}")
        words[op] = int(value)
    return words


def layer_stats(array: SystolicArray, layer: Layer, words_per_cycle: dict | None) -> dict:
    """qsim's row for `layer` with SCALE-Sim's cycles, stalls and traffic (words = bytes) in place of qsim's."""
    g, plan, memory = layer.groups, array.plan(layer), array.accel.memory
    compute = plan.folds * plan.fold_cycles - 1
    k_folds = array._folds_along(plan, "k")
    partial_outputs = layer.gemm_m * layer.gemm_n * k_folds
    sram_elems = array.sram_elems(layer, plan)
    ofmap_sram_writes = partial_outputs
    if array.stationary_is_output:  # SCALE-Sim's bookkeeping adds rows + cols per fold
        ofmap_sram_writes += plan.folds * (array.rows + array.cols)

    reads, stall = {}, 0
    for op in READ_OPERANDS:
        sram_words = math.floor(getattr(memory, f"{op}_sram_kib") * 1024)
        if words_per_cycle is None:
            reads[op] = _calc_words(array, layer, plan, op, sram_words)
        else:
            bandwidth = words_per_cycle[op]
            reads[op], refill = _read_words(array, layer, plan, op, sram_words, bandwidth)
            stall = max(stall, -(-refill // bandwidth) - compute)
    if words_per_cycle is not None:
        sram_words = math.floor(memory.ofmap_sram_kib * 1024)
        if partial_outputs > sram_words - math.ceil(sram_words / 2):  # drains while computing
            stall = max(stall, -(-partial_outputs // words_per_cycle["ofmap"]) - compute)
    stall = max(stall, 0)

    row = array.layer_stats(layer)
    macs, rate = layer.macs, row["macs_per_pe_cycle"]
    sram_read = {"ifmap": g * sram_elems["ifmap"], "filter": g * sram_elems["filter"], "ofmap": g * partial_outputs}
    sram_write = {"ifmap": g * reads["ifmap"], "filter": g * reads["filter"], "ofmap": g * ofmap_sram_writes}
    dram_read, dram_write = g * (reads["ifmap"] + reads["filter"]), g * partial_outputs
    energy = array.energy(layer, macs, sram_read, sram_write, dram_read + dram_write)
    pe_slots = array.rows * array.cols * rate
    row.update({
        "compute_cycles": g * compute, "stall_cycles": g * stall, "total_cycles": g * (compute + stall),
        "compute_utilization": macs / (g * compute * pe_slots),
        "overall_utilization": macs / (g * (compute + stall) * pe_slots),
        "dram_read_bytes": dram_read, "dram_write_bytes": dram_write,
        "dram_ifmap_read_bytes": g * reads["ifmap"], "dram_filter_read_bytes": g * reads["filter"],
        "energy_pj": sum(energy.values()),
    })
    row.update({f"sram_{op}_read_bytes": sram_read[op] for op in sram_read})
    row.update({f"sram_{op}_write_bytes": sram_write[op] for op in sram_write})
    row.update({f"energy_{c}_pj": value for c, value in energy.items()})
    return row


def _passes(array: SystolicArray, plan: FoldPlan, op: str) -> int:
    """How often SCALE-Sim's fold loop (column folds outermost) streams an operand through: once per column
    pass for an operand without the column dimension, else once."""
    return 1 if array.cols_dim in OPERAND_DIMS[op] else plan.col_folds


def _read_words(array: SystolicArray, layer: Layer, plan: FoldPlan, op: str, sram_words: int, bandwidth: int):
    """(DRAM words, words refilled while computing) of SCALE-Sim's USER-mode read buffer for one operand.

    SCALE-Sim prefetches the operand matrix fold by fold, padded to the array edge (its prefetch matrix, of
    P entries), in lines of `bandwidth` words; before cycle 0 it fills the active half of the SRAM,
    min(ceil(half / bw), ceil(P / bw)) lines. Its hit test works on sets of ceil(SRAM / 100) valid
    entries (the im2col matrix, duplicates included); when they all fit the active half, nothing more
    is fetched. Otherwise the refill is approximated as P streamed once per pass.
    """
    dims = {"m": layer.gemm_m, "k": layer.gemm_k, "n": layer.gemm_n}
    edge = {array.rows_dim: array.rows, array.cols_dim: array.cols}
    folds = {array.rows_dim: plan.row_folds, array.cols_dim: plan.col_folds}
    a, b = OPERAND_DIMS[op]
    if array.time_dim in (a, b):  # streamed: time x the array edge it enters on, per fold along that edge
        spatial = b if a == array.time_dim else a
        prefetch = dims[array.time_dim] * edge[spatial] * folds[spatial]
    else:  # stationary: one tile per fold, padded along the columns
        prefetch = dims[array.rows_dim] * array.cols * plan.col_folds
    valid = dims[a] * dims[b]
    active = math.ceil(sram_words / 2)
    per_set = math.ceil(sram_words / 100)
    lines = -(-prefetch // bandwidth)
    if valid // per_set + 1 <= math.ceil(active / per_set):
        return min(-(-active // bandwidth), lines) * bandwidth, 0
    first = -(-active // bandwidth) * bandwidth
    total = _passes(array, plan, op) * lines * bandwidth
    return total, total - first


def _calc_words(array: SystolicArray, layer: Layer, plan: FoldPlan, op: str, sram_words: int) -> int:
    """DRAM words of SCALE-Sim's CALC-mode read buffer: each distinct address once while the operand fits
    its 50 sets of floor(SRAM / 100) words, else once per pass (the buffer forgets after 50 sets)."""
    if op == "filter":
        distinct = layer.filter_elems // layer.groups
    else:  # SCALE-Sim's addresses: no padding, and windows past the tensor's edge read addresses too
        span_h = (layer.P - 1) * layer.stride[0] + (layer.R - 1) * layer.dilation[0] + 1
        span_w = (layer.Q - 1) * layer.stride[1] + (layer.S - 1) * layer.dilation[1] + 1
        distinct = dataclasses.replace(layer, H=span_h, W=span_w, padding=(0, 0)).ifmap_elems // layer.groups
    if distinct <= 50 * (sram_words // 100):
        return distinct
    return distinct * _passes(array, plan, op)
