"""Pareto frontier: pareto_mask against a brute-force reference, ties, NaN, the DataFrame wrapper
and the closeness measures of compare_frontiers."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from qsim.sweep.frontier import compare_frontiers, frontier, pareto_mask


def reference_mask(points):
    """Definition, one pair at a time: p is kept unless some valid q is <= p everywhere and < somewhere."""
    keep = []
    for p in points:
        if any(math.isnan(v) for v in p):
            keep.append(False)
            continue
        dominated = any(
            not any(math.isnan(v) for v in q)
            and all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
            for q in points)
        keep.append(not dominated)
    return keep


# Few distinct values so that ties are common; NaN and inf included.
values = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.5, math.inf, math.nan])


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4).flatmap(lambda k: st.lists(st.lists(values, min_size=k, max_size=k), min_size=1, max_size=25)))
def test_pareto_mask_equals_brute_force_definition(points):
    assert pareto_mask(np.array(points)).tolist() == reference_mask(points)


def test_equal_points_are_all_kept_and_nan_rows_never():
    points = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [np.nan, 0.0]])
    assert pareto_mask(points).tolist() == [True, True, True, False, False]


def test_pareto_mask_rejects_a_flat_array():
    with pytest.raises(ValueError, match="points"):
        pareto_mask(np.array([1.0, 2.0]))


def test_frontier_considers_only_ok_rows():
    """A failed row with a better error must not push an ok row off the frontier."""
    df = pd.DataFrame({"status": ["ok", "ok", "error", "diverged"], "error": [1.0, 2.0, 0.0, np.nan],
                       "memory_kib": [2.0, 1.0, 0.5, 0.1], "label": list("abcd")})
    out = frontier(df, ("error", "memory_kib"))
    assert out["on_frontier"].tolist() == [True, True, False, False]


def test_frontier_names_missing_objective_columns():
    df = pd.DataFrame({"status": ["ok"], "error": [1.0]})
    with pytest.raises(ValueError, match="memory_kib"):
        frontier(df, ("error", "memory_kib"))


def test_compare_frontiers_is_perfect_on_identical_sets():
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert compare_frontiers(pts, pts[::-1]) == {"recall": 1.0, "precision": 1.0, "epsilon": 0.0}


def test_compare_frontiers_epsilon_is_the_normalised_shift_that_covers_a_missed_point():
    """True frontier spans [1, 3] on both axes; missing (2, 2) while having (3, 1) and (1, 3): the best
    cover of (2, 2) is off by (3-2)/2 = 0.5 on one axis."""
    true = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    est = np.array([[1.0, 3.0], [3.0, 1.0]])
    result = compare_frontiers(true, est)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["precision"] == 1.0
    assert result["epsilon"] == pytest.approx(0.5)
