"""Pareto frontiers: the configurations no other configuration beats on every objective.

Exports `pareto_mask` (non-dominated rows of a points array, all objectives minimised), `frontier`
(adds an `on_frontier` column to a results DataFrame), `frontier_table` (a rich Table) and
`compare_frontiers` (how close an estimated frontier is to the true one, `CLOSENESS_LEGEND` says it in
words), `short_labels` (configuration labels that name only the roles that vary, for tables and plots)
and `REFERENCE_LABEL` (the fp32 run's name in tables and plots).

Definitions. Point a dominates b when a <= b in every objective and a < b in at least one. Equal
points do not dominate each other, so ties are all kept. A point with a NaN objective is never on
the frontier and dominates nothing (it has no value to compare); +inf is an ordinary, worst value.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from rich.table import Table

from .space import Config

REFERENCE_LABEL = "fp32 reference"


def pareto_mask(points) -> np.ndarray:
    """Boolean mask of the non-dominated rows of an (n, k) array, every objective minimised."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] < 1:
        raise ValueError(f"points: expected an (n, k) array with k >= 1, got shape {points.shape}")
    valid = ~np.isnan(points).any(axis=1)
    mask = valid.copy()
    candidates = points[valid]
    for i in np.flatnonzero(valid):
        p = points[i]
        # (m, k) comparisons against every valid point: any q with q <= p everywhere and q < p somewhere?
        dominated = np.any(np.all(candidates <= p, axis=1) & np.any(candidates < p, axis=1))
        mask[i] = not dominated
    return mask


def frontier(results: pd.DataFrame, objectives=("error", "memory_kib")) -> pd.DataFrame:
    """Results with an `on_frontier` column: non-dominated among the rows with status "ok"."""
    objectives = list(objectives)
    if len(objectives) < 2:
        raise ValueError(f"objectives: expected 2 or more column names, got {objectives}")
    missing = [o for o in objectives if o not in results.columns]
    if missing:
        raise ValueError(f"objectives: columns {missing} not in the results; available: {sorted(map(str, results.columns))}")
    out = results.copy()
    out["on_frontier"] = False
    ok = out["status"] == "ok" if "status" in out.columns else pd.Series(True, index=out.index)
    if ok.any():
        values = out.loc[ok, objectives].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        out.loc[ok, "on_frontier"] = pareto_mask(values)
    return out


def short_labels(results: pd.DataFrame) -> tuple[pd.Series, str]:
    """Labels built from the "cfg.*" and "axis.*" columns that vary between rows, and a label of the
    constant ones."""
    columns = [c for c in results.columns if str(c).startswith(("cfg.", "axis."))]
    values = results[columns].fillna("").astype(str)
    varying = [c for c in columns if values[c].nunique() > 1]
    constant = [c for c in columns if c not in varying]

    def label(row, cols):
        return Config.from_dict({c[4:]: row[c] for c in cols if row[c] and c.startswith("cfg.")}, (),
                                {c[5:]: row[c] for c in cols if row[c] and c.startswith("axis.")}).label()

    common = label(values.iloc[0], constant) if len(values) and constant else ""
    return values.apply(label, axis=1, cols=varying), common


def frontier_table(results: pd.DataFrame, objectives, units=None, title="Pareto frontier", reference=None) -> Table:
    """A rich Table of the frontier rows of `frontier(...)` output, sorted by the last objective; the
    roles shared by every configuration go into the caption. `reference` (a mapping of the objectives,
    e.g. the fp32 run's row) is added last, starred, to read the frontier's errors against."""
    units = units or {}
    labels, common = short_labels(results)
    rows = results.assign(label=labels)[results["on_frontier"]].sort_values(list(objectives)[::-1])
    table = Table(title=title, caption=f"every configuration: {common}" if common else None)
    table.add_column("configuration", overflow="fold")
    for name in objectives:
        table.add_column(f"{name} ({units[name]})" if units.get(name) else name, justify="right", overflow="fold")
    for _, row in rows.iterrows():
        table.add_row(str(row["label"]), *(f"{row[name]:.4g}" for name in objectives))
    if reference is not None:
        table.add_section()
        table.add_row(f"★ {REFERENCE_LABEL}", *(f"{reference[name]:.4g}" for name in objectives), style="bold")
    return table


# What `compare_frontiers`' numbers mean, printed under them by the command line.
CLOSENESS_LEGEND = ("recall: share of the true frontier's points the estimate found; precision: share of the "
                    "estimate's points that are on the true frontier; epsilon: how far (in units of each objective's "
                    "range on the true frontier) the estimate must move to cover it, 0 = covers it")


def compare_frontiers(true_points, estimated_points) -> dict[str, float]:
    """Closeness of an estimated frontier to the true one (both (n, k) arrays of frontier points).

    recall: fraction of true frontier points present in the estimate (exact match);
    precision: fraction of estimated points that are true frontier points;
    epsilon: additive epsilon indicator on objectives scaled to [0, 1] by the true frontier's range,
    the smallest e such that every true point is weakly dominated by some estimated point minus e
    (0 when the estimate covers the true frontier)."""
    true_points = np.unique(np.asarray(true_points, dtype=float), axis=0)
    estimated_points = np.unique(np.asarray(estimated_points, dtype=float), axis=0)
    if len(true_points) == 0 or len(estimated_points) == 0:
        raise ValueError("compare_frontiers: both frontiers must hold at least one point")
    true_set = {tuple(p) for p in true_points}
    est_set = {tuple(p) for p in estimated_points}
    lo, hi = true_points.min(axis=0), true_points.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    t, e = (true_points - lo) / scale, (estimated_points - lo) / scale
    # for each true point: min over estimates of max over objectives of (estimate - true)
    gaps = (e[None, :, :] - t[:, None, :]).max(axis=2).min(axis=1)
    return {"recall": len(true_set & est_set) / len(true_set),
            "precision": len(true_set & est_set) / len(est_set),
            "epsilon": float(max(0.0, gaps.max()))}
