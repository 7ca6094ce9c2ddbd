"""Private caches kept coherent by MESI over a shared LLC and DRAM, with the obstinate option.

Exports `MulticoreSpec` / `load_multicore(name_or_path)` (hw_models/multicore_*.toml), `CacheState`
(the arrays of a W-core cache hierarchy), the compiled `access(...)` that the SGD simulator calls for
every load and store, `simulate_coherence(cores, addresses, writes, ...)` for multi-core traces and
`simulate_cache(addresses, size_bytes, line_bytes, ways)` for single-core traces (pycachesim's oracle).

The protocol is MESI on a snooping bus (every broadcast reaches every holder):
- read miss: served by a core holding the line M or E (a remote transfer; that core drops to S, writing
  back if M), else by the LLC, else by DRAM (the line is then put in the LLC); the reader gets E when no
  other core holds the line, S otherwise.
- write: M or E hits silently (E -> M); S issues an upgrade (an invalidation broadcast, no data);
  a miss reads for ownership (invalidation broadcast + the data as for a read miss). The writer ends in M.
- the LLC is shared, LRU and non-inclusive (fills from DRAM and write-backs go into it; evicting from it
  invalidates nothing). A miss to a line this core lost to an invalidation is a coherence miss.

The obstinate cache (Buckwild!, De Sa et al., ISCA 2017, section on hardware): a holder that receives an
invalidation ignores it with probability q and keeps the line readable, stale. Our exact rules:
- an ignoring holder gives up ownership (M/E -> S) but keeps its data: later reads hit and return the
  old values. Its own written words were already in the coherent copy (below), so nothing is lost.
- staleness bound: a line that has ignored `max_ignored` invalidations obeys the next one, and a stale
  line older than `max_stale_cycles` (core cycles since its first ignored invalidation) is refetched on
  its next access, as a miss. None means unbounded.
- a write to a stale line is an upgrade (broadcast, line -> M) that puts the written word into the
  coherent copy; the other words of the line stay stale in the writer's copy until it is refetched.
  This assumes per-word dirty masks (as sectored caches keep), so stale words are never written back
  over other cores' updates.
Data never lives in this module: callers keep a coherent copy and one copy per core and refresh a
core's copy of a line whenever `access` returns a fill event (MISS_*); see `simulate_coherence`.
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field

import numba
import numpy as np

from . import toml_spec
from .energy import EnergyTable, load_energy_table

# Line states.
INVALID, SHARED, EXCLUSIVE, MODIFIED = 0, 1, 2, 3
# Events `access` returns (the first two leave the core's copy as it is; MISS_* refill it).
HIT, HIT_STALE, UPGRADE, MISS_LLC, MISS_DRAM, MISS_REMOTE = range(6)
EVENTS = ("hit", "hit_stale", "upgrade", "miss_llc", "miss_dram", "miss_remote")
# Per-core counters beside the events.
(N_COHERENCE_MISSES, N_INVALIDATIONS_SENT, N_INVALIDATIONS_RECEIVED, N_INVALIDATIONS_IGNORED,
 N_WRITEBACKS, N_STALE_REFETCHES) = range(len(EVENTS), len(EVENTS) + 6)
COUNTERS = EVENTS + ("coherence_miss", "invalidation_sent", "invalidation_received", "invalidation_ignored",
                     "writeback", "stale_refetch")
UNBOUNDED = np.iinfo(np.int64).max


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_geometry(size_bytes, line_bytes, ways, what="cache"):
    """Sets of a set-associative cache; errors name the argument that is wrong."""
    prefix = f"{what} " if what else ""
    for name, value in (("size_bytes", size_bytes), ("line_bytes", line_bytes), ("ways", ways)):
        _positive_int(f"{prefix}{name}", value)
    if size_bytes % (line_bytes * ways):
        raise ValueError(f"{prefix}size_bytes={size_bytes} is not a multiple of line_bytes x ways "
                         f"= {line_bytes} x {ways} = {line_bytes * ways}")
    return size_bytes // (line_bytes * ways)


# --- the machine description ------------------------------------------------------------------
@dataclass(frozen=True)
class L1Spec:
    size_bytes: int
    line_bytes: int
    ways: int
    hit_cycles: float

    def __post_init__(self):
        check_geometry(self.size_bytes, self.line_bytes, self.ways, "")  # errors read "l1.size_bytes ..."


@dataclass(frozen=True)
class LLCSpec:
    size_bytes: int
    ways: int
    hit_cycles: float
    energy_kib: float


@dataclass(frozen=True)
class CoherenceSpec:
    remote_cycles: float
    upgrade_cycles: float
    invalidation_pj: float


@dataclass(frozen=True)
class DRAMSpec:
    dram_cycles: float
    dram_bytes_per_cycle: float
    memory_parallelism: float

    def __post_init__(self):
        for name in ("dram_cycles", "dram_bytes_per_cycle", "memory_parallelism"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ComputeSpec:
    cycles_per_vector_op: float
    cycles_per_sparse_element: float
    iteration_overhead_cycles: float


@dataclass(frozen=True)
class _MulticoreFile:
    name: str
    cores: int
    clock_ghz: float
    vector_bits: int
    l1: L1Spec
    llc: LLCSpec
    coherence: CoherenceSpec
    memory: DRAMSpec
    compute: ComputeSpec
    description: str = ""
    energy_table: str = "horowitz_45nm"


@dataclass(frozen=True)
class MulticoreSpec:
    """A shared-memory multicore: its caches, latencies (cycles), bandwidth, vector width and energy."""

    name: str
    cores: int
    clock_ghz: float
    vector_bits: int
    l1: L1Spec
    llc: LLCSpec
    coherence: CoherenceSpec
    memory: DRAMSpec
    compute: ComputeSpec
    energy: EnergyTable
    description: str = ""
    assumptions: tuple[str, ...] = field(default=())

    def __post_init__(self):
        check_geometry(self.llc.size_bytes, self.l1.line_bytes, self.llc.ways, "llc")

    def latencies(self) -> np.ndarray:
        """Core cycles of each event (EVENTS order): its latency over the accesses a core overlaps."""
        return np.array([self.l1.hit_cycles, self.l1.hit_cycles, self.coherence.upgrade_cycles,
                         self.llc.hit_cycles, self.memory.dram_cycles, self.coherence.remote_cycles],
                        dtype=np.float64) / self.memory.memory_parallelism

    def event_energy_pj(self) -> dict:
        """pJ per event (Horowitz-style SRAM and DRAM energies per bit from the energy table)."""
        e, line_bits = self.energy, self.l1.line_bytes * 8
        l1_word = 64 * e.sram_pj_per_bit(self.l1.size_bytes / 1024)
        llc_line = line_bits * e.sram_pj_per_bit(self.llc.energy_kib)
        return {"hit": l1_word, "hit_stale": l1_word, "upgrade": l1_word, "miss_llc": l1_word + llc_line,
                "miss_dram": l1_word + llc_line + line_bits * e.dram_pj_per_bit,
                "miss_remote": l1_word + llc_line, "invalidation_sent": self.coherence.invalidation_pj,
                "writeback": llc_line}


def _assumption_lines(text: str) -> tuple[str, ...]:
    return tuple(line.split("# ASSUMPTION:", 1)[0].strip() + " -- " + line.split("# ASSUMPTION:", 1)[1].strip()
                 for line in text.splitlines() if "# ASSUMPTION:" in line)


def load_multicore(name_or_path="multicore_16", **changes) -> MulticoreSpec:
    """A packaged multicore (hw_models/NAME.toml) or a TOML file of the same layout; `changes` override
    top-level fields (cores=, clock_ghz=, vector_bits=)."""
    table, source = toml_spec.resolve(name_or_path)
    table.update({k: v for k, v in changes.items() if v is not None})
    spec = toml_spec.build(_MulticoreFile, table, source)
    _positive_int("cores", spec.cores)
    _positive_int("vector_bits", spec.vector_bits)
    text = (toml_spec._packaged_dir() / f"{spec.name}.toml").read_text() if source.startswith("hw_models/") \
        else open(source).read()
    fields = {f: getattr(spec, f) for f in ("name", "cores", "clock_ghz", "vector_bits", "l1", "llc",
                                            "coherence", "memory", "compute", "description")}
    return MulticoreSpec(energy=load_energy_table(spec.energy_table), assumptions=_assumption_lines(text), **fields)


# --- the compiled state machine -----------------------------------------------------------------
# Each private line has five int64 fields in `lines` (5, W, sets, ways), field first so that the tags of
# a set lie side by side for the lookup: its line address (-1: empty), MESI state, LRU stamp,
# invalidations ignored since its fill (> 0: stale) and the core cycle of the first of them. The LLC is `llc` (sets, ways, 2): line address and LRU stamp. `misc` holds
# [LRU clock, RNG state, n, then n (core, line) pairs]: the lines that went stale during the last access,
# so that a caller holding data snapshots them (a stale copy keeps the values of the moment it went
# stale; fresh copies always equal the coherent one, so they need no copying). `present` (slots, W + 1)
# counts, per hash slot of line addresses, the valid lines each core holds, and in its last column the
# bit set of the cores whose count is non-zero: a snoop visits only those caches, in core order (a filter
# like a snoop directory's; collisions cost a look, never a wrong answer), with no branch per other core.
# Arrays go to the compiled functions one by one: a tuple of arrays costs an atomic reference-count
# update per field per call in numba, 100x the work of a hit. `access` is inlined into its callers' loops
# (a call passing arrays by value costs several times a hit), and the loops and every function they call
# are compiled with _nrt=False: no reference counting at all, so they allocate nothing and their callers
# pass every working array (this alone took the SGD loop from 1.2e7 to 2.7e7 accesses/s on one core).
TAG, STATE, STAMP, IGNORED, SINCE = range(5)
MAX_CORES = 64
_DE_BRUIJN = 0x03F79D71B4CB0A89  # every 6-bit window of it differs: (2^i * it) >> 58 names i
_DE_BRUIJN_INDEX = np.zeros(64, np.int64)
_DE_BRUIJN_INDEX[[((1 << i) * _DE_BRUIJN % 2**64) >> 58 for i in range(64)]] = np.arange(64)
CacheState = namedtuple("CacheState", "lines llc present counters misc")


def new_state(cores, l1_size, line_bytes, l1_ways, llc_size, llc_ways, seed=0) -> CacheState:
    sets = check_geometry(l1_size, line_bytes, l1_ways, "l1")
    llc_sets = check_geometry(llc_size, line_bytes, llc_ways, "llc")
    _positive_int("cores", cores)
    if cores > MAX_CORES:
        raise ValueError(f"cores={cores}: the simulator keeps one bit per core in its snoop filter, at most {MAX_CORES}")
    lines = np.zeros((5, cores, sets, l1_ways), np.int64)
    lines[TAG] = -1
    llc = np.zeros((llc_sets, llc_ways, 2), np.int64)
    llc[..., TAG] = -1
    misc = np.zeros(3 + 2 * cores, np.int64)
    misc[1] = (int(seed) * 0x9E3779B97F4A7C15 + 1) & 0x7FFFFFFFFFFFFFFF
    slots = 1 << max(10, (4 * sets * l1_ways - 1).bit_length())  # >= 4 slots per private line
    return CacheState(lines, llc, np.zeros((slots, cores + 1), np.int64), np.zeros((cores, len(COUNTERS)), np.int64),
                      misc)


@numba.njit(cache=True, _nrt=False)
def uniform(misc):
    """A uniform double in [0, 1) from a 64-bit LCG state in misc[1] (Knuth's MMIX constants)."""
    s = np.uint64(misc[1]) * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
    misc[1] = np.int64(s)
    return float(s >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _next_core(cores):
    """The lowest core of a bit set and the set without it (a De Bruijn multiply finds the bit's index)."""
    low = cores & -cores
    return _DE_BRUIJN_INDEX[(np.uint64(low) * np.uint64(_DE_BRUIJN)) >> np.uint64(58)], cores ^ low


@numba.njit(cache=True, inline="always")
def _release(present, slot, core):
    """One valid line fewer in `core` for this slot; the last one clears the core's bit."""
    present[slot, core] -= 1
    if present[slot, core] == 0:
        present[slot, -1] &= ~(np.int64(1) << core)


@numba.njit(cache=True, inline="always")
def _find(lines, core, s, line):
    for w in range(lines.shape[3]):
        if lines[TAG, core, s, w] == line:
            return w
    return -1


@numba.njit(cache=True, _nrt=False)
def _llc_fill(llc, misc, line):
    """Looks `line` up in the LLC (LRU), installing it on a miss; True on a hit."""
    s = line % llc.shape[0]
    misc[0] += 1
    victim, oldest = 0, llc[s, 0, 1]
    for w in range(llc.shape[1]):
        if llc[s, w, TAG] == line:
            llc[s, w, 1] = misc[0]
            return True
        if llc[s, w, 1] < oldest:
            victim, oldest = w, llc[s, w, 1]
    llc[s, victim, TAG] = line
    llc[s, victim, 1] = misc[0]
    return False


@numba.njit(cache=True, _nrt=False)
def _invalidate_others(lines, present, counters, misc, core, line, now, q, max_ignored):
    """Broadcasts an invalidation of `line`; each holder obeys, or (obstinate) ignores it with probability q."""
    s = line % lines.shape[2]
    slot = line & (present.shape[0] - 1)
    counters[core, N_INVALIDATIONS_SENT] += 1
    others = present[slot, -1] & ~(np.int64(1) << core)
    while others != 0:
        k, others = _next_core(others)
        w = _find(lines, k, s, line)
        if w < 0 or lines[STATE, k, s, w] == INVALID:
            continue
        counters[k, N_INVALIDATIONS_RECEIVED] += 1
        if q > 0.0 and lines[IGNORED, k, s, w] < max_ignored and uniform(misc) < q:
            counters[k, N_INVALIDATIONS_IGNORED] += 1
            if lines[IGNORED, k, s, w] == 0:
                lines[SINCE, k, s, w] = now
                misc[3 + 2 * misc[2]] = k
                misc[4 + 2 * misc[2]] = line
                misc[2] += 1
            lines[IGNORED, k, s, w] += 1
            lines[STATE, k, s, w] = SHARED  # ownership passes to the writer; the data stays, stale
        else:
            lines[STATE, k, s, w] = INVALID  # the tag stays so the next miss counts as a coherence miss
            lines[IGNORED, k, s, w] = 0
            _release(present, slot, k)


@numba.njit(cache=True, inline="always")
def access(lines, llc, present, counters, misc, core, line, is_write, now, q, max_ignored, max_stale_cycles):
    """One load or store of `line` by `core` at core cycle `now`; returns its event (HIT ... MISS_REMOTE)."""
    sets, ways = lines.shape[2], lines.shape[3]
    s = line % sets
    slot = line & (present.shape[0] - 1)
    misc[0] += 1
    misc[2] = 0
    w = _find(lines, core, s, line)
    if w >= 0 and lines[STATE, core, s, w] != INVALID:
        if lines[IGNORED, core, s, w] > 0 and now - lines[SINCE, core, s, w] >= max_stale_cycles:
            lines[STATE, core, s, w] = INVALID  # past its staleness bound: refetched below, as a miss
            lines[IGNORED, core, s, w] = 0
            _release(present, slot, core)
            counters[core, N_STALE_REFETCHES] += 1
        else:
            lines[STAMP, core, s, w] = misc[0]
            if not is_write:
                event = HIT_STALE if lines[IGNORED, core, s, w] > 0 else HIT
            elif lines[STATE, core, s, w] == SHARED:
                _invalidate_others(lines, present, counters, misc, core, line, now, q, max_ignored)
                lines[STATE, core, s, w] = MODIFIED
                event = UPGRADE
            else:
                lines[STATE, core, s, w] = MODIFIED
                event = HIT
            counters[core, event] += 1
            return event
    # A miss. Coherence miss: the tag is still here, invalidated by another core's write.
    if w >= 0:
        counters[core, N_COHERENCE_MISSES] += 1
    else:
        w, oldest = 0, UNBOUNDED
        for v in range(ways):
            if lines[STATE, core, s, v] == INVALID:
                w = v
                break
            if lines[STAMP, core, s, v] < oldest:
                w, oldest = v, lines[STAMP, core, s, v]
        if lines[STATE, core, s, w] != INVALID:  # evicting a valid line
            _release(present, lines[TAG, core, s, w] & (present.shape[0] - 1), core)
        if lines[STATE, core, s, w] == MODIFIED:
            counters[core, N_WRITEBACKS] += 1
            _llc_fill(llc, misc, lines[TAG, core, s, w])
    # Who supplies the data: an owner (M/E) in another core, else the LLC, else DRAM.
    owner, sharers = -1, 0
    others = present[slot, -1] & ~(np.int64(1) << core)
    while others != 0:
        k, others = _next_core(others)
        v = _find(lines, k, s, line)
        if v >= 0 and lines[STATE, k, s, v] != INVALID:
            sharers += 1
            if lines[STATE, k, s, v] >= EXCLUSIVE:
                owner = k
                if not is_write:
                    if lines[STATE, k, s, v] == MODIFIED:
                        counters[k, N_WRITEBACKS] += 1
                        _llc_fill(llc, misc, line)
                    lines[STATE, k, s, v] = SHARED
    if owner >= 0:
        event = MISS_REMOTE
    elif _llc_fill(llc, misc, line):
        event = MISS_LLC
    else:
        event = MISS_DRAM
    if is_write:
        if sharers:
            _invalidate_others(lines, present, counters, misc, core, line, now, q, max_ignored)
        fill_state = MODIFIED
    else:
        fill_state = SHARED if sharers else EXCLUSIVE
    lines[TAG, core, s, w] = line
    lines[STATE, core, s, w] = fill_state
    present[slot, core] += 1
    present[slot, -1] |= np.int64(1) << core
    lines[STAMP, core, s, w] = misc[0]
    lines[IGNORED, core, s, w] = 0
    counters[core, event] += 1
    return event


def obstinacy(obstinate_q, max_ignored=None, max_stale_cycles=None):
    """Checked (q, max_ignored, max_stale_cycles) for `access`; None bounds become 'unbounded'."""
    if isinstance(obstinate_q, bool) or not isinstance(obstinate_q, (int, float, np.floating)) \
            or not 0.0 <= float(obstinate_q) <= 1.0:
        raise ValueError(f"obstinate_q must be a probability in [0, 1], got {obstinate_q!r}")
    bounds = []
    for name, value in (("max_ignored", max_ignored), ("max_stale_cycles", max_stale_cycles)):
        if value is None:
            bounds.append(UNBOUNDED)
        elif isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer or None (unbounded), got {value!r}")
        else:
            bounds.append(int(value))
    return float(obstinate_q), bounds[0], bounds[1]


# --- traces -------------------------------------------------------------------------------------
@numba.njit(cache=True, _nrt=False)
def _run_trace(lines, llc, present, counters, misc, cores, addresses, writes, line_bytes, word_bytes, latency, q,
               max_ignored, max_stale_cycles, events, staleness, written, stale, clock):
    """Replays a trace; the data are write counts, so a read's staleness is how many writes it missed."""
    n_words = written.size
    words_per_line = line_bytes // word_bytes
    for i in range(addresses.shape[0]):
        c, a = cores[i], addresses[i]
        line, word = a // line_bytes, a // word_bytes
        event = access(lines, llc, present, counters, misc, c, line, writes[i], np.int64(clock[c]), q, max_ignored,
                       max_stale_cycles)
        clock[c] += latency[event]
        events[i] = event
        for e in range(misc[2]):  # lines that went stale keep the values they held
            first = misc[4 + 2 * e] * words_per_line
            for v in range(first, min(first + words_per_line, n_words)):
                stale[misc[3 + 2 * e], v] = written[v]
        if writes[i]:
            written[word] += 1
            stale[c, word] = written[word]  # the written word reaches the coherent copy and this copy
            staleness[i] = 0
        elif event == HIT_STALE:
            staleness[i] = written[word] - stale[c, word]
        else:
            staleness[i] = 0


def simulate_coherence(cores, addresses, writes, *, l1_size=32768, line_bytes=64, l1_ways=8,
                       llc_size=2**22, llc_ways=16, word_bytes=4, obstinate_q=0.0, max_ignored=None,
                       max_stale_cycles=None, latency=None, seed=0) -> dict:
    """Replays a multi-core trace (core id, byte address, is-write per access).

    Returns {"events": per-access event codes, "staleness": per read, writes it missed (0 for writes),
    "counters": {name: per-core counts}}. `latency` (cycles per event, EVENTS order) drives the core clocks
    used by max_stale_cycles; default one cycle per access."""
    cores = np.asarray(cores, np.int64)
    addresses = np.asarray(addresses, np.int64)
    writes = np.asarray(writes, np.bool_)
    if not (cores.shape == addresses.shape == writes.shape) or cores.ndim != 1:
        raise ValueError(f"cores, addresses and writes must be 1-D and equally long, got shapes "
                         f"{cores.shape}, {addresses.shape}, {writes.shape}")
    if addresses.size and addresses.min() < 0:
        raise ValueError("addresses must be non-negative byte addresses")
    if cores.size and cores.min() < 0:
        raise ValueError("cores must be non-negative core ids")
    _positive_int("word_bytes", word_bytes)
    if line_bytes % word_bytes:
        raise ValueError(f"line_bytes={line_bytes} is not a multiple of word_bytes={word_bytes}")
    q, max_ignored, max_stale_cycles = obstinacy(obstinate_q, max_ignored, max_stale_cycles)
    n_cores = int(cores.max()) + 1 if cores.size else 1
    st = new_state(n_cores, l1_size, line_bytes, l1_ways, llc_size, llc_ways, seed)
    latency = np.ones(len(EVENTS)) if latency is None else np.asarray(latency, np.float64)
    events = np.zeros(addresses.size, np.int8)
    staleness = np.zeros(addresses.size, np.int64)
    n_words = int(addresses.max()) // word_bytes + 1 if addresses.size else 1
    _run_trace(*st, cores, addresses, writes, line_bytes, word_bytes, latency, q, max_ignored,
               max_stale_cycles, events, staleness, np.zeros(n_words, np.int64), np.zeros((n_cores, n_words), np.int64),
               np.zeros(n_cores))
    return {"events": events, "staleness": staleness,
            "counters": {name: st.counters[:, i].copy() for i, name in enumerate(COUNTERS)}}


@numba.njit(cache=True, _nrt=False)
def _run_single(lines, llc, present, counters, misc, addresses, line_bytes):
    hits = 0
    for a in addresses:
        if access(lines, llc, present, counters, misc, 0, a // line_bytes, False, 0, 0.0, 0, UNBOUNDED) == HIT:
            hits += 1
    return hits


def simulate_cache(addresses, size_bytes, line_bytes, ways) -> dict:
    """Loads of byte `addresses` through one LRU set-associative cache: {"hits", "misses", "accesses"}."""
    sets = check_geometry(size_bytes, line_bytes, ways)
    addresses = np.ascontiguousarray(addresses, dtype=np.int64).ravel()
    if addresses.size and addresses.min() < 0:
        raise ValueError("addresses must be non-negative byte addresses")
    st = new_state(1, size_bytes, line_bytes, ways, line_bytes * ways * sets, ways)
    hits = int(_run_single(*st, addresses, line_bytes))
    return {"hits": hits, "misses": int(addresses.size) - hits, "accesses": int(addresses.size)}
