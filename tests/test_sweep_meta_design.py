"""Designs for a new task's runs (qsim.sweep.meta.design): the adaptive frontier design and D-optimal
against random picks on synthetic low-rank tasks and on the shipped matrix, the batch form, bad input."""
import numpy as np
import pytest

from qsim.sweep.meta import LowRankModel, MetaData, design, estimate_row, load_meta, make_estimate, meta_metrics
from qsim.sweep.space import Config

METRICS = ("recall", "precision", "hypervolume_loss", "rmse")


def synthetic(tasks=25, configs=30, noise=0.3, seed=0):
    """Errors in % shaped like a precision grid's: each configuration has a width (bits) that sets its
    memory and, through a rank-3 logit (a task's base error, its sensitivity to narrow formats, a task x
    configuration interaction), lowers its error; plus noise."""
    rng = np.random.default_rng(seed)
    bits = rng.uniform(4, 16, configs)
    config_factors = np.column_stack([np.ones(configs), 8 - bits + rng.normal(0, 1, configs),
                                      rng.standard_normal(configs)])
    task_factors = np.column_stack([rng.normal(-2, 0.5, tasks), rng.uniform(0.3, 1.5, tasks),
                                    rng.normal(0, 0.5, tasks)])
    logits = task_factors @ config_factors.T + noise * rng.standard_normal((tasks, configs))
    memory = bits * rng.uniform(0.9, 1.1, configs)
    labels = [Config.from_dict({"weight": f"float<e{4 + i // 8}m{1 + i % 8}>"}) for i in range(configs)]
    return MetaData.from_array(100.0 / (1.0 + np.exp(-logits)), labels, {"memory_kib": memory}), memory


def scores(model, truth, memory, chosen):
    return meta_metrics(truth, make_estimate(model, chosen, truth[chosen], {"memory_kib": memory}))


def adaptive(model, truth, memory, k, chosen=()):
    """The frontier design run for real: each pick sees the errors measured so far."""
    chosen = list(chosen)
    while len(chosen) < k:
        chosen += design(model, 1, "frontier", memory, chosen, truth[chosen])
    return chosen


def mean_scores(runs):
    return {m: np.mean([r[m] for r in runs]) for m in METRICS}


def test_designs_beat_random_on_held_out_low_rank_tasks():
    """Truly low-rank synthetic tasks (3 matrices, 10 held-out rows each): D-optimal beats random picks on
    every metric; the frontier design on precision and the predicted errors (its recall is not better
    here: on an exactly low-rank matrix the D-optimal runs already pin the whole row down)."""
    for k in (3, 6):
        runs = {"frontier": [], "d-optimal": [], "random": []}
        for seed in range(3):
            meta, memory = synthetic(seed=seed)
            for task in meta.tasks[:10]:
                model = LowRankModel.fit(meta.drop_task(task), rank=3, transform="logit")
                truth = meta.errors[meta.tasks.index(task)]
                runs["frontier"].append(scores(model, truth, memory, adaptive(model, truth, memory, k)))
                runs["d-optimal"].append(scores(model, truth, memory, design(model, k)))
                runs["random"] += [scores(model, truth, memory, design(model, k, "random", seed=s)) for s in range(5)]
        frontier, d_optimal, rand = (mean_scores(runs[m]) for m in ("frontier", "d-optimal", "random"))
        assert d_optimal["recall"] > rand["recall"] and d_optimal["precision"] > rand["precision"], (k, runs)
        assert d_optimal["hypervolume_loss"] < rand["hypervolume_loss"] and d_optimal["rmse"] < rand["rmse"], k
        assert frontier["precision"] > rand["precision"] and frontier["rmse"] < rand["rmse"], k


def test_frontier_design_beats_random_at_every_k_on_the_shipped_matrix():
    """The validation of benchmarks/meta_frontier.py (leave one task out, rank 2 as cross-validation
    chooses there): every metric, every k = 3..10, against the mean of 10 random seeds as there."""
    meta = load_meta()
    ks = range(3, 11)
    frontier, rand = {k: [] for k in ks}, {k: [] for k in ks}
    for t, task in enumerate(meta.tasks):
        model = LowRankModel.fit(meta.drop_task(task), rank=2, transform="logit")
        truth, memory = meta.errors[t], meta.costs["memory_kib"][t]
        chosen = []
        for k in ks:
            chosen = adaptive(model, truth, memory, k, chosen)
            frontier[k].append(scores(model, truth, memory, chosen))
            rand[k] += [scores(model, truth, memory, design(model, k, "random", seed=s)) for s in range(10)]
    for k in ks:
        ours, theirs = mean_scores(frontier[k]), mean_scores(rand[k])
        assert ours["recall"] > theirs["recall"] and ours["precision"] > theirs["precision"], (k, ours, theirs)
        assert ours["hypervolume_loss"] < theirs["hypervolume_loss"] and ours["rmse"] < theirs["rmse"], \
            (k, ours, theirs)


def test_batch_frontier_design_is_the_adaptive_one_fed_its_own_predictions():
    meta, memory = synthetic(seed=1)
    model = LowRankModel.fit(meta.drop_task("task0"), rank=3, transform="logit")
    measured, values = [0], [50.0]
    for _ in range(3):
        pick = design(model, 1, "frontier", memory, measured, values)[0]
        measured, values = measured + [pick], values + [estimate_row(model, measured, values)[0][pick]]
    assert design(model, 3, "frontier", memory, [0], [50.0]) == measured[1:]
    assert len(set(measured)) == 4


def test_design_rejects_bad_input_with_the_reason():
    meta, memory = synthetic(configs=12)
    model = LowRankModel.fit(meta, rank=2, transform="logit")
    with pytest.raises(ValueError, match="method: expected one of"):
        design(model, 3, "best")
    with pytest.raises(ValueError, match=r"k: expected an int in \[1, 10\]"):
        design(model, 11, "frontier", memory, measured=[0, 1], values=[5.0, 6.0])
    with pytest.raises(ValueError, match="costs: the frontier design needs finite costs, 12 per cost"):
        design(model, 2, "frontier", memory[:5])
    with pytest.raises(ValueError, match="costs: the frontier design"):
        design(model, 2, "frontier", np.where(np.arange(12) == 3, np.nan, memory))
    with pytest.raises(ValueError, match="costs: the cost design needs finite positive costs"):
        design(model, 2, "cost", -memory)
    with pytest.raises(ValueError, match="measured/values: expected column indices in"):
        design(model, 2, "frontier", memory, measured=[0, 1], values=[5.0])
    with pytest.raises(ValueError, match="measured/values"):
        design(model, 2, "d-optimal", measured=[12])
