"""Budgeted frontier estimation on an analytic job whose full frontier is known by brute force."""
import concurrent.futures as cf
import re

import numpy as np
import pytest

from qsim.sweep.budget import active_frontier, config_features
from qsim.sweep.costs import BIT_OPS, LayerProfile, ModelProfile
from qsim.sweep.frontier import compare_frontiers, pareto_mask
from qsim.sweep.job import Job
from qsim.sweep.space import space_from_dict
from qsim.sweep.store import ResultStore

SPEC = re.compile(r"float<e(\d+)m(\d+)>")


def analytic_error(config):
    """Rounding noise 2^-man per operand plus a range penalty below 4 exponent bits."""
    total = 0.0
    for role in ("weight", "activation"):
        exp, man = map(int, SPEC.match(config.get(role)).groups())
        total += 2.0 ** -man + 0.05 * max(0, 4 - exp)
    return {"error": total}


PROFILE = ModelProfile((LayerProfile("fc", "Linear", 100, 10, 100),), batch_size=1)
JOB = Job("analytic", analytic_error, profile=PROFILE, costs=(BIT_OPS,), objectives=("error", "bit_ops"))
CONFIGS = space_from_dict({"weight": {"float": {"exp": "2..5", "man": "1..5"}},
                           "activation": {"float": {"exp": "2..5", "man": "1..4"}}}).configs()


def points(configs):
    return np.array([[analytic_error(c)["error"], JOB.costs_of(c)["bit_ops"]] for c in configs])


TRUE_FRONTIER = points(CONFIGS)[pareto_mask(points(CONFIGS))]


def test_features_are_bits_and_log2_range_per_role():
    feats = config_features(CONFIGS[:1])
    exp, man = map(int, SPEC.match(CONFIGS[0].get("activation")).groups())
    assert feats.shape == (1, 4)
    assert feats[0, 0] == 1 + exp + man  # activation bits (keys sorted: activation, weight)


def test_estimate_from_a_third_of_the_space_finds_most_of_the_frontier(tmp_path):
    budget = len(CONFIGS) // 3
    with ResultStore(tmp_path / "r.db") as store, cf.ThreadPoolExecutor(2) as pool:
        result = active_frontier(JOB, CONFIGS, store, budget, executor=pool, seed=0, batch=4)
        assert len(result.evaluated) <= budget and len(store) == len(result.evaluated)
    closeness = compare_frontiers(TRUE_FRONTIER, points(result.frontier))
    assert closeness["recall"] >= 0.8 and closeness["epsilon"] <= 0.1, closeness
    # the same number of configurations drawn at random does worse
    rng = np.random.default_rng(0)
    random_pick = [CONFIGS[i] for i in rng.choice(len(CONFIGS), size=len(result.evaluated), replace=False)]
    picked = points(random_pick)
    assert compare_frontiers(TRUE_FRONTIER, picked[pareto_mask(picked)])["recall"] < closeness["recall"]


def test_bad_objectives_and_budget_are_rejected(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        with pytest.raises(ValueError, match="objectives"):
            active_frontier(JOB, CONFIGS, store, 10, objectives=("bit_ops", "error"))
        with pytest.raises(ValueError, match="budget"):
            active_frontier(JOB, CONFIGS, store, 1)
