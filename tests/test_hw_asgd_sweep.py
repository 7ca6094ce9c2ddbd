"""Asynchronous-SGD sweeps on qsim.sweep: stored results are the simulations they name, an interrupted
sweep resumes with only what is missing, and the frontier is the non-dominated (time, energy) set."""
import concurrent.futures as cf
import dataclasses

import numpy as np
import pytest

from qsim.hw import asgd
from qsim.hw.asgd_sweep import asgd_job, make_asgd_job
from qsim.sweep import ResultStore, grid_space, run_sweep

GRID = dict(workers=[1, 4], dmgc=["D32M32G32C32", "D8M16G16C16"], obstinate_q=[0.0, 0.9])
OPTIONS = dict(iterations=400, step_size=0.1)


def interrupted_job(config, **params):
    """asgd_job, except that the user presses Ctrl-C during the 4-worker, q = 0.9 runs."""
    if config.value("workers") == 4 and config.value("obstinate_q") == 0.9:
        raise KeyboardInterrupt
    return asgd_job(config, **params)


def test_an_interrupted_sweep_resumes_with_only_the_missing_configurations(tmp_path):
    job = make_asgd_job("digits", **OPTIONS)
    configs = grid_space(**GRID).configs()
    with ResultStore(tmp_path / "asgd.db") as store, cf.ThreadPoolExecutor(1) as pool:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(dataclasses.replace(job, fn=interrupted_job), configs, store, executor=pool, progress=False)
        stored = len(store)
        assert stored < len(configs)
        resumed = asgd.sweep("digits", store=store, executor=pool, **GRID, **OPTIONS)
    assert (resumed.summary.total, resumed.summary.skipped) == (8, stored)
    assert resumed.summary.ok + resumed.summary.diverged == 8 - stored
    with cf.ThreadPoolExecutor(1) as pool:
        fresh = asgd.sweep("digits", store=tmp_path / "fresh.db", executor=pool, **GRID, **OPTIONS)
    columns = ["key", "status", "time_to_target_ms", "energy_to_target_uj", "final_loss", "on_frontier"]
    a, b = (s.results[columns].sort_values("key").reset_index(drop=True) for s in (resumed, fresh))
    assert a.equals(b)  # what the interrupted and resumed sweep stored is what one sweep stores


def test_a_stored_result_is_the_simulation_it_names_at_the_reference_target(tmp_path):
    with cf.ThreadPoolExecutor(1) as pool:
        result = asgd.sweep("digits", store=tmp_path / "asgd.db", executor=pool, workers=4, dmgc="D8M16G16C16",
                            obstinate_q=0.9, seed=3, **OPTIONS)
    row = result.results.iloc[0]
    problem = asgd.digits_problem()
    # The default target: sequential full-precision SGD's final loss + 5% of the way back to f(0).
    reference = asgd.simulate(problem, 1, "D32M32G32C32", 0.0, iterations=400, step_size=0.1, seed=3)
    f0 = problem.objective(np.zeros(problem.features))
    target = reference.loss[-1] + 0.05 * (f0 - reference.loss[-1])
    assert dict(result.job.params)["target_loss"] == pytest.approx(target, rel=1e-12)
    report = asgd.run(problem, workers=4, dmgc="D8M16G16C16", obstinate_q=0.9, target_loss=target, seed=3,
                      **OPTIONS)
    expected = report.to_dataframe().iloc[0]
    for name in ("time_to_target_ms", "energy_to_target_uj", "iterations_to_target", "cycles_per_iteration",
                 "coherence_misses_per_iteration", "stale_read_fraction", "final_loss"):
        assert row[name] == expected[name], name
    assert (row["axis.workers"], row["axis.dmgc"], row["axis.obstinate_q"]) == (4, "D8M16G16C16", 0.9)


def test_the_frontier_is_the_non_dominated_time_and_energy_to_target(tmp_path):
    with cf.ThreadPoolExecutor(1) as pool:
        result = asgd.sweep("digits", store=tmp_path / "asgd.db", executor=pool, workers=[1, 4, 16],
                            dmgc=["D32M32G32C32", "D8M8G16C8"], obstinate_q=[0.0, 0.5, 1.0], **OPTIONS)
    table = result.results
    assert len(table) == 18 and set(table["status"]) <= {"ok", "diverged"}
    ok = table[table["status"] == "ok"]
    points = ok[["time_to_target_ms", "energy_to_target_uj"]].to_numpy()
    dominated = [any((q <= p).all() and (q < p).any() for q in points) for p in points]
    assert list(ok["on_frontier"]) == [not d for d in dominated]
    assert not table.loc[table["status"] != "ok", "on_frontier"].any()
    # Never reaching the target is stored as "diverged" (infinite time to target), never on the frontier.
    never = table[table["status"] == "diverged"]
    assert (never["iterations_to_target"] == np.inf).all()


def test_bad_sweeps_fail_before_any_run(tmp_path):
    for kwargs, message in [({"problem": "mnist"}, "problem: expected one of"),
                            ({"problem_options": {"features": 3}}, "problem_options for 'digits'"),
                            ({"workers": 17}, "has 16 cores"), ({"workers": 0}, "workers must be an integer"),
                            ({"obstinate_q": [0.5, 1.5]}, r"obstinate_q must be a probability in \[0, 1\]"),
                            ({"dmgc": "D8M8G16C99"}, "unknown width 99"),
                            ({"dmgc": {"D": 8, "M": 8, "G": 8, "C": 8}}, "signatures as strings"),
                            ({"target_loss": None, "target_fraction": 1.0}, r"target_fraction must be in \[0, 1\)"),
                            ({"iterations": 0}, "iterations must be an integer"),
                            ({"rounding": "up"}, "rounding must be"), ({"max_ignored": -1}, "max_ignored")]:
        with pytest.raises(ValueError, match=message):
            asgd.sweep(store=tmp_path / "asgd.db", **{"target_loss": 0.1, **kwargs})
    with ResultStore(tmp_path / "asgd.db") as store:
        assert len(store) == 0


def test_cli_store_runs_then_resumes(tmp_path, capsys):
    from qsim.cli import main

    args = ["asgd", "digits", "--workers", "1,2", "--q", "0,0.5", "--iterations", "200", "--dmgc", "D8M16G16C16",
            "--store", str(tmp_path / "asgd.db")]
    assert main(args + ["--csv", str(tmp_path / "asgd.csv")]) == 0
    first = capsys.readouterr().out
    assert "4 configurations: 0 already stored" in first and "time vs energy to target" in first
    assert len((tmp_path / "asgd.csv").read_text().splitlines()) == 5
    assert main(args) == 0
    assert "4 configurations: 4 already stored, 0 ok" in capsys.readouterr().out
    assert main(args[:-2] + ["--q", "2", "--store", str(tmp_path / "asgd.db")]) == 2
    assert "qsim: error: obstinate_q must be a probability" in capsys.readouterr().err
