"""Meta-learned frontiers (PEPPP): completion, design, row prediction, metrics, meta-data I/O, bad input."""
import concurrent.futures as cf
import itertools
import re

import numpy as np
import pytest

from qsim.sweep.costs import BIT_OPS, LayerProfile, ModelProfile
from qsim.sweep.frontier import pareto_mask
from qsim.sweep.job import Job
from qsim.sweep.meta import (LowRankModel, MetaData, choose_rank, complete, config_from_label, design,
                             estimate_row, hypervolume_2d, make_estimate, meta_frontier, meta_metrics)
from qsim.sweep.runner import run_sweep
from qsim.sweep.space import Config, space_from_dict
from qsim.sweep.store import ResultStore


def low_rank(tasks=30, configs=40, rank=3, noise=0.01, missing=0.3, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((tasks, rank)) @ rng.standard_normal((rank, configs))
    observed = truth + noise * rng.standard_normal(truth.shape)
    hidden = rng.random(truth.shape) < missing
    observed[hidden] = np.nan
    return truth, observed, hidden


def grid_configs(n):
    return [Config.from_dict({"weight": f"float<e{4 + i // 8}m{1 + i % 8}>"}) for i in range(n)]


def test_cross_validation_recovers_the_rank_and_completion_is_within_the_noise():
    truth, observed, hidden = low_rank(tasks=20, configs=25, noise=0.01)
    assert choose_rank(observed, ranks=range(1, 5), folds=4) == 3
    z = complete(observed, 3)
    assert np.sqrt(np.mean((z - truth)[hidden] ** 2)) < 0.01  # the noise level
    assert np.sqrt(np.mean((z - truth)[~hidden] ** 2)) < 0.01


def test_zero_weight_is_the_same_as_a_missing_entry():
    _, observed, _ = low_rank(missing=0.2, seed=1)
    filled = np.where(np.isnan(observed), 123.0, observed)
    weights = (~np.isnan(observed)).astype(float)
    np.testing.assert_allclose(complete(filled, 3, weights), complete(observed, 3), atol=1e-9)


def test_a_fully_observed_row_is_predicted_as_measured():
    _, observed, _ = low_rank(seed=2)
    meta = MetaData.from_array(observed, grid_configs(40))
    model = LowRankModel.fit(meta, rank=3)
    row = np.random.default_rng(3).standard_normal(40)  # not even in the model's span
    errors, std = estimate_row(model, range(40), row)
    np.testing.assert_array_equal(errors, row)
    assert (std == 0).all()


def test_a_row_in_the_span_is_predicted_exactly_from_rank_many_entries():
    truth, _, _ = low_rank(noise=0.0, missing=0.0, seed=4)
    meta = MetaData.from_array(truth[:-1], grid_configs(40))
    model = LowRankModel.fit(meta, rank=3)
    chosen = design(model, 3)
    errors, std = estimate_row(model, chosen, truth[-1, chosen])
    np.testing.assert_allclose(errors, truth[-1], atol=1e-4 * np.abs(truth).max())
    assert (std[chosen] == 0).all() and (std > 0).sum() == 37


def test_greedy_step_maximises_the_log_determinant():
    """Each greedy pick beats every other column on log det(Sigma^-1 + V_S^T V_S / sigma^2), by brute force."""
    _, observed, _ = low_rank(seed=5)
    model = LowRankModel.fit(MetaData.from_array(observed, grid_configs(40)), rank=3)
    chosen = design(model, 4)

    def logdet(cols):
        v = model.col_factors[cols]
        return np.linalg.slogdet(np.linalg.inv(model.prior_cov) + v.T @ v / model.noise_var)[1]

    for step in range(4):
        before = chosen[:step]
        scores = {j: logdet(before + [j]) for j in range(40) if j not in before}
        assert scores[chosen[step]] >= max(scores.values()) - 1e-9


def test_d_optimal_predicts_held_out_rows_better_than_random():
    truth, observed, _ = low_rank(tasks=60, noise=0.05, missing=0.0, seed=6)
    meta = MetaData.from_array(observed[:40], grid_configs(40))
    model = LowRankModel.fit(meta, rank=3)
    chosen = design(model, 4)

    def rmse(cols, row):
        return np.sqrt(np.mean((estimate_row(model, cols, observed[row, cols])[0] - truth[row]) ** 2))

    d_opt = np.mean([rmse(chosen, r) for r in range(40, 60)])
    rand = np.mean([rmse(design(model, 4, "random", seed=s), r) for r in range(40, 60) for s in range(5)])
    assert d_opt < rand


def test_cost_aware_design_prefers_cheap_configurations():
    _, observed, _ = low_rank(seed=7)
    model = LowRankModel.fit(MetaData.from_array(observed, grid_configs(40)), rank=3)
    costs = np.linspace(1, 100, 40)
    cheap = design(model, 5, "cost", costs)
    plain = design(model, 5)
    assert costs[cheap].sum() < costs[plain].sum()


def test_hypervolume_of_a_staircase():
    # points (0.2, 0.8) and (0.6, 0.3), reference (1, 1): 0.8*0.2 + 0.4*0.5 = 0.36
    assert hypervolume_2d([[0.2, 0.8], [0.6, 0.3], [0.7, 0.9]], np.array([1.0, 1.0])) == pytest.approx(0.36)


def test_metrics_of_a_fully_measured_row_are_perfect():
    _, observed, _ = low_rank(seed=8)
    model = LowRankModel.fit(MetaData.from_array(observed, grid_configs(40)), rank=3)
    truth = np.abs(observed[0]) + 1.0
    truth[np.isnan(truth)] = 2.0
    costs = {"memory_kib": np.arange(40, dtype=float)}
    metrics = meta_metrics(truth, make_estimate(model, range(40), truth, costs))
    assert metrics["recall"] == metrics["precision"] == 1.0
    assert metrics["hypervolume_loss"] == 0.0 and metrics["evaluations_saved"] == 0


def test_labels_round_trip():
    for config in [Config(()), Config.from_dict({"weight": "bf16", "activation": "float<e4m3>",
                                                 "master_weight": "fp32", "fc.weight": "fixed<8,6>"})]:
        assert config_from_label(config.label()) == config
    with pytest.raises(ValueError, match="Q=bf16"):
        config_from_label("W=bf16 Q=bf16")


SPEC = re.compile(r"float<e(\d+)m(\d+)>")


def family_error(config, sensitivity: float, range_need: float):
    """A family of tasks whose errors are a 2-dimensional combination of per-config features."""
    total = 0.0
    for role in ("weight", "activation"):
        exp, man = map(int, SPEC.match(config.get(role)).groups())
        total += sensitivity * 2.0 ** -man + range_need * max(0, 5 - exp)
    return {"error": total}


PROFILE = ModelProfile((LayerProfile("fc", "Linear", 100, 10, 100),), batch_size=1)
CONFIGS = space_from_dict({"weight": {"float": {"exp": "2..5", "man": "1..3"}},
                           "activation": {"float": {"exp": "4..5", "man": "2..3"}}}).configs()  # 48


def family_job(sensitivity, range_need):
    return Job(f"family-{sensitivity}-{range_need}", family_error,
               (("sensitivity", sensitivity), ("range_need", range_need)), PROFILE, (BIT_OPS,),
               objectives=("error", "bit_ops"))


def test_store_to_meta_to_csv_round_trip_and_end_to_end_frontier(tmp_path):
    db = tmp_path / "history.db"
    params = list(itertools.product((0.5, 1.0, 2.0), (0.01, 0.05, 0.2)))
    with ResultStore(db) as store, cf.ThreadPoolExecutor(2) as pool:
        for s, r in params:
            run_sweep(family_job(s, r), CONFIGS, store, pool, progress=False)
    meta = MetaData.from_stores([db], costs=("bit_ops",))
    assert meta.errors.shape == (9, len(CONFIGS)) and not np.isnan(meta.errors).any()
    again = MetaData.from_csv(meta.to_csv(tmp_path / "meta.csv"))
    assert again.tasks == meta.tasks and again.configs == meta.configs
    np.testing.assert_allclose(again.errors, meta.errors, rtol=1e-5)
    np.testing.assert_allclose(again.costs["bit_ops"], meta.costs["bit_ops"], rtol=1e-5)

    new = family_job(1.5, 0.1)
    with ResultStore(tmp_path / "new.db") as store, cf.ThreadPoolExecutor(2) as pool:
        estimate = meta_frontier(new, CONFIGS, store, 4, meta, executor=pool)
        assert len(store) == 4
    truth = np.array([family_error(c, 1.5, 0.1)["error"] for c in CONFIGS])
    metrics = meta_metrics(truth, estimate)
    assert metrics["rmse"] < 1e-3 and metrics["evaluations_saved"] == len(CONFIGS) - 4
    # every true frontier configuration is recommended; extras are near-ties within the prediction error
    assert metrics["recall"] == 1.0 and metrics["epsilon"] < 1e-3
    points = np.column_stack([truth, estimate.costs["bit_ops"]])
    assert set(estimate.recommended) >= {c for c, m in zip(CONFIGS, pareto_mask(points)) if m}


def test_bad_input_is_rejected_with_the_reason(tmp_path):
    configs = grid_configs(5)
    with pytest.raises(ValueError, match="does not match 3 tasks x 5 configurations"):
        MetaData(("a", "b", "c"), tuple(configs), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="infinite"):
        MetaData.from_array([[1.0, np.inf, 1, 1, 1]], configs)
    with pytest.raises(ValueError, match="row 1 has no observed entries"):
        complete([[1.0, 2.0], [np.nan, np.nan]], 1)
    meta = MetaData.from_array(np.arange(15.0).reshape(3, 5), configs)
    model = LowRankModel.fit(meta, rank=1)
    with pytest.raises(ValueError, match="no observations"):
        estimate_row(model, [], [])
    with pytest.raises(ValueError, match="finite"):
        estimate_row(model, [0, 1], [1.0, np.nan])
    with pytest.raises(ValueError, match=r"k: expected an int in \[1, 5\]"):
        design(model, 6)
    with pytest.raises(ValueError, match="not columns of the meta-data"):
        meta.select([Config.from_dict({"weight": "bf16"})])
    with pytest.raises(ValueError, match="rank"):
        complete(meta.errors, 4)
    with pytest.raises(ValueError, match="logit"):
        LowRankModel.fit(meta.from_array(np.full((2, 5), 150.0), configs), rank=1, transform="logit")
    with ResultStore(tmp_path / "r.db") as store:
        with pytest.raises(ValueError, match=r"k: expected an int in \[1, 48\]"):
            meta_frontier(family_job(1.0, 0.1), CONFIGS, store, 49,
                          MetaData.from_array(np.ones((2, len(CONFIGS))), CONFIGS))


def test_shipped_matrix_covers_the_grid_of_the_command_that_made_it():
    from qsim.sweep.meta import load_meta
    from qsim.sweep.meta_tasks import META_TASKS, meta_configs

    meta = load_meta()
    assert meta.tasks == tuple(f"meta/{name}" for name in META_TASKS) and len(meta.tasks) >= 20
    assert meta.configs == tuple(meta_configs()) and len(meta.configs) >= 40
    assert np.isfinite(meta.errors).all() and ((meta.errors >= 0) & (meta.errors <= 100)).all()
    assert (meta.costs["memory_kib"] > 0).all()


def test_a_meta_task_trains_and_reports_its_error():
    from qsim.sweep.meta_tasks import make_meta_job, meta_configs

    job = make_meta_job("digits-linear")
    wide, narrow = meta_configs()[-1], meta_configs()[0]  # float<e5m2> with e8m12 optimizer; e3m1 with e5m5
    assert job.call(wide, 0)["error"] < 20.0  # a linear model on digits: about 10% test error
    assert job.call(narrow, 0)["error"] > 50.0  # 5-bit floats flush the gradients: no better than chance
    with pytest.raises(ValueError, match="task"):
        make_meta_job("no-such-task")


MATMUL_SPACE = """
[sweep]
job = "matmul"
[job]
m = 8
k = 32
n = 8
[space]
weight = { float = { exp = "3..4", man = "1..4" } }
activation = ["float<e4m2>", "float<e5m3>", "bf16"]
"""


def test_cli_estimates_a_new_task_from_history_and_reports_closeness(tmp_path, capsys):
    from qsim.cli import main
    from qsim.sweep.jobs import make_matmul_job

    space = tmp_path / "space.toml"
    space.write_text(MATMUL_SPACE)
    configs = space_from_dict({"weight": {"float": {"exp": "3..4", "man": "1..4"}},
                               "activation": ["float<e4m2>", "float<e5m3>", "bf16"]}).configs()
    with ResultStore(tmp_path / "history.db") as store, cf.ThreadPoolExecutor(2) as pool:
        for m, k, rounding in itertools.product((4, 16), (16, 64), ("nearest", "stochastic")):
            run_sweep(make_matmul_job(m, k, 8, rounding), configs, store, pool, progress=False)
    meta_csv = MetaData.from_stores([tmp_path / "history.db"], costs=("bit_ops",)).to_csv(tmp_path / "meta.csv")
    assert len(MetaData.from_csv(meta_csv).tasks) == 8  # one job name, eight parameter sets: eight tasks
    args = ["sweep", str(space), "--executor", "thread", "--out", str(tmp_path / "out"), "--no-progress",
            "--budget", "5", "--estimate", "meta", "--meta", str(meta_csv), "--compare"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "5 of 24 configurations run" in printed and "estimated Pareto frontier of matmul" in printed
    assert "measured" in printed and "(19 saved): recall" in printed
    assert "recall: share of the true frontier's points" in " ".join(printed.split())  # the legend
    assert (tmp_path / "out" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["sweep", str(space), "--out", str(tmp_path / "o2"), "--estimate", "meta", "--meta", str(meta_csv)]) == 2
    assert "needs --budget" in capsys.readouterr().err


def family_error_diverging(config, sensitivity: float, range_need: float):
    """family_error, except that the narrowest configuration diverges."""
    narrowest = config.get("weight") == "float<e2m1>" and config.get("activation") == "float<e4m2>"
    return {"error": float("nan")} if narrowest else family_error(config, sensitivity, range_need)


def test_a_diverged_run_is_left_out_or_scored_as_told(tmp_path):
    meta = MetaData.from_array([[family_error(c, s, r)["error"] for c in CONFIGS] for s, r in ((1, 0.1), (2, 0.05))],
                               CONFIGS)
    job = Job("diverging", family_error_diverging, (("sensitivity", 1.5), ("range_need", 0.1)), PROFILE, (BIT_OPS,),
              objectives=("error", "bit_ops"))
    narrowest = CONFIGS.index(Config.from_dict({"weight": "float<e2m1>", "activation": "float<e4m2>"}))
    with ResultStore(tmp_path / "r.db") as store, cf.ThreadPoolExecutor(2) as pool:
        with pytest.warns(UserWarning, match="no finite error"):
            left_out = meta_frontier(job, CONFIGS, store, len(CONFIGS), meta, executor=pool, rank=2)
        scored = meta_frontier(job, CONFIGS, store, len(CONFIGS), meta, executor=pool, rank=2, diverged_error=99.0)
    assert left_out.measured.sum() == len(CONFIGS) - 1 and not left_out.measured[narrowest]
    assert scored.measured.all() and scored.errors[narrowest] == 99.0


def test_wide_csv_with_unknown_entries_and_per_configuration_costs(tmp_path):
    configs = grid_configs(3)
    path = tmp_path / "wide.csv"
    path.write_text("task," + ",".join(c.label() for c in configs) + "\nresnet,12.5,,30\nvit,nan,8,20.25\n")
    meta = MetaData.from_csv(path, costs={"memory_kib": [1.0, 2.0, 3.0]})
    assert meta.tasks == ("resnet", "vit") and meta.configs == tuple(configs)
    np.testing.assert_array_equal(meta.errors, [[12.5, np.nan, 30.0], [np.nan, 8.0, 20.25]])
    np.testing.assert_array_equal(meta.costs["memory_kib"], [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"costs\['memory_kib'\]"):
        MetaData.from_csv(path, costs={"memory_kib": [1.0, 2.0]})
    path.write_text("name,a\n")
    with pytest.raises(ValueError, match="first column is 'task'"):
        MetaData.from_csv(path)
