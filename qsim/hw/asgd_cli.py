"""`qsim asgd`: asynchronous low-precision SGD (Buckwild!) on a simulated multicore.

    qsim asgd digits --workers 1,4,16 --dmgc D32M32G32C32,D8M16G16C16 --q 0,0.5,0.9 --plot asgd.png
    qsim asgd sparse --features 10000 --density 0.01 --accelerator multicore_16 --csv asgd.csv
    qsim asgd digits --workers 1,4,16 --q 0,0.5,0.9 --store asgd.db     # stored, resumable, a frontier
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _list(kind):
    def parse(text):
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("problem", choices=("digits", "sparse"),
                        help="digits: scikit-learn digits one-vs-rest (dense); sparse: a generated sparse problem")
    parser.add_argument("--loss", choices=("logistic", "least_squares", "svm"), default="logistic")
    parser.add_argument("--workers", type=_list(int), default=[1, 4], help="comma-separated worker counts")
    parser.add_argument("--dmgc", type=_list(str), default=["D32M32G32C32", "D8M16G16C16"],
                        help="comma-separated DMGC signatures (e.g. D8M8G16C8; 32 = float32)")
    parser.add_argument("--q", type=_list(float), default=[0.0], dest="obstinate_q",
                        help="comma-separated obstinate-cache probabilities of ignoring an invalidation")
    parser.add_argument("--max-ignored", type=int, help="staleness bound: ignored invalidations per line")
    parser.add_argument("--accelerator", default="multicore_16", help="hw_models name or path of a multicore .toml")
    parser.add_argument("--iterations", type=int, default=4000, help="SGD iterations in total (all workers)")
    parser.add_argument("--step-size", type=float, default=0.05)
    parser.add_argument("--rounding", choices=("stochastic", "nearest"), default="stochastic")
    parser.add_argument("--no-assumptions", action="store_true", help="leave the report's list of assumptions out")
    parser.add_argument("--target-loss", type=float,
                        help="default: 5%% of the way from the best loss reached back to the loss at w = 0 "
                             "(with --store: from full-precision sequential SGD's loss, see qsim.hw.asgd_sweep)")
    parser.add_argument("--samples", type=int, default=2000, help="sparse problem: samples")
    parser.add_argument("--features", type=int, default=10_000, help="sparse problem: features")
    parser.add_argument("--density", type=float, default=0.01, help="sparse problem: fraction of nonzeros")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, help="write the table to this CSV file")
    parser.add_argument("--plot", type=Path, help="write loss-vs-time and throughput-vs-cores plots (.png/.svg); "
                                                  "with --store, the frontier")
    parser.add_argument("--store", type=Path, help="run through qsim.sweep: each configuration is stored in this "
                                                   "SQLite file as it finishes, a rerun resumes, and the time vs "
                                                   "energy-to-target frontier is printed")


def run(args) -> int:
    from rich.console import Console

    from . import asgd

    if args.problem == "digits":
        options = {"loss": args.loss}
    else:
        options = {"samples": args.samples, "features": args.features, "density": args.density, "loss": args.loss,
                   "seed": args.seed}
    console = Console()
    if not console.is_terminal:  # a pipe or a file gets the whole table, not columns cut to 80 characters
        console = Console(width=200)
    if args.store:
        return _sweep(args, options, console)
    report = asgd.run(asgd.PROBLEMS[args.problem](**options), workers=args.workers, dmgc=args.dmgc,
                      obstinate_q=args.obstinate_q,
                      accelerator=args.accelerator, iterations=args.iterations, target_loss=args.target_loss,
                      step_size=args.step_size, rounding=args.rounding, seed=args.seed,
                      max_ignored=args.max_ignored)
    console.print(report.render(assumptions=not args.no_assumptions))
    if args.csv:
        console.print(f"table: {report.to_csv(args.csv)}")
    if args.plot:
        console.print(f"plot: {report.plot(args.plot)}")
    return 0


def _sweep(args, options, console) -> int:
    from qsim.sweep import frontier_table, plot_frontier

    from .asgd_sweep import sweep

    result = sweep(args.problem, workers=args.workers, dmgc=args.dmgc, obstinate_q=args.obstinate_q,
                   store=args.store, seed=args.seed, progress=console.is_terminal, problem_options=options,
                   accelerator=args.accelerator, iterations=args.iterations, step_size=args.step_size,
                   rounding=args.rounding, target_loss=args.target_loss, max_ignored=args.max_ignored)
    s, table = result.summary, result.results
    console.print(f"{s.total} configurations: {s.skipped} already stored, {s.ok} ok, {s.diverged} never reached "
                  f"the target loss {dict(result.job.params)['target_loss']:.4f}, {s.error} errors")
    units = {name: result.job.unit(name) for name in result.objectives}
    console.print(frontier_table(table, result.objectives, units, title=f"{result.job.name}: time vs energy to "
                                 f"target ({int(table['on_frontier'].sum())} of {len(table)} on the frontier)"))
    if args.csv:
        table.to_csv(args.csv, index=False)
        console.print(f"table: {args.csv}")
    if args.plot:
        labels = {name: result.job.axis_label(name) for name in result.objectives}
        console.print(f"plot: {plot_frontier(table, result.objectives, args.plot, labels, title=result.job.name)}")
    return 0
