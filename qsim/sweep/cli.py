"""`qsim sweep`: run a precision sweep, store it, print and plot its Pareto frontier.

With no arguments it trains the built-in digits CNN under the 16 configurations of
qsim.sweep.jobs.DIGITS_SPACE on two worker processes, writes results.db and frontier.png in the
current directory and prints the frontier table. Exposes add_arguments and run for qsim.cli.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

from .meta_cli import add_meta_arguments, check_meta_arguments


def _jobs_help() -> str:
    """The built-in jobs with the names --objectives accepts for each, for the end of --help."""
    import textwrap

    from .jobs import BUILTIN_JOBS

    lines = ["built-in jobs (--job) and the names --objectives accepts, all minimised:"]
    for name, make in BUILTIN_JOBS.items():
        job = make()
        lines.append(textwrap.fill(f"{name}: metrics {', '.join(job.metrics)}; costs "
                                   f"{', '.join(c.name for c in job.costs)}; default {','.join(job.objectives)}",
                                   78, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keeps the epilog's one line per job
    parser.epilog = _jobs_help()
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


def budget_count(value: float, total: int, least: int) -> int:
    """--budget as a number of configurations: a count, or a fraction in (0, 1) of the `total` rounded
    up. The fraction is read as the decimal it was typed as, so 0.3 of 10 is 3 (0.3 * 10 in binary
    floating point is 3.0000000000000004, which would round up to 4)."""
    from fractions import Fraction

    given = f"--budget {value:g}"
    if not math.isfinite(value) or value <= 0 or (value >= 1 and not value.is_integer()):
        raise ValueError(f"{given}: expected a whole number of configurations or a fraction in (0, 1) of the "
                         f"{total}")
    count = math.ceil(Fraction(repr(value)) * total) if value < 1 else int(value)
    if count > total:
        raise ValueError(f"{given}: more than the {total} configurations (without --budget every one runs)")
    if count < least:
        raise ValueError(f"{given}: {count} of the {total} configurations; this search needs at least {least}")
    return count


def _check_outputs(out: Path, plot_path: Path, export: str | None) -> None:
    from .plot import PLOT_SUFFIXES
    from .store import EXPORT_SUFFIXES

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r}: is a file; expected a directory (for results.db and frontier.png)")
    if plot_path.suffix not in PLOT_SUFFIXES:
        raise ValueError(f"--plot {str(plot_path)!r}: expected a {' or '.join(PLOT_SUFFIXES)} file name")
    if export and Path(export).suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"--export {export!r}: expected a {' or '.join(EXPORT_SUFFIXES)} file name")


def _with_costs(results, job, configs, seed):
    """Costs are pure functions of the configuration: recompute them, so a cost added since a result was
    stored (or changed) is on the table and the plot too."""
    import pandas as pd

    from .job import result_key

    fresh = pd.DataFrame([{"key": result_key(job, c, seed), **job.costs_of(c)} for c in configs])
    results = results.drop(columns=[c for c in fresh.columns if c != "key" and c in results.columns])
    return results.merge(fresh, on="key", how="left")


def run(args) -> int:
    from rich.console import Console

    from .budget import active_frontier
    from .frontier import CLOSENESS_LEGEND, compare_frontiers, frontier, frontier_table
    from .health import health
    from .job import result_key
    from .plot import plot_frontier
    from .runner import run_sweep
    from .space import Config
    from .store import ResultStore

    console = Console()
    # everything that can be wrong with the command is checked here, before any work
    _check_executor(args.executor, args.workers)
    spec = _spec(args)
    seed = spec.seed if args.seed is None else args.seed
    objectives = spec.objectives
    if args.objectives:
        objectives = tuple(args.objectives.split(","))
    spec.job.check_objectives(objectives, "--objectives" if args.objectives else "[sweep].objectives",
                              estimating=args.budget is not None)
    if args.budget is None and (args.estimate == "meta" or args.compare):
        raise ValueError(f"{'--estimate meta' if args.estimate == 'meta' else '--compare'}: needs --budget "
                         "(how many configurations to run)")
    if args.estimate == "meta":
        check_meta_arguments(args)
    configs = spec.space.configs()
    if args.estimate == "meta" and not args.space:
        from .meta import load_meta
        configs = list(load_meta(args.meta).configs)  # without a sweep file: the matrix's columns
    budget = None if args.budget is None else budget_count(args.budget, len(configs),
                                                           1 if args.estimate == "meta" else 2)
    out = Path(args.out)
    db_path = Path(args.db) if args.db else out / "results.db"
    plot_path = Path(args.plot) if args.plot else out / "frontier.png"
    _check_outputs(out, plot_path, args.export)
    out.mkdir(parents=True, exist_ok=True)
    console.print(f"sweep [bold]{spec.job.name}[/]: {len(configs)} configurations, seed {seed}, "
                  f"objectives {', '.join(objectives)}")
    estimate = None
    # nothing quantized: the fp32 run every configuration is read against (none where the job has other axes)
    references = [] if spec.job.axes else [Config(())]
    with ResultStore(db_path) as store, _executor(args.executor, args.workers) as executor:
        if args.estimate == "meta":
            from .meta_cli import run_meta
            run_meta(args, spec, configs, budget, seed, objectives, store, executor, console, plot_path)
            return 0
        if budget is not None:
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
        if references:
            run_sweep(spec.job, references, store, executor, seed, progress=False, retry_errors=args.retry_errors)
        keys = {result_key(spec.job, c, seed) for c in configs}
        if args.export:
            store.export(args.export, spec.job.name)
        results = _with_costs(store.to_dataframe(spec.job.name), spec.job, [*configs, *references], seed)
    ref_row = next((results[results["key"] == result_key(spec.job, r, seed)].iloc[0] for r in references), None)
    results = results[results["key"].isin(keys)]
    results = results.assign(status=health(results, spec.job, objectives[0]))
    if ref_row is not None and ref_row["status"] != "ok":
        console.print(f"[yellow]{ref_row['status']}[/]: fp32 reference: {ref_row['message']}")
    for status in ("diverged", "error", "chance"):
        for _, row in results[results["status"] == status].iterrows():
            message = (f"{objectives[0]} {row[objectives[0]]:.4g} is no better than chance ({spec.job.chance:g})"
                       if status == "chance" else row["message"])
            console.print(f"[yellow]{status}[/]: {row['label']}: {message}")
    table = frontier(results, objectives)
    units = {name: spec.job.unit(name) for name in objectives}
    reference_point = ref_row if ref_row is not None and ref_row["status"] == "ok" else None
    console.print(frontier_table(table, objectives, units, title=f"Pareto frontier of {spec.job.name} "
                                                                 f"({int(table['on_frontier'].sum())} of {len(table)})",
                                 reference=reference_point))
    if estimate is not None and args.compare:
        true_pts = table.loc[table["on_frontier"], list(objectives)].to_numpy(float)
        est_keys = {result_key(spec.job, c, seed) for c in estimate.frontier}
        est_pts = table.loc[table["key"].isin(est_keys) & (table["status"] == "ok"), list(objectives)].to_numpy(float)
        closeness = compare_frontiers(true_pts, est_pts)
        console.print(f"estimate from {len(estimate.evaluated)}/{len(configs)} configurations: recall "
                      f"{closeness['recall']:.2f}, precision {closeness['precision']:.2f}, "
                      f"epsilon {closeness['epsilon']:.3f} (normalised)")
        console.print(f"[dim]{CLOSENESS_LEGEND}[/]")
    plot_frontier(table, objectives, plot_path, {name: spec.job.axis_label(name) for name in objectives},
                  title=f"{spec.job.name}: {len(table)} configurations", reference=reference_point)
    console.print(f"wrote {db_path} and {plot_path}" + (f" and {args.export}" if args.export else ""))
    return 0
