"""Memory levels with one interface: `service(requests) -> cycles`, vectorised over many requests.

Exports `MemoryLevel` and `double_buffered_cycles`. A request is a number of bytes that must move
through the level within one compute window; the level answers how many cycles that takes at its
bandwidth. Models that add caches or coherence later implement the same `service` call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemoryLevel:
    """A level moving `bytes_per_cycle` bytes each cycle; None means it never limits."""

    name: str
    bytes_per_cycle: float | None

    def __post_init__(self):
        if self.bytes_per_cycle is not None and not self.bytes_per_cycle > 0:
            raise ValueError(f"{self.name}: bytes_per_cycle must be > 0, got {self.bytes_per_cycle!r}")

    def service(self, requests) -> np.ndarray:
        """Cycles to transfer each request (bytes): ceil(bytes / bandwidth), 0 for empty requests."""
        requests = np.asarray(requests, dtype=np.float64)
        if self.bytes_per_cycle is None:
            return np.zeros_like(requests)
        # Round before the ceiling so that 3 * (1/3 of a transfer) does not become one extra cycle.
        return np.ceil(np.round(requests / self.bytes_per_cycle, 9))


def double_buffered_cycles(level: MemoryLevel, compute: float, loads: np.ndarray, writes: np.ndarray,
                           overlap: bool = True) -> float:
    """Cycles of a sequence of folds that each compute `compute` cycles.

    Fold f needs `loads[f]` bytes before it starts and produces `writes[f]` bytes when it ends.
    With `overlap` (double buffering), fold f+1's loads and fold f-1's writes move while fold f
    computes: cycles = service(loads[0]) + sum_f max(compute, service(loads[f+1] + writes[f-1]))
    + service(writes[-1]). Without it, transfers and compute alternate.
    """
    loads, writes = np.asarray(loads, dtype=np.float64), np.asarray(writes, dtype=np.float64)
    if not overlap:
        return float(len(loads) * compute + level.service(loads).sum() + level.service(writes).sum())
    window = np.zeros_like(loads)
    window[:-1] += loads[1:]
    window[1:] += writes[:-1]
    return float(level.service(loads[:1]).sum() + np.maximum(compute, level.service(window)).sum()
                 + level.service(writes[-1:]).sum())
