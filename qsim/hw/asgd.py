"""Asynchronous low-precision SGD (Hogwild!/Buckwild!) on a simulated multicore with coherent caches.

Exports `Problem` (with `sparse_problem(...)`, `dense_problem(...)`, `digits_problem(...)`, by name in
`PROBLEMS`), `simulate(problem, ...)` -> `Trace` for one configuration, `run(problem, workers=...,
dmgc=..., obstinate_q=..., accelerator=...)` -> `AsgdReport` over every combination (table, CSV, plots;
see asgd_report.py), and `sweep(...)`, the same grid through qsim.sweep: stored, resumable, with a
time/energy-to-target frontier (see asgd_sweep.py).

What is simulated (De Sa, Feldman, Ré, Olukotun, "Understanding and Optimizing Asynchronous Low-Precision
Stochastic Gradient Descent", ISCA 2017):
- W workers, one per core, each run SGD iterations on samples drawn (seeded) from the data set:
  read the sample's nonzeros (D-bit values, 32-bit indices when sparse) and the model entries they touch,
  compute the loss derivative, then for each touched entry j: g = Q_G(coef * x_j + l2 * w_j),
  u = Q_C(-step * g), and the lock-free read-modify-write w_j <- Q_M(w_j + u) (see dmgc.py for C).
- Every load and store goes through the core's private cache of the coherence simulator (coherence.py),
  and every model value a worker uses is its cache's copy: a line the obstinate cache kept after an
  ignored invalidation returns the old values, so staleness reaches the loss curve.
- Interleaving (the asynchrony model): the simulation advances one step of one worker at a time, a step
  being one model entry read (with its data loads), the derivative, or one entry's update. With
  interleave="time" the worker whose simulated clock is earliest moves next (ties: lowest core), so the
  order follows the simulated latencies; with interleave="random" each step's worker is drawn uniformly
  (seeded). Each worker's clock advances by its compute cycles and the latency of its accesses.
- Time: compute cycles per entry are 1/lanes vector ops, lanes = vector_bits / bits (max of D and M for
  the dot product, of M, G and C for the update), or a fixed cost per sparse nonzero; memory events cost
  their latency divided by the accesses a core overlaps, and a dense worker's L1 hit serves a whole
  vector (bits / vector_bits of a hit per entry), so narrower data and model need fewer loads.
  The run takes max(slowest core, DRAM bytes / DRAM bandwidth) cycles: the roofline.
  Energy: events x pJ/event (coherence.py) + MACs x pJ/MAC (energy table).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp

from . import coherence
from .coherence import HIT_STALE, MISS_LLC, MISS_REMOTE, UPGRADE, access, uniform
from .dmgc import DMGC, parse_dmgc, rounding_table

LOSSES = ("logistic", "least_squares", "svm")
INDEX_BITS = 32  # ASSUMPTION: sparse samples store a 32-bit column index beside each value
STALENESS_BINS = 64
ASSUMPTIONS = (
    "sparse samples carry a 32-bit index per nonzero; labels and the sample's row pointer are not charged",
    "a worker keeps x_j in registers between the dot product and the update (the update does not reload it)",
    "every event's latency (hits included) is divided by the accesses a core overlaps (memory_parallelism)",
    "run time = max(slowest core's clock, DRAM bytes / DRAM bandwidth): compute and memory overlap fully",
    "the L2 of the real part is folded into the LLC: one private level, one shared level",
)


# --- problems ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Problem:
    """A data set (CSR, float64), labels and a loss; objective = mean_i [loss_i(x_i.w) + l2/2 sum_{j in
    supp x_i} w_j^2], the objective SGD with the regulariser applied on each sample's support minimises.
    dense=True stores every entry (zeros too): dense workers touch every feature, with SIMD."""

    X: sp.csr_matrix
    y: np.ndarray
    loss: str
    l2: float = 0.0
    name: str = "problem"
    dense: bool = False

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.dense:  # every entry stored, zeros included: a dense worker touches every feature
            full = np.asarray(self.X.todense() if sp.issparse(self.X) else self.X, np.float64)
            n, d = full.shape
            object.__setattr__(self, "X", sp.csr_matrix((full.ravel(), np.tile(np.arange(d), n),
                                                         np.arange(0, n * d + 1, d)), shape=(n, d)))
        elif not sp.isspmatrix_csr(self.X):
            object.__setattr__(self, "X", sp.csr_matrix(self.X, dtype=np.float64))
        object.__setattr__(self, "y", np.asarray(self.y, np.float64).ravel())
        if self.X.shape[0] != self.y.size or self.X.shape[0] == 0:
            raise ValueError(f"X has {self.X.shape[0]} rows but y has {self.y.size} labels (need equal, > 0)")
        if self.loss != "least_squares" and not np.isin(self.y, (-1.0, 1.0)).all():
            raise ValueError(f"loss {self.loss!r} needs labels in {{-1, +1}}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")

    @property
    def features(self) -> int:
        return self.X.shape[1]

    def objective(self, w) -> np.ndarray:
        """The objective at each row of w (k, d) (or at one model (d,))."""
        W = np.atleast_2d(np.asarray(w, np.float64))
        z = (self.X @ W.T).T  # (k, n)
        if self.loss == "logistic":
            losses = np.logaddexp(0.0, -self.y * z)
        elif self.loss == "least_squares":
            losses = 0.5 * (z - self.y) ** 2
        else:
            losses = np.maximum(0.0, 1.0 - self.y * z)
        support = np.bincount(self.X.indices, minlength=self.features) / self.X.shape[0]  # samples storing j
        values = losses.mean(axis=1) + 0.5 * self.l2 * (W ** 2 @ support)
        return values if np.ndim(w) == 2 else values[0]


def sparse_problem(samples=2000, features=10_000, density=0.01, loss="logistic", l2=1e-3, seed=0) -> Problem:
    """A generated sparse linear problem: X with `density` nonzeros ~ U(-1, 1), labels from a planted model."""
    rng = np.random.default_rng(seed)
    X = sp.random(samples, features, density=density, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.uniform(-1, 1, n))
    w_true = rng.normal(0, 1, features)
    margin = X @ w_true
    y = margin + 0.1 * rng.normal(size=samples) if loss == "least_squares" else np.where(margin >= 0, 1.0, -1.0)
    return Problem(X, y, loss, l2, f"sparse {samples}x{features} {density:g}-dense {loss}")


def dense_problem(samples=8000, features=256, loss="logistic", l2=1e-3, seed=0) -> Problem:
    """A generated dense problem, X ~ U(-1, 1), labels from a planted model: at float32 it outgrows a
    1 MiB last-level cache (8000 x 256 x 4 B = 8 MB), so streaming it is what limits a core."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (samples, features))
    margin = X @ (rng.normal(size=features) / np.sqrt(features))
    y = margin + 0.1 * rng.normal(size=samples) if loss == "least_squares" else np.where(margin >= 0, 1.0, -1.0)
    return Problem(sp.csr_matrix(X), y, loss, l2, f"dense {samples}x{features} {loss}", dense=True)


