"""`qsim sweep --budget K --estimate meta`: a new task's frontier from K runs and the meta-training matrix.

Exports `add_meta_arguments`, `check_meta_arguments` and `run_meta` for qsim.sweep.cli. The
configurations are the sweep file's (each must be a column of the matrix) or, without a file, every
column of the matrix (cli chooses them); the K runs go into the result store like any sweep, the rest
of the row is predicted (qsim.sweep.meta).
"""
from __future__ import annotations

import argparse
import math

from .meta import DESIGNS, TRANSFORMS


def add_meta_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--estimate", choices=("active", "meta"), default="active",
                        help="with --budget: 'active' (default) searches this task alone with a Gaussian process; "
                             "'meta' predicts the task's errors from earlier tasks (PEPPP) and the budget's runs")
    parser.add_argument("--meta", help="with --estimate meta: meta-training matrix CSV (default: the shipped "
                                       "qsim/data/meta/peppp_tasks.csv)")
    parser.add_argument("--design", choices=DESIGNS, default="frontier",
                        help="with --estimate meta: which configurations to run: 'frontier' (default; one run at a "
                             "time, each chosen from the earlier ones to resolve the frontier and the predicted "
                             "errors), 'd-optimal', 'cost' (D-optimal per unit of memory) or 'random'")
    parser.add_argument("--rank", type=int, help="with --estimate meta: rank of the model (default: cross-validation)")
    parser.add_argument("--diverged-error", type=float,
                        help="with --estimate meta: count a run that diverged as this error (e.g. 90 for ten "
                             "classes at chance, as the shipped matrix does); default: leave it out")
    parser.add_argument("--transform", choices=TRANSFORMS, default="logit",
                        help="with --estimate meta: model the logit of the errors (default; errors in %%, as the "
                             "shipped matrix's) or the errors as they are ('none', for other metrics)")


def check_meta_arguments(args) -> None:
    """Raise ValueError for a --meta file that is not there or a --rank below 1, before any work."""
    from pathlib import Path

    if args.meta is not None and not Path(args.meta).is_file():
        raise ValueError(f"--meta {args.meta!r}: no such file (a meta-training matrix CSV)")
    if args.rank is not None and args.rank < 1:
        raise ValueError(f"--rank {args.rank}: expected a positive int (or no --rank: cross-validation chooses)")


def run_meta(args, spec, configs, budget, seed, objectives, store, executor, console, plot_path) -> None:
    """Estimate from `budget` runs (qsim.sweep.cli counts and checks --budget), print and plot the estimated
    frontier (measured and predicted points), and with --compare run the full sweep and print how close
    the estimate came."""
    import numpy as np
    import pandas as pd
    from rich.table import Table

    from .frontier import CLOSENESS_LEGEND
    from .health import chance_limit
    from .job import result_key
    from .meta import load_meta, meta_frontier, meta_metrics
    from .plot import plot_frontier
    from .runner import run_sweep

    meta = load_meta(args.meta)
    estimate = meta_frontier(spec.job, configs, store, budget, meta, objectives, executor, seed, args.design,
                             args.rank, args.transform, args.diverged_error, progress=not args.no_progress)
    console.print(f"meta estimate ({args.design}): {int(estimate.measured.sum())} of {len(configs)} configurations "
                  f"run, the rest predicted from {len(meta.tasks)} earlier tasks (rank {estimate.rank})")
    shown, limit = estimate, chance_limit(spec.job, objectives[0])
    if limit is not None:  # as qsim.sweep.health treats measured runs, predicted ones included
        shown = estimate.below(limit)
        console.print(f"{int((estimate.errors >= limit).sum())} configurations no better than chance "
                      f"({objectives[0]} >= {limit:g}, measured or predicted) are kept off the frontier")
    table = Table(title=f"estimated Pareto frontier of {spec.job.name} ({int(shown.on_frontier.sum())} of "
                        f"{len(configs)})")
    for name in ("configuration", *objectives, "source"):
        table.add_column(name, justify="left" if name in ("configuration", "source") else "right", overflow="fold")
    for config in shown.recommended:
        i = estimate.configs.index(config)
        error = f"{estimate.errors[i]:.4g}" + ("" if estimate.measured[i] else f" ± {estimate.std[i]:.2g}")
        table.add_row(config.label(), error, *(f"{estimate.costs[n][i]:.4g}" for n in objectives[1:]),
                      "measured" if estimate.measured[i] else "predicted")
    console.print(table)
    if args.compare:
        run_sweep(spec.job, configs, store, executor, seed, progress=not args.no_progress)
        stored = {r.key: r for r in store.records(spec.job.name)}
        records = [stored[result_key(spec.job, c, seed)] for c in configs]
        truth = np.array([r.metrics.get(objectives[0], math.nan) if r.status == "ok" else math.nan for r in records])
        if args.diverged_error is not None:
            truth[np.isnan(truth)] = args.diverged_error
        if np.isnan(truth).any():
            raise ValueError(f"--compare: {int(np.isnan(truth).sum())} configurations diverged or failed, so the "
                             "true frontier is unknown; pass --diverged-error to score them")
        metrics = meta_metrics(truth, estimate)
        console.print(f"estimate from {metrics['evaluations']}/{len(configs)} configurations "
                      f"({metrics['evaluations_saved']} saved): recall {metrics['recall']:.2f}, precision "
                      f"{metrics['precision']:.2f}, epsilon {metrics['epsilon']:.3f} (normalised), hypervolume "
                      f"loss {metrics['hypervolume_loss']:.3f}, predicted-error RMSE {metrics['rmse']:.3g}")
        console.print(f"[dim]{CLOSENESS_LEGEND}; hypervolume loss: share of the area the true frontier "
                      "dominates (error and first cost scaled to [0, 1]) that the estimate misses; RMSE: of the "
                      "predicted errors against the measured ones[/]")
    frame = pd.DataFrame([{"key": str(i), "status": "ok", **{f"cfg.{k}": v for k, v in c.as_dict().items()}}
                          for i, c in enumerate(configs)])
    frame = pd.concat([frame, shown.table().drop(columns=["label"])], axis=1)
    plot_frontier(frame, objectives, plot_path, {name: spec.job.axis_label(name) for name in objectives},
                  title=f"{spec.job.name}: estimated from {int(estimate.measured.sum())} of {len(configs)} runs")
    console.print(f"wrote {plot_path}")

