"""Which results are results: a run can finish with finite numbers and still have learned nothing.

Exports `health`, `chance_limit` and `CHANCE_MARGIN`. The store records "ok", "diverged" (a NaN or inf metric) or
"error" (the job raised). A network whose test error sits at its task's chance level (90 % for ten
classes, `Job.chance`) is "ok" to the store, yet it lands on the frontier only because it is cheap:
`health` relabels such rows "chance", so frontiers, tables and plots treat them like diverged runs.
"""
from __future__ import annotations

import pandas as pd

# A result within 5 % of the chance level (error >= 85.5 for 90) is no better than guessing: on the
# digits job's 360 test images the error of a guess has a standard deviation of 1.6 points.
CHANCE_MARGIN = 0.05


def chance_limit(job, metric: str) -> float | None:
    """The value of `metric` from which a result is no better than chance: None unless `metric` is the
    job's main metric and the job states its chance level."""
    if job.chance is None or not job.metrics or metric != job.metrics[0]:
        return None
    return job.chance * (1 - CHANCE_MARGIN)


def health(results: pd.DataFrame, job, metric: str) -> pd.Series:
    """Each row's status: the stored one, or "chance" for an "ok" row whose `metric` is at or past
    chance_limit (nothing is relabelled where there is none)."""
    status = results["status"].astype(str).copy()
    limit = chance_limit(job, metric)
    if limit is None or metric not in results.columns:
        return status
    values = pd.to_numeric(results[metric], errors="coerce")
    status[(status == "ok") & (values >= limit)] = "chance"
    return status
