"""Leave-one-task-out validation of meta-learned frontiers on the shipped matrix (qsim/data/meta).

For every task of the matrix: hide its row, fit the low-rank model on the other tasks (on the
logit of the error, rank by cross-validation on them), choose k configurations (the adaptive frontier
design, one at a time, each from the values read so far; greedy D-optimal; cost-aware D-optimal; random
averaged over seeds), "evaluate" them by reading the hidden row, predict the rest and mark the
estimated frontier of (error, memory_kib of that task). The existing Gaussian-process search
(`active_frontier`, which knows nothing of other tasks) gets the same k evaluations of the same row,
through run_sweep and a result store like any job. Each method's frontier is scored against the
task's true frontier: recall, precision, relative hypervolume loss (qsim.sweep.meta.frontier_metrics),
and, for the meta methods, the RMSE of the predicted errors (percentage points). A last table gives
each design's paired difference from random picks (per task, random averaged over its seeds), mean and
standard error over the tasks: a gap within about one standard error is the tasks' spread, not the design.

    python benchmarks/meta_frontier.py [--k 3..10] [--random-seeds 10] [--transform logit] [--no-gp]
                                       [--designs frontier,d-optimal,cost,random]

The numbers are deterministic (seeded); only the run time depends on the machine's load.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from qsim.sweep.budget import active_frontier
from qsim.sweep.costs import Cost, ModelProfile
from qsim.sweep.job import Job
from qsim.sweep.meta import DESIGNS, LowRankModel, design, frontier_metrics, load_meta, make_estimate, meta_metrics
from qsim.sweep.store import ResultStore

METRICS = ("recall", "precision", "hypervolume_loss", "rmse")


def lookup(config, errors: dict) -> dict:
    """The job of a task whose errors are known: read its row (keyed by configuration label)."""
    return {"error": errors[config.label()]}


def _lookup_cost(values: dict, profile, config) -> float:
    return values[config.label()]


def row_job(name: str, configs, errors, memory) -> Job:
    labels = [c.label() for c in configs]
    cost = Cost("memory_kib", "KiB", functools.partial(_lookup_cost, dict(zip(labels, memory))), "memory", "")
    return Job(name, lookup, (("errors", dict(zip(labels, map(float, errors)))),), ModelProfile((), batch_size=1), (cost,))


def gp_metrics(job, configs, errors, memory, k: int, db: Path) -> dict:
    with ResultStore(db) as store, cf.ThreadPoolExecutor(1) as pool:
        result = active_frontier(job, configs, store, k, ("error", "memory_kib"), pool, seed=0)
    mask = np.array([c in set(result.frontier) for c in configs])
    return {**frontier_metrics(errors, {"memory_kib": memory}, mask), "rmse": np.nan}


def run(ks, random_seeds: int, transform: str, with_gp: bool, rank: int | None, designs=DESIGNS):
    """Per (method, k), one metrics dict per held-out task; random picks always run (the baseline)."""
    meta = load_meta()
    methods = [d for d in DESIGNS if d in designs or d == "random"] + (["gp"] if with_gp else [])
    results = {(m, k): [] for m in methods for k in ks}
    ranks = []
    with tempfile.TemporaryDirectory() as tmp:
        for t, task in enumerate(meta.tasks):
            model = LowRankModel.fit(meta.drop_task(task), rank, transform)
            ranks.append(model.rank)
            truth, memory = meta.errors[t], meta.costs["memory_kib"][t]
            costs = {"memory_kib": memory}
            job = row_job(f"row{t}", meta.configs, truth, memory)
            adaptive = []  # the frontier design picks one at a time: its first k picks are those of every smaller k
            for k in ks:
                if "frontier" in methods:
                    while len(adaptive) < k:
                        adaptive += design(model, 1, "frontier", memory, adaptive, truth[adaptive])
                    results["frontier", k].append(meta_metrics(truth, make_estimate(model, adaptive, truth[adaptive],
                                                                                    costs)))
                for method in [m for m in ("d-optimal", "cost") if m in methods]:
                    chosen = design(model, k, method, memory)
                    results[method, k].append(meta_metrics(truth, make_estimate(model, chosen, truth[chosen], costs)))
                runs = [meta_metrics(truth, make_estimate(model, chosen, truth[chosen], costs))
                        for chosen in (design(model, k, "random", seed=s) for s in range(random_seeds))]
                results["random", k].append({m: np.mean([r[m] for r in runs]) for m in METRICS})
                if with_gp:
                    results["gp", k].append(gp_metrics(job, list(meta.configs), truth, memory, k,
                                                       Path(tmp) / f"gp{t}_{k}.db"))
            print(f"{task}: rank {model.rank}", flush=True)
    return meta, methods, results, ranks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", default="3..10", help="evaluations per task, 'a..b' (default 3..10)")
    parser.add_argument("--random-seeds", type=int, default=10)
    parser.add_argument("--transform", default="logit", choices=("none", "logit"))
    parser.add_argument("--rank", type=int, help="fixed rank (default: cross-validation per held-out task)")
    parser.add_argument("--no-gp", action="store_true", help="skip the Gaussian-process baseline")
    parser.add_argument("--designs", default=",".join(DESIGNS),
                        help=f"comma-separated designs to score, of {','.join(DESIGNS)} (random always runs)")
    args = parser.parse_args(argv)
    lo, hi = map(int, args.k.split(".."))
    designs = args.designs.split(",")
    if not set(designs) <= set(DESIGNS):
        parser.error(f"--designs: expected names among {','.join(DESIGNS)}, got {args.designs!r}")
    meta, methods, results, ranks = run(range(lo, hi + 1), args.random_seeds, args.transform, not args.no_gp,
                                        args.rank, designs)
    console = Console(width=140)
    console.print(f"{len(meta.tasks)} tasks x {len(meta.configs)} configurations, leave one task out, transform "
                  f"{args.transform}, ranks chosen {sorted(set(ranks))} (median {int(np.median(ranks))})")
    for metric in METRICS:
        table = Table(title=f"{metric} (mean over tasks; random: also over {args.random_seeds} seeds)")
        table.add_column("method")
        for k in range(lo, hi + 1):
            table.add_column(f"k={k}", justify="right")
        for method in methods:
            table.add_row(method, *(f"{np.mean([r[metric] for r in results[method, k]]):.3f}"
                                    for k in range(lo, hi + 1)))
        console.print(table)
    for metric in METRICS:
        table = Table(title=f"{metric}: design minus random, paired by task (mean ± standard error over tasks)")
        table.add_column("method")
        for k in range(lo, hi + 1):
            table.add_column(f"k={k}", justify="right")
        for method in [m for m in methods if m not in ("random", "gp")]:
            table.add_row(method, *(paired(results[method, k], results["random", k], metric) for k in range(lo, hi + 1)))
        console.print(table)


def paired(ours: list, theirs: list, metric: str) -> str:
    """Mean ± standard error over tasks of one design's metric minus random's on the same task."""
    gaps = np.array([a[metric] - b[metric] for a, b in zip(ours, theirs)])
    return f"{gaps.mean():+.3f}±{gaps.std(ddof=1) / np.sqrt(len(gaps)):.3f}"


if __name__ == "__main__":
    main()
