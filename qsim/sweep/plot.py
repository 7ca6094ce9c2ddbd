"""The sweep figure: every configuration as a point, the Pareto frontier highlighted and labelled.

Exports `plot_frontier(results, objectives, path, axis_labels)`, which writes a PNG or SVG (by suffix,
`PLOT_SUFFIXES`) with matplotlib's Agg backend. The x axis is the second objective (a cost), the y axis
the first (an error); with more than two objectives the frontier is still computed on all of them and
the title says so. Configurations that diverged, failed or sit at chance level (qsim.sweep.health) are
drawn as crosses at the top edge so they are not forgotten; the fp32 reference run, when given, as a star.
Results with a boolean "measured" column (an estimated frontier, qsim.sweep.meta) ring the measured points.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from .frontier import REFERENCE_LABEL, short_labels  # noqa: E402

PLOT_SUFFIXES = (".png", ".svg")
_FAILED_MARKERS = {"diverged": ("x", "tab:purple"), "chance": ("x", "tab:orange"), "error": ("+", "tab:brown")}


def plot_frontier(results, objectives, path, axis_labels=None, title=None, reference=None) -> Path:
    """Scatter all "ok" results, highlight rows with on_frontier, label them with their configuration.
    `axis_labels` maps an objective to its axis label with unit (default: the column name); `reference`
    (a mapping of the objectives: the fp32 run) is drawn as a star with a dotted line at its first objective."""
    path = Path(path)
    if path.suffix not in PLOT_SUFFIXES:
        raise ValueError(f"path: expected a {' or '.join(PLOT_SUFFIXES)} file name, got {str(path)!r}")
    y_name, x_name = objectives[0], objectives[1]
    labels, common = short_labels(results)
    results = results.assign(label=labels)
    ok = results[results["status"] == "ok"]
    front = ok[ok["on_frontier"]].sort_values([x_name, y_name])
    rest = ok[~ok["on_frontier"]]
    failed = results[results["status"] != "ok"]

    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    ax.scatter(rest[x_name], rest[y_name], s=28, color="0.6", label=f"configuration ({len(ok)} ok)", zorder=2)
    ax.step(front[x_name], front[y_name], where="post", color="tab:red", lw=1.2, alpha=0.6, zorder=3)
    ax.scatter(front[x_name], front[y_name], s=60, color="tab:red", edgecolor="black",
               label=f"Pareto frontier ({len(front)})", zorder=4)
    x_mid = np.nanmean([np.nanmin(ok[x_name]), np.nanmax(ok[x_name])]) if len(ok) else 0.0
    for i, (_, row) in enumerate(front.iterrows()):
        right_half = row[x_name] > x_mid  # labels point inwards so none runs off the axes
        ax.annotate(row["label"], (row[x_name], row[y_name]), xytext=(-8 if right_half else 8, 10 if i % 2 else -14),
                    textcoords="offset points", fontsize=7.5, color="darkred", ha="right" if right_half else "left",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75})
    if "measured" in ok.columns:  # an estimated frontier: ring the points that were run, the rest are predictions
        runs = ok[ok["measured"].astype(bool)]
        ax.scatter(runs[x_name], runs[y_name], s=130, facecolor="none", edgecolor="tab:blue", lw=1.5,
                   label=f"measured ({len(runs)}; others predicted)", zorder=5)
    top = np.nanmax(ok[y_name]) if len(ok) else 1.0
    for status, group in failed.groupby("status") if x_name in failed.columns else ():
        marker, color = _FAILED_MARKERS.get(status, _FAILED_MARKERS["error"])
        where = "at chance level" if status == "chance" else status
        ax.scatter(group[x_name], np.full(len(group), top), marker=marker, color=color, zorder=2,
                   label=f"{where} ({len(group)}, drawn at the top)")
    if reference is not None:
        ax.scatter([reference[x_name]], [reference[y_name]], marker="*", s=220, color="gold", edgecolor="black",
                   label=f"{REFERENCE_LABEL} ({reference[y_name]:.3g})", zorder=6)
        ax.axhline(reference[y_name], color="goldenrod", ls=":", lw=1, zorder=1)
    for name, set_scale in ((x_name, ax.set_xscale), (y_name, ax.set_yscale)):
        values = ok[name].to_numpy(dtype=float)
        if reference is not None:
            values = np.append(values, float(reference[name]))
        if len(values) and np.nanmin(values) > 0 and np.nanmax(values) / np.nanmin(values) > 20:
            set_scale("log")  # spans of more than 20x: a linear axis would squash the frontier
    axis_labels = axis_labels or {}
    ax.set_xlabel(axis_labels.get(x_name, x_name))
    ax.set_ylabel(axis_labels.get(y_name, y_name))
    extra = f" (frontier over {', '.join(objectives)})" if len(objectives) > 2 else ""
    ax.set_title((title or "Precision sweep") + extra + (f"\nin every configuration: {common}" if common else ""),
                 fontsize=10)
    ax.margins(0.08)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
