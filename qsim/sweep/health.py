"""Which results are results: a run can finish with finite numbers and still have learned nothing.

Exports `health` and `CHANCE_MARGIN`. The store records "ok", "diverged" (a NaN or inf metric) or
"error" (the job raised). A network whose test error sits at its task's chance level (90 % for ten
classes, `Job.chance`) is "ok" to the store, yet it lands on the frontier only because it is cheap:
`health` relabels such rows "chance", so frontiers, tables and plots treat them like diverged runs.
"""
from __future__ import annotations

import pandas as pd

# A result within 5 % of the chance level (error >= 85.5 for 90) is no better than guessing: on the
# digits job's 360 test images the error of a guess has a standard deviation of 1.6 points.
CHANCE_MARGIN = 0.05


def health(results: pd.DataFrame, job, metric: str) -> pd.Series:
    """Each row's status: the stored one, or "chance" for an "ok" row whose `metric` (the job's main
    metric, else nothing is relabelled) is no better than `job.chance` by more than CHANCE_MARGIN."""
    status = results["status"].astype(str).copy()
    if job.chance is None or not job.metrics or metric != job.metrics[0] or metric not in results.columns:
        return status
    values = pd.to_numeric(results[metric], errors="coerce")
    status[(status == "ok") & (values >= job.chance * (1 - CHANCE_MARGIN))] = "chance"
    return status
