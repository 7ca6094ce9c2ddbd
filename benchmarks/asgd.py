"""Speed of the cache/coherence simulator and of the asynchronous-SGD simulation (issue targets:
>= 1e7 simulated memory accesses per second; 16 workers x 1e5 iterations of a 1e4-feature 1%-dense
problem in under a minute).

    python benchmarks/asgd.py                      # all four measurements, median of --repeat runs
    python benchmarks/asgd.py --per-worker         # the big case with 1e5 iterations per worker (1.6e6 in all)

Each figure is the median of `--repeat` runs after one warm-up call (numba compiles, or loads its
cache, on the first call). Rates are per second of this process's CPU time (the simulator runs on one
thread), so that a shared, loaded machine still gives a usable figure; the wall-clock time and the load
average are printed beside them.
"""
import argparse
import os
import statistics
import time

import numpy as np

from qsim.hw import asgd, simulate_cache, simulate_coherence
from qsim.hw.coherence import EVENTS


def median_seconds(fn, repeat, warm_up=None):
    """(median CPU seconds, median wall seconds, last result) of `repeat` calls after a warm-up call."""
    (warm_up or fn)()  # compiles, or loads the numba cache
    cpu, wall = [], []
    for _ in range(repeat):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        result = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    return statistics.median(cpu), statistics.median(wall), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--accesses", type=int, default=10**7)
    parser.add_argument("--per-worker", action="store_true", help="1e5 iterations per worker, not in all")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.accesses
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    addresses = rng.integers(0, 2**20, n)  # 1 MiB of random byte addresses through a 32 KiB, 8-way L1
    seconds, wall, stats = median_seconds(lambda: simulate_cache(addresses, 32768, 64, 8), args.repeat)
    print(f"single core, random 1 MiB trace:  {n / seconds:.3g} accesses/s  (hit rate {stats['hits'] / n:.1%}; "
          f"wall {wall:.2f} s for {n:,})")

    cores, lines = rng.integers(0, 16, n // 4), rng.integers(0, 4096, n // 4) * 4
    writes = rng.random(n // 4) < 0.3
    seconds, wall, result = median_seconds(lambda: simulate_coherence(cores, lines, writes, obstinate_q=0.5),
                                           args.repeat)
    misses = sum(result["counters"][e].sum() for e in EVENTS[3:]) / cores.size
    print(f"16 cores, 30% writes to 16 KiB:   {cores.size / seconds:.3g} accesses/s  (miss rate {misses:.1%}; "
          f"wall {wall:.2f} s for {cores.size:,})")

    problem = asgd.sparse_problem(samples=10_000, features=10_000, density=0.01)
    iterations = 16 * 10**5 if args.per_worker else 10**5
    for workers in (1, 16):  # one worker: the SGD loop and cache hits; sixteen: coherence traffic too
        seconds, wall, trace = median_seconds(
            lambda: asgd.simulate(problem, workers=workers, dmgc="D8M16G16C16", iterations=iterations, records=20),
            1, warm_up=lambda: asgd.simulate(problem, workers=16, dmgc="D8M16G16C16", iterations=160, records=2))
        accesses = sum(trace.counters[e] for e in EVENTS)
        print(f"ASGD, {workers} workers x {iterations // workers:,} iterations each, 1e4 features 1% dense: "
              f"{seconds:.1f} s CPU, {wall:.1f} s wall ({accesses:,} simulated accesses, {accesses / seconds:.3g}/s "
              f"CPU; final loss {trace.loss[-1]:.4f})")


if __name__ == "__main__":
    main()
