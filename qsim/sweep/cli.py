"""`qsim sweep`: run a precision sweep, store it, print and plot its Pareto frontier.

With no arguments it trains the built-in digits CNN under the 16 configurations of
qsim.sweep.jobs.DIGITS_SPACE on two worker processes, writes results.db and frontier.png in the
current directory and prints the frontier table. Exposes HELP, add_arguments and run for qsim.cli.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .meta_cli import add_meta_arguments

HELP = "run a precision sweep (default: a small CNN on sklearn digits) and show its error/cost Pareto frontier"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("space", nargs="?", help="sweep file (TOML: [sweep], [job], [space]); default: the "
                                                 "built-in digits sweep")
    parser.add_argument("--job", help="job: 'digits', 'matmul' or 'package.module:function' (overrides the file)")
    parser.add_argument("--executor", default="process",
                        help="'process' (default), 'thread', 'dask' (a local dask cluster) or a dask scheduler "
                             "address such as tcp://host:8786")
    parser.add_argument("--workers", type=int, default=2, help="workers for process/thread/dask (default 2)")
    parser.add_argument("--out", default=".", help="output directory (default: the working directory)")
    parser.add_argument("--db", help="result store (default: OUT/results.db)")
    parser.add_argument("--plot", help="frontier figure, .png or .svg (default: OUT/frontier.png)")
    parser.add_argument("--export", help="also write the results to this .csv or .parquet file")
    parser.add_argument("--objectives", help="comma-separated metric/cost names to minimise, first on the y axis "
                                             "(default: the file's or the job's)")
    parser.add_argument("--seed", type=int, help="sweep seed (overrides the file)")
    parser.add_argument("--budget", type=float, help="estimate the frontier from this many configurations "
                                                     "(or this fraction of them, if below 1) by active search")
    parser.add_argument("--compare", action="store_true", help="with --budget: then run the full sweep and "
                                                               "report how close the estimate was")
    add_meta_arguments(parser)
    parser.add_argument("--retry-errors", action="store_true", help="evaluate stored errors again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_executor(kind: str, workers: int) -> None:
    if workers < 1:
        raise ValueError(f"--workers: expected a positive int, got {workers}")
    if kind not in ("process", "thread", "dask") and "://" not in kind:
        raise ValueError(f"--executor: expected 'process', 'thread', 'dask' or a scheduler address, got {kind!r}")


@contextlib.contextmanager
def _executor(kind: str, workers: int):
    if kind == "process":
        from .runner import default_executor
        with default_executor(workers) as pool:
            yield pool
    elif kind == "thread":
        import concurrent.futures as cf
        with cf.ThreadPoolExecutor(workers) as pool:
            yield pool
    elif kind == "dask" or "://" in kind:
        from dask.distributed import Client, LocalCluster
        if kind == "dask":
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster, \
                    Client(cluster) as client:
                yield client
        else:
            with Client(kind) as client:
                yield client


def _spec(args):
    from .jobs import DIGITS_SPACE
    from .sweepfile import load_sweep

    source = args.space or {"sweep": {"job": "digits"}, "space": DIGITS_SPACE}
    return load_sweep(source, job_override=args.job)


def run(args) -> int:
    import math

    import pandas as pd
    from rich.console import Console

    from .budget import active_frontier
    from .frontier import compare_frontiers, frontier, frontier_table
    from .job import result_key
    from .plot import plot_frontier
    from .runner import run_sweep
    from .store import ResultStore

    console = Console()
    _check_executor(args.executor, args.workers)
    spec = _spec(args)
    seed = spec.seed if args.seed is None else args.seed
    objectives = tuple(args.objectives.split(",")) if args.objectives else spec.objectives
    if len(objectives) < 2:
        raise ValueError(f"--objectives: expected 2 or more comma-separated names, got {args.objectives!r}")
    configs = spec.space.configs()
    if args.estimate == "meta" and not args.space:
        from .meta import load_meta
        configs = list(load_meta(args.meta).configs)  # without a sweep file: the matrix's columns
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db_path = Path(args.db) if args.db else out / "results.db"
    plot_path = Path(args.plot) if args.plot else out / "frontier.png"
    console.print(f"sweep [bold]{spec.job.name}[/]: {len(configs)} configurations, seed {seed}, "
                  f"objectives {', '.join(objectives)}")
    estimate = None
    with ResultStore(db_path) as store, _executor(args.executor, args.workers) as executor:
        if args.estimate == "meta":
            from .meta_cli import run_meta
            run_meta(args, spec, configs, seed, objectives, store, executor, console, plot_path)
            return 0
        if args.budget is not None:
            budget = math.ceil(args.budget * len(configs)) if args.budget < 1 else int(args.budget)
            estimate = active_frontier(spec.job, configs, store, budget, objectives, executor, seed,
                                       progress=not args.no_progress)
            console.print(f"budgeted search: {len(estimate.evaluated)} of {len(configs)} configurations evaluated"
                          f"{' (stopped: no other configuration can reach the frontier)' if estimate.converged else ''}")
            configs = list(estimate.evaluated) if not args.compare else configs
        if estimate is None or args.compare:
            summary = run_sweep(spec.job, configs, store, executor, seed, progress=not args.no_progress,
                                retry_errors=args.retry_errors)
            console.print(f"{summary.total} configurations: {summary.skipped} already stored, {summary.ok} ok, "
                          f"{summary.diverged} diverged, {summary.error} errors")
        keys = {result_key(spec.job, c, seed) for c in configs}
        if args.export:
            store.export(args.export, spec.job.name)
        results = store.to_dataframe(spec.job.name)
        results = results[results["key"].isin(keys)]
    # costs are pure functions of the configuration: recompute them, so a cost added since a result was
    # stored (or changed) is on the table and the plot too
    fresh = pd.DataFrame([{"key": result_key(spec.job, c, seed), **spec.job.costs_of(c)} for c in configs])
    results = results.drop(columns=[c for c in fresh.columns if c != "key" and c in results.columns])
    results = results.merge(fresh, on="key", how="left")
    for status in ("diverged", "error"):
        for _, row in results[results["status"] == status].iterrows():
            console.print(f"[yellow]{status}[/]: {row['label']}: {row['message']}")
    table = frontier(results, objectives)
    units = {name: spec.job.unit(name) for name in objectives}
    console.print(frontier_table(table, objectives, units, title=f"Pareto frontier of {spec.job.name} "
                                                                 f"({int(table['on_frontier'].sum())} of {len(table)})"))
    if estimate is not None and args.compare:
        true_pts = table.loc[table["on_frontier"], list(objectives)].to_numpy(float)
        est_keys = {result_key(spec.job, c, seed) for c in estimate.frontier}
        est_pts = table.loc[table["key"].isin(est_keys), list(objectives)].to_numpy(float)
        closeness = compare_frontiers(true_pts, est_pts)
        console.print(f"estimate from {len(estimate.evaluated)}/{len(configs)} configurations: recall "
                      f"{closeness['recall']:.2f}, precision {closeness['precision']:.2f}, "
                      f"epsilon {closeness['epsilon']:.3f} (normalised)")
    plot_frontier(table, objectives, plot_path, {name: spec.job.axis_label(name) for name in objectives},
                  title=f"{spec.job.name}: {len(table)} configurations")
    console.print(f"wrote {db_path} and {plot_path}" + (f" and {args.export}" if args.export else ""))
    return 0
