"""SCALE-Sim v3's accounting conventions, so that a design can be checked against it number for number.

Exports `simulate(workload, accelerator, mode)` (what `qsim.hw.simulate(..., scalesim_compat=mode)`
calls) and `MODES`. qsim's own model shares one DRAM link, counts bytes at each operand's width and
spills 32-bit partial sums; SCALE-Sim gives each operand its own link, counts 1-byte words, writes
each partial output once and never reads it back, and prefetches an operand that fits its SRAM
before cycle 0. Mode "user" is SCALE-Sim's InterfaceBandwidth USER (the accelerator's per-operand
`[memory]` bandwidths, in words per cycle); "calc" is its CALC mode (bandwidth sized to need: no stalls,
each distinct word fetched once). The read buffers' refills and stalls are walked fold by fold as
SCALE-Sim's hashed sets see them (`_read_words`); docs/hw.md says where that is exact and how far the
rest is (im2col duplicates, an output link slower than the array, CALC reuse beyond its buffer).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

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
    "Read buffers: half of each SRAM is prefetched before cycle 0; a demand outside SCALE-Sim's 50-set "
    "window fetches half an SRAM more, serially on the operand's link, and stalls twice as long as the "
    "refill is late. im2col duplicates that hit in another set are not seen (convolutions may refill more).",
    "Output link: the ofmap SRAM absorbs its size, then partial outputs leave at the link's rate "
    "(an approximation of SCALE-Sim's half-SRAM drains).",
    "CALC mode: no stalls; the read buffer forgets everything once 50 sets of SRAM/100 words are fetched: "
    "walked for the filter; the ifmap's distinct addresses (windows past the tensor's edge included, as "
    "SCALE-Sim's) count once, or once per column pass when they overflow (approximate).",
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

    reads, refills = {}, []
    for op in READ_OPERANDS:
        sram_words = math.floor(getattr(memory, f"{op}_sram_kib") * 1024)
        if words_per_cycle is None:
            reads[op] = _calc_words(array, layer, plan, op, sram_words)
        else:
            reads[op], times = _read_words(array, layer, plan, op, sram_words, words_per_cycle[op])
            refills += [(demanded, op, ready) for demanded, ready in times]
    stall = _refill_stalls(refills)
    if words_per_cycle is not None:  # the ofmap SRAM absorbs its size, then outputs leave at the link's rate
        backlog = partial_outputs - math.floor(memory.ofmap_sram_kib * 1024)
        stall = max(stall, -(-backlog // words_per_cycle["ofmap"]) - compute)

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


def _refill_stalls(refills) -> int:
    """SCALE-Sim's stall cycles from (array cycle, operand, cycle the refill is in) events. Per cycle and
    operand it starts an offset at 1 and adds each refill's ready - (cycle + stalls so far + offset), twice
    when positive (so an early refill lets a later one in the same cycle wait less); the cycle stalls by
    the largest offset - 1 of its operands, if positive."""
    stall = 0
    for demanded, events in itertools.groupby(sorted(refills), key=lambda event: event[0]):
        worst = 0
        for _, chain in itertools.groupby(events, key=lambda event: event[1]):
            offset = 1
            for _, _, ready in chain:
                late = ready - (demanded + stall + offset)
                offset += 2 * late if late > 0 else late
            worst = max(worst, offset - 1)
        stall += worst
    return stall


def _passes(array: SystolicArray, plan: FoldPlan, op: str) -> int:
    """How often SCALE-Sim's fold loop (column folds outermost) streams an operand through: once per column
    pass for an operand without the column dimension, else once."""
    return 1 if array.cols_dim in OPERAND_DIMS[op] else plan.col_folds


def _read_words(array: SystolicArray, layer: Layer, plan: FoldPlan, op: str, sram_words: int, bandwidth: int):
    """(DRAM words, [(cycle a refill is demanded, cycle it is in)]) of SCALE-Sim's USER-mode read buffer.

    SCALE-Sim prefetches the operand matrix fold by fold, padded to the array edge (its prefetch matrix,
    `entries` long), in lines of `bandwidth` words. Before cycle 0 it fills the active half of the SRAM,
    min(ceil(half / bw), ceil(entries / bw)) lines. Its hit test hashes the valid entries (the im2col
    matrix, duplicates included) in prefetch order into a ring of sets of ceil(SRAM / 100) entries and
    looks in a window of ceil(half / set) sets; a miss slides the window by as many sets and fetches
    half an SRAM more (ceil(half / bw) lines, one per cycle after the previous refill). The folds'
    demands are walked here set by set, a fold's entries spread evenly over its cycles. Because the
    prefetch order is diagonal, a fold's first entries come before the previous fold's last ones: when
    a window boundary falls between them, SCALE-Sim turns the whole ring, and so does this walk.
    """
    dims = {"m": layer.gemm_m, "k": layer.gemm_k, "n": layer.gemm_n}
    segments, entries = _demand_segments(array, plan, dims, op)
    active = math.ceil(sram_words / 2)
    per_set = math.ceil(sram_words / 100)
    ring = dims[OPERAND_DIMS[op][0]] * dims[OPERAND_DIMS[op][1]] // per_set + 1
    window = min(ring, math.ceil(active / per_set))
    step = min(math.ceil((sram_words - active) / per_set), ring - window)
    first = min(-(-active // bandwidth), -(-entries // bandwidth)) * bandwidth
    refill_lines = -(-(sram_words - active) // bandwidth)
    misses = _refills(segments, per_set, ring, window, step) if step else []
    times = [(demanded, k * (refill_lines + 1) - 1) for k, demanded in enumerate(misses, start=1)]
    return first + len(misses) * refill_lines * bandwidth, times


def _demand_segments(array: SystolicArray, plan: FoldPlan, dims: dict, op: str, prefetch_order: bool = True):
    """SCALE-Sim's demand for one operand as [(start, end, cycle of start, entries per cycle)] in demand order
    (column folds outermost), and the prefetch matrix's length with its padding. With `prefetch_order`,
    positions are valid entries in SCALE-Sim's prefetch order and a stationary tile's rows come last row
    first (SCALE-Sim flips them); without, tiles follow one another and a fold is one segment (enough to
    count distinct entries). A streamed operand reads its fold's tile in order."""
    a, b = OPERAND_DIMS[op]
    edge = {array.rows_dim: array.rows, array.cols_dim: array.cols}
    def used(dim, fold):  # of the array edge along `dim`, what fold `fold` fills
        return min(edge[dim], dims[dim] - fold * edge[dim])
    segments = []
    if array.time_dim in (a, b):  # streamed: tiles of time x edge, one per fold along its spatial dim
        spatial = b if a == array.time_dim else a
        time, width = dims[array.time_dim], edge[spatial]
        tiles = -(-dims[spatial] // width)
        pad_from, pad_row = used(spatial, tiles - 1), (tiles - 1) * time  # the last tile's padding columns
        lead = 0 if array.stationary_is_output else array.rows  # streaming starts after the preload

        def position(row, col):  # valid entries before (row, col): SCALE-Sim prefetches the stacked tiles
            d = row + col        # diagonal by diagonal, each from its last row up
            before = (d * (d + 1) // 2 if d <= width else width * (width + 1) // 2 + (d - width) * width) + col
            padding = sum(min(max(d - c - pad_row, 0), time) for c in range(pad_from, width))
            return before - padding - sum(d - c >= pad_row for c in range(pad_from, col))
        for fold in range(plan.folds):
            f = fold % plan.row_folds if spatial == array.rows_dim else fold // plan.row_folds
            begin, end = ((position(f * time, 0), position(f * time + time - 1, used(spatial, f) - 1) + 1)
                          if prefetch_order else (f * time * width, f * time * width + time * used(spatial, f)))
            segments.append((begin, end, fold * plan.fold_cycles + lead, width))
        return segments, time * width * tiles
    starts = np.cumsum([0] + [dims[array.rows_dim] * used(array.cols_dim, f) for f in range(plan.col_folds)])
    for fold in range(plan.folds):  # stationary: a rows-dim x edge tile per column fold, row-major
        fc, fr = divmod(fold, plan.row_folds)
        width = used(array.cols_dim, fc)
        first, rows = starts[fc] + fr * array.rows * width, used(array.rows_dim, fr)
        if not prefetch_order:
            segments.append((first, first + rows * width, fold * plan.fold_cycles, width))
        for row in reversed(range(rows) if prefetch_order else ()):
            begin = first + row * width
            segments.append((begin, begin + width, fold * plan.fold_cycles + array.rows - 1 - row, width))
    return segments, dims[array.rows_dim] * array.cols * plan.col_folds


def _refills(segments, per_set: int, ring: int, window: int, step: int) -> list:
    """The demand cycle of each window slide while the sets of `segments` are read in order: the window
    holds sets [start, start + window) of a ring of `ring` sets and a miss moves start by `step`."""
    start, misses = 0, []
    for begin, end, cycle, per_cycle in segments:
        s, last = begin // per_set, (end - 1) // per_set
        while s <= last:
            while (s - start) % ring >= window:
                start = (start + step) % ring
                misses.append(cycle + (max(begin, s * per_set) - begin) // per_cycle)
            s += window - (s - start) % ring  # the rest of the window hits
    return misses


def _calc_words(array: SystolicArray, layer: Layer, plan: FoldPlan, op: str, sram_words: int) -> int:
    """DRAM words of SCALE-Sim's CALC-mode read buffer, which remembers the distinct words fetched since it
    last forgot and forgets them all when they fill its 50 sets of floor(SRAM / 100) words. The filter's
    words are its matrix entries, walked fold by fold; the ifmap's im2col entries repeat addresses, so it
    counts each distinct address once, or once per pass when they overflow the 50 sets."""
    capacity = 50 * (sram_words // 100)
    if op == "filter":
        dims = {"m": layer.gemm_m, "k": layer.gemm_k, "n": layer.gemm_n}
        return _forgetful_misses(_demand_segments(array, plan, dims, op, prefetch_order=False)[0], capacity)
    # SCALE-Sim's addresses: no padding, and windows past the tensor's edge read addresses too
    span_h = (layer.P - 1) * layer.stride[0] + (layer.R - 1) * layer.dilation[0] + 1
    span_w = (layer.Q - 1) * layer.stride[1] + (layer.S - 1) * layer.dilation[1] + 1
    distinct = dataclasses.replace(layer, H=span_h, W=span_w, padding=(0, 0)).ifmap_elems // layer.groups
    return distinct if distinct <= capacity else distinct * _passes(array, plan, op)


def _forgetful_misses(segments, capacity: int) -> int:
    """Entries fetched while `segments` are read in order by a buffer that remembers what it fetched since it
    last forgot, and forgets all of it when that reaches `capacity` entries."""
    remembered, count, misses = [], 0, 0
    for begin, end, *_ in segments:
        p = begin
        while p < end:
            inside = [hi for lo, hi in remembered if lo <= p < hi]
            if inside:
                p = inside[0]
                continue
            take = min(min([lo for lo, _ in remembered if p < lo < end], default=end) - p, capacity - count)
            misses, count = misses + take, count + take
            if count == capacity:
                remembered, count = [], 0
            elif remembered and remembered[-1][1] == p:
                remembered[-1] = (remembered[-1][0], p + take)
            else:
                remembered.append((p, p + take))
            p += take
    return misses