def digits_problem(digit=0, loss="logistic", l2=1e-3) -> Problem:
    """scikit-learn's digits (1797 8x8 images, dense), one-vs-rest for `digit`, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    y = np.where(data.target == digit, 1.0, -1.0)
    return Problem(sp.csr_matrix(data.data / 16.0), y, loss, l2, f"digits {digit}-vs-rest {loss}", dense=True)


PROBLEMS = {"digits": digits_problem, "sparse": sparse_problem, "dense": dense_problem}  # by name: CLI, sweeps


# --- the compiled simulation ----------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _round(x, values, even, quantum, stochastic, rng):
    """x onto the sorted `values` (empty: float32), saturating; nearest ties to the even code, or
    stochastic: up with probability (x - lo) / (hi - lo). A fixed-point grid (quantum > 0) is rounded
    by arithmetic, with the same results and the same random draws as the search."""
    if values.size == 0:
        return float(np.float32(x))
    if x != x:
        return x
    if x <= values[0]:
        return values[0]
    if x >= values[-1]:
        return values[-1]
    if quantum > 0.0:
        y = x / quantum  # exact: quantum is a power of two
        floor = math.floor(y)
        if y == floor:
            return x
        if stochastic:
            return (floor + 1.0) * quantum if uniform(rng) < y - floor else floor * quantum
        if y - floor != 0.5:
            return math.floor(y + 0.5) * quantum
        return floor * quantum if floor % 2.0 == 0.0 else (floor + 1.0) * quantum
    i = np.searchsorted(values, x, side="right") - 1
    lo, hi = values[i], values[i + 1]
    if x == lo:
        return lo
    if stochastic:
        return hi if uniform(rng) < (x - lo) / (hi - lo) else lo
    if x - lo < hi - x:
        return lo
    if hi - x < x - lo:
        return hi
    return lo if even[i] else hi


@numba.njit(cache=True)
def _derivative(loss, z, y):
    """d loss / d z at margin z = x.w for label y (0 logistic, 1 least squares, 2 hinge)."""
    if loss == 0:
        return -y / (1.0 + math.exp(y * z))
    if loss == 1:
        return z - y
    return -y if y * z < 1.0 else 0.0


@numba.njit(cache=True, inline="always")
def _memory_step(lines, llc, present, counters, misc, k, line, is_write, clock, q, max_ignored, max_stale, latency,
                 cycles, hit_share):
    """One access by worker k: its event, with its latency charged to k's clock and cycle breakdown.
    An L1 hit costs `hit_share` of a hit: a dense worker loads a vector of 1/hit_share entries at once."""
    event = access(lines, llc, present, counters, misc, k, line, is_write, np.int64(clock[k]), q, max_ignored,
                   max_stale)
    if event == UPGRADE or event == MISS_REMOTE:
        cost = latency[event]
        cycles[k, 2] += cost  # communication
    elif event >= MISS_LLC:
        cost = latency[event]
        cycles[k, 1] += cost  # memory hierarchy (LLC, DRAM)
    else:
        cost = latency[event] * hit_share
        cycles[k, 0] += cost  # L1 hits: the core's own load pipeline
    clock[k] += cost
    return event


@numba.njit(cache=True, inline="always")
def _snapshot(local, seen, shared, version, misc, line_bits, model_bits):
    """Model lines that went stale in the last access keep, in their core's copy, the values they held."""
    for e in range(misc[2]):
        k, line = misc[3 + 2 * e], misc[4 + 2 * e]
        first = (line * line_bits + model_bits - 1) // model_bits
        stop = min(((line + 1) * line_bits + model_bits - 1) // model_bits, shared.size)
        for j in range(first, stop):
            local[k, j] = shared[j]
            seen[k, j] = version[j]


# numba's cache keys on this file alone: after editing coherence.py, delete qsim/hw/__pycache__/asgd*.nb[ic],
# or the cached loop keeps the old, inlined `access` (with another array layout: memory corruption).
@numba.njit(cache=True, nogil=True, _nrt=False)  # threads: see asgd_sweep.py; _nrt: see coherence.py
def _simulate(lines, llc, present, counters, misc, rng_round, rng_sched, local, seen, version, wbuf, clock, phase, pos,
              done, dot, coef,
              indptr, indices, values, labels, dense, order, quota,
              loss, step, l2, g_values, g_even, g_quantum, c_values, c_even, c_quantum, m_values, m_even, m_quantum,
              stochastic,
              shared, model_bits, data_bits, data_base_bits, index_base_bits, line_bytes,
              latency, q, max_ignored, max_stale, interleave_random,
              read_cycles, write_cycles, overhead_cycles, data_share, model_share,
              record_every, snapshots, record_cycles, cycles, staleness):
    """The simulation; its working arrays come zeroed from `simulate`: each core's copy of its stale model
    lines (local) and the versions they hold (seen), writes so far per model entry (version), the model
    values each worker read for its sample (wbuf), and per worker its clock, phase (0 reading,
    1 derivative, 2 updating, 3 done), position in the sample, iterations done, dot product and
    derivative."""
    W = order.shape[0]
    line_bits = line_bytes * 8
    total, recorded, active = 0, 1, 0
    for k in range(W):
        if quota[k] == 0:
            phase[k] = 3
        else:
            active += 1
    while active > 0:
        # The next worker: the earliest clock, or a uniformly drawn active one.
        k = -1
        if interleave_random:
            pick = int(uniform(rng_sched) * active)
            for v in range(W):
                if phase[v] != 3:
                    if pick == 0:
                        k = v
                        break
                    pick -= 1
        else:
            for v in range(W):
                if phase[v] != 3 and (k < 0 or clock[v] < clock[k]):
                    k = v
        i = order[k, done[k]]
        start, nnz = indptr[i], indptr[i + 1] - indptr[i]
        if phase[k] == 0 and pos[k] < nnz:
            t = start + pos[k]
            j = indices[t]
            _memory_step(lines, llc, present, counters, misc, k, (data_base_bits + t * data_bits) // line_bits, False,
                         clock, q, max_ignored, max_stale, latency, cycles, data_share)
            if not dense:
                _memory_step(lines, llc, present, counters, misc, k, (index_base_bits + t * 32) // line_bits, False,
                             clock, q, max_ignored, max_stale, latency, cycles, 1.0)
            line = (j * model_bits) // line_bits
            if _memory_step(lines, llc, present, counters, misc, k, line, False, clock, q, max_ignored, max_stale,
                            latency, cycles, model_share) == HIT_STALE:
                staleness[min(version[j] - seen[k, j], staleness.size - 1)] += 1
                wj = local[k, j]
            else:
                staleness[0] += 1
                wj = shared[j]
            _snapshot(local, seen, shared, version, misc, line_bits, model_bits)
            wbuf[k, pos[k]] = wj
            dot[k] += values[t] * wj
            clock[k] += read_cycles
            cycles[k, 0] += read_cycles
            pos[k] += 1
        elif phase[k] == 0:
            coef[k] = _derivative(loss, dot[k], labels[i])
            clock[k] += overhead_cycles
            cycles[k, 0] += overhead_cycles
            phase[k], pos[k] = 2, 0
        elif pos[k] < nnz:
            t = start + pos[k]
            j = indices[t]
            g = _round(coef[k] * values[t] + l2 * wbuf[k, pos[k]], g_values, g_even, g_quantum, stochastic,
                       rng_round)
            u = _round(-step * g, c_values, c_even, c_quantum, stochastic, rng_round)
            line = (j * model_bits) // line_bits
            if _memory_step(lines, llc, present, counters, misc, k, line, False, clock, q, max_ignored, max_stale,
                            latency, cycles, model_share) == HIT_STALE:
                wj = local[k, j]
            else:
                wj = shared[j]
            _snapshot(local, seen, shared, version, misc, line_bits, model_bits)
            new = _round(wj + u, m_values, m_even, m_quantum, stochastic, rng_round)
            _memory_step(lines, llc, present, counters, misc, k, line, True, clock, q, max_ignored, max_stale, latency,
                         cycles, model_share)
            _snapshot(local, seen, shared, version, misc, line_bits, model_bits)
            # The written entry reaches the coherent copy; the rest of k's line is as fresh as it was.
            shared[j] = new
            version[j] += 1
            local[k, j] = new
            seen[k, j] = version[j]
            clock[k] += write_cycles
            cycles[k, 0] += write_cycles
            pos[k] += 1
        else:
            done[k] += 1
            total += 1
            if total % record_every == 0 and recorded < snapshots.shape[0]:
                for j in range(shared.size):  # an element loop: an array assignment may allocate
                    snapshots[recorded, j] = shared[j]
                record_cycles[recorded] = clock[k]
                recorded += 1
            phase[k], pos[k], dot[k] = 0, 0, 0.0
            if done[k] == quota[k]:
                phase[k] = 3
                active -= 1


# --- one configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Trace:
    """One simulated run: the loss curve, the event counts and the cycle breakdown."""

    problem: str
    workers: int
    dmgc: DMGC
    obstinate_q: float
    rounding: str
    iterations_done: np.ndarray   # (R,) iterations completed at each record
    cycles_at: np.ndarray         # (R,) simulated cycles at each record (roofline-scaled)
    loss: np.ndarray              # (R,) objective at each record
    model: np.ndarray             # final shared model
    counters: dict                # name -> total over cores
    core_cycles: np.ndarray       # (W, 3): compute, memory, communication cycles per core
    total_cycles: float
    dram_floor_cycles: float
    energy_pj: dict               # component -> pJ
    staleness: np.ndarray         # histogram of versions missed per model read
    clock_ghz: float
    extra: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return int(self.iterations_done[-1])

    @property
    def bound(self) -> str:
        """Roofline class: which of compute, bandwidth (memory stalls or the DRAM floor) and
        communication (coherence transfers) takes most of the critical path."""
        slowest = int(np.argmax(self.core_cycles.sum(axis=1)))
        compute, memory, communication = self.core_cycles[slowest]
        parts = {"compute": compute, "bandwidth": max(memory, self.dram_floor_cycles), "communication": communication}
        return max(parts, key=parts.get)

    def iterations_to(self, target: float) -> float:
        """Iterations at the first record whose loss is <= target (inf if never)."""
        hit = np.flatnonzero(self.loss <= target)
        return float(self.iterations_done[hit[0]]) if hit.size else math.inf

    def cycles_to(self, target: float) -> float:
        hit = np.flatnonzero(self.loss <= target)
        return float(self.cycles_at[hit[0]]) if hit.size else math.inf


def _worker_quota(iterations, workers):
    base, extra = divmod(iterations, workers)
    return np.array([base + (k < extra) for k in range(workers)], np.int64)


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_settings(iterations, step_size, rounding, interleave="time") -> int:
    """The checked iteration count; errors name the setting that is wrong."""
    if rounding not in ("stochastic", "nearest"):
        raise ValueError(f"rounding must be 'stochastic' or 'nearest', got {rounding!r}")
    if interleave not in ("time", "random"):
        raise ValueError(f"interleave must be 'time' or 'random', got {interleave!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    return _check_count("iterations", iterations)


def simulate(problem: Problem, workers=1, dmgc="D32M32G32C32", obstinate_q=0.0, accelerator="multicore_16",
             iterations=10_000, step_size=0.05, rounding="stochastic", seed=0, interleave="time",
             max_ignored=None, max_stale_cycles=None, records=200, integer_bits=None) -> Trace:
    """Runs `iterations` SGD updates in total, shared among `workers` simulated cores."""
    from qsim import quantize

    workers = _check_count("workers", workers)
    iterations = check_settings(iterations, step_size, rounding, interleave)
    records = _check_count("records", records)
    machine = accelerator if isinstance(accelerator, coherence.MulticoreSpec) else coherence.load_multicore(accelerator)
    if workers > machine.cores:
        raise ValueError(f"workers={workers}: {machine.name} has {machine.cores} cores (one worker per core)")
    q, max_ignored, max_stale = coherence.obstinacy(obstinate_q, max_ignored, max_stale_cycles)
    precision = parse_dmgc(dmgc, integer_bits)

    # 1. The data set rounded to D once, with qsim's quantize (nearest: a data set is stored once).
    X = problem.X
    values = X.data.astype(np.float64)
    if precision.d.fmt is not None:
        import torch
        values = quantize(torch.from_numpy(values), precision.d.fmt, "nearest").numpy()
    elif values.size:
        values = values.astype(np.float32).astype(np.float64)
    # 2. Memory layout: the model from address 0, then the data values, then the indices (line aligned).
    line_bits = machine.l1.line_bytes * 8
    model_bits = precision.m.bits
    data_base = -(-problem.features * model_bits // line_bits) * line_bits
    index_base = data_base + -(-max(values.size, 1) * precision.d.bits // line_bits) * line_bits
    # 3. Compute cycles per entry from the SIMD lanes each precision allows.
    c = machine.compute
    if problem.dense:
        read = c.cycles_per_vector_op * max(precision.d.bits, precision.m.bits) / machine.vector_bits
        write = c.cycles_per_vector_op * max(precision.m.bits, precision.g.bits, precision.c.bits) / machine.vector_bits
        shares = (precision.d.bits / machine.vector_bits, precision.m.bits / machine.vector_bits)
    else:
        read = write = c.cycles_per_sparse_element
        shares = (1.0, 1.0)
    rng = np.random.default_rng(seed)
    quota = _worker_quota(iterations, workers)
    order = rng.integers(0, X.shape[0], (workers, max(int(quota.max()), 1)))
    st = coherence.new_state(workers, machine.l1.size_bytes, machine.l1.line_bytes, machine.l1.ways,
                             machine.llc.size_bytes, machine.llc.ways, seed)
    rngs = np.array([[0, (seed * 2654435761 + 12345) & 0x7FFFFFFF], [0, (seed * 40503 + 99991) & 0x7FFFFFFF]],
                    np.int64)
    record_every = max(1, iterations // records)
    snapshots = np.zeros((iterations // record_every + 1, problem.features))
    record_cycles = np.zeros(snapshots.shape[0])
    core_cycles = np.zeros((workers, 3))
    staleness = np.zeros(STALENESS_BINS, np.int64)
    shared = np.zeros(problem.features)
    tables = [rounding_table(p) for p in (precision.g, precision.c, precision.m)]
    W, d, longest = workers, problem.features, int(np.diff(X.indptr).max()) + 1
    clock = np.zeros(W)
    _simulate(*st, rngs[0], rngs[1], np.zeros((W, d)), np.zeros((W, d), np.int64), np.zeros(d, np.int64),
              np.zeros((W, longest)), clock, *(np.zeros(W, np.int64) for _ in range(3)), np.zeros(W),
              np.zeros(W), X.indptr.astype(np.int64), X.indices.astype(np.int64), values,
              problem.y, problem.dense, order, quota, LOSSES.index(problem.loss), float(step_size),
              float(problem.l2), *tables[0], *tables[1], *tables[2], rounding == "stochastic",
              shared, model_bits, precision.d.bits, data_base, index_base, machine.l1.line_bytes,
              machine.latencies(), q, max_ignored, max_stale, interleave == "random",
              read, write, c.iteration_overhead_cycles, *shares, record_every, snapshots, record_cycles,
              core_cycles, staleness)
    # 4. Roofline: the DRAM floor stretches the whole timeline when bandwidth, not latency, limits.
    counters = {name: int(st.counters[:, i].sum()) for i, name in enumerate(coherence.COUNTERS)}
    dram_bytes = counters["miss_dram"] * machine.l1.line_bytes
    floor = dram_bytes / machine.memory.dram_bytes_per_cycle
    slowest = float(clock.max())
    total = max(slowest, floor)
    stretch = total / slowest if slowest > 0 else 1.0
    done = np.minimum(np.arange(snapshots.shape[0]) * record_every, iterations)
    # 5. Energy by component.
    per_event = machine.event_energy_pj()
    memory_pj = sum(counters[e] * per_event[e] for e in ("hit", "hit_stale", "miss_llc", "miss_dram"))
    coherence_pj = (counters["upgrade"] * per_event["upgrade"] + counters["miss_remote"] * per_event["miss_remote"]
                    + counters["invalidation_sent"] * per_event["invalidation_sent"]
                    + counters["writeback"] * per_event["writeback"])
    kind = "int" if all(p.fmt is not None and p.fmt.name.startswith("fixed<") for p in (precision.d, precision.m)) \
        else "float"
    nnz = np.diff(X.indptr)
    macs = 2 * sum(int(nnz[order[k, :quota[k]]].sum()) for k in range(workers))  # dot product + update
    mac_pj = machine.energy.mac_pj(max(precision.d.bits, precision.g.bits), precision.m.bits, 32, kind)
    energy = {"compute": macs * mac_pj, "memory": memory_pj, "coherence": coherence_pj}
    return Trace(problem.name, workers, precision, q, rounding, done, record_cycles * stretch,
                 problem.objective(snapshots), shared.copy(), counters, core_cycles, total, floor, energy,
                 staleness, machine.clock_ghz, {"machine": machine, "macs": macs, "dram_bytes": dram_bytes})


# --- many configurations --------------------------------------------------------------------------
def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run(problem: Problem, workers=(1,), dmgc=("D32M32G32C32",), obstinate_q=(0.0,), accelerator="multicore_16",
        iterations=10_000, target_loss=None, target_fraction=0.05, **options):
    """Every combination of workers x dmgc x obstinate_q; returns an AsgdReport.

    target_loss: the loss each configuration must reach; by default the best loss any configuration
    reached plus `target_fraction` of the way back to the starting loss (f(0))."""
    from .asgd_report import AsgdReport

    machine = accelerator if isinstance(accelerator, coherence.MulticoreSpec) else coherence.load_multicore(accelerator)
    configs = list(itertools.product(_as_list(workers), _as_list(dmgc), _as_list(obstinate_q)))
    traces = [simulate(problem, w, s, q, machine, iterations, **options) for w, s, q in configs]
    if target_loss is None:
        best = min(float(t.loss.min()) for t in traces)
        start = float(problem.objective(np.zeros(problem.features)))
        target_loss = best + target_fraction * (start - best)
    return AsgdReport(problem.name, machine, traces, float(target_loss), ASSUMPTIONS + machine.assumptions)



def __getattr__(name):
    """`asgd.sweep` lives in asgd_sweep.py, which builds on this module: loaded on first use."""
    if name == "sweep":
        from .asgd_sweep import sweep
        return sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
