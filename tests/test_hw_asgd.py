"""Asynchronous low-precision SGD: sequential SGD, closed-form optima, qsim.quantize and bad input as oracles."""
import math

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
import torch

from qsim import formats, quantize
from qsim.hw import asgd
from qsim.hw.dmgc import parse_dmgc, rounding_table


def small_digits(loss="logistic"):
    full = asgd.digits_problem(loss=loss)
    return asgd.Problem(full.X[:300], full.y[:300], loss, full.l2, "digits-300", dense=True)


def sequential_sgd(problem, dmgc, iterations, step, seed):
    """Plain one-core SGD, every rounding through qsim.quantize (nearest), in the simulator's order."""
    precision = parse_dmgc(dmgc)

    def q(x, p):
        if p.fmt is None:
            return float(np.float32(x))
        return float(quantize(torch.tensor([x], dtype=torch.float64), p.fmt, "nearest")[0])

    X = problem.X
    data = np.array([q(v, precision.d) for v in X.data])
    order = np.random.default_rng(seed).integers(0, X.shape[0], (1, iterations))[0]
    w = np.zeros(problem.features)
    for i in order:
        cols, x = X.indices[X.indptr[i]:X.indptr[i + 1]], data[X.indptr[i]:X.indptr[i + 1]]
        z = 0.0
        for t in range(cols.size):
            z += x[t] * w[cols[t]]
        y = problem.y[i]
        coef = {"logistic": lambda: -y / (1.0 + math.exp(y * z)), "least_squares": lambda: z - y,
                "svm": lambda: -y if y * z < 1.0 else 0.0}[problem.loss]()
        before = w[cols].copy()
        for t in range(cols.size):
            g = q(coef * x[t] + problem.l2 * before[t], precision.g)
            u = q(-step * g, precision.c)
            w[cols[t]] = q(w[cols[t]] + u, precision.m)
    return w


@pytest.mark.parametrize("loss,dmgc", [("logistic", "D32M32G32C32"), ("least_squares", "D8M8G16C8"),
                                       ("svm", "D8M16G16C8"), ("logistic", {"D": "fp8_e4m3", "M": "bf16",
                                                                            "G": 32, "C": "fixed<8,6>"})])
def test_one_worker_equals_sequential_sgd_bit_for_bit(loss, dmgc):
    problem = small_digits(loss)
    trace = asgd.simulate(problem, workers=1, dmgc=dmgc, iterations=60, step_size=0.05, rounding="nearest",
                          seed=4, obstinate_q=0.7)
    expected = sequential_sgd(problem, dmgc, 60, 0.05, seed=4)
    np.testing.assert_array_equal(trace.model, expected)
    assert trace.counters["invalidation_sent"] == 0  # alone, nothing to invalidate: q plays no part


def test_full_precision_hogwild_reaches_the_closed_form_least_squares_optimum():
    rng = np.random.default_rng(1)
    n, d = 400, 12
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    y = X @ rng.normal(size=d) + 0.01 * rng.normal(size=n)
    problem = asgd.Problem(sp.csr_matrix(X), y, "least_squares", l2=0.05, dense=True)
    w_star = np.linalg.solve(X.T @ X / n + 0.05 * np.eye(d), X.T @ y / n)
    f_star, f0 = problem.objective(w_star), problem.objective(np.zeros(d))
    trace = asgd.simulate(problem, workers=4, iterations=40_000, step_size=0.02, seed=2)
    assert trace.loss[-1] - f_star < 0.01 * (f0 - f_star)
    assert np.linalg.norm(trace.model - w_star) < 0.1 * np.linalg.norm(w_star)
    assert trace.staleness[1:].sum() == 0  # q = 0: every value read is the coherent one


def test_full_precision_hogwild_reaches_the_scipy_logistic_optimum():
    problem = small_digits("logistic")
    best = scipy.optimize.minimize(problem.objective, np.zeros(problem.features), method="L-BFGS-B")
    f0 = problem.objective(np.zeros(problem.features))
    trace = asgd.simulate(problem, workers=8, iterations=30_000, step_size=0.1, seed=0)
    assert trace.loss[-1] - best.fun < 0.05 * (f0 - best.fun)


def test_obstinate_cache_returns_stale_values_and_cuts_coherence_misses():
    problem = small_digits("logistic")
    runs = {q: asgd.simulate(problem, workers=8, dmgc="D8M8G16C8", obstinate_q=q, iterations=3000, seed=1)
            for q in (0.0, 0.9)}
    assert runs[0.0].staleness[1:].sum() == 0 and runs[0.9].staleness[1:].sum() > 0
    assert runs[0.9].counters["hit_stale"] > 0
    assert runs[0.9].counters["coherence_miss"] < runs[0.0].counters["coherence_miss"]


@pytest.mark.parametrize("fmt", ["fixed<8,5>", "fp8_e4m3", "bf16", "fp6_e3m2", "fixed<16,12>"])
def test_compiled_nearest_rounding_equals_qsim_quantize(fmt):
    precision = parse_dmgc({"D": fmt, "M": 32, "G": 32, "C": 32}).d
    values, even, quantum = rounding_table(precision)
    f = formats.get(fmt)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, 3000) * f.max, (values[:-1] + values[1:]) / 2])  # ties too
    x = x.astype(np.float32).astype(np.float64)
    expected = quantize(torch.from_numpy(x), f, "nearest").numpy()
    rng_state = np.array([0, 1], np.int64)
    for step in {quantum, 0.0}:  # fixed point: the arithmetic path and the table search
        got = np.array([asgd._round(v, values, even, step, False, rng_state) for v in x])
        np.testing.assert_array_equal(got, expected)


def test_compiled_stochastic_rounding_is_unbiased_between_neighbours():
    values, even, quantum = rounding_table(parse_dmgc("D8M8G8C8").m)  # fixed<8,5>: step 1/32
    assert quantum == 1 / 32
    x = 0.3
    by_path = {}
    for step in (quantum, 0.0):
        state = np.array([0, 7], np.int64)
        by_path[step] = np.array([asgd._round(x, values, even, step, True, state) for _ in range(20000)])
    draws = by_path[quantum]
    np.testing.assert_array_equal(draws, by_path[0.0])  # same draws, same results on both paths
    assert set(np.unique(draws)) == {9 / 32, 10 / 32}
    assert abs(draws.mean() - x) < 4 * (1 / 32) * 0.5 / math.sqrt(draws.size)


def test_dmgc_signatures_parse_to_fixed_point_or_float32():
    dmgc = parse_dmgc("D8M8G16C8")
    assert [p.bits for p in (dmgc.d, dmgc.m, dmgc.g, dmgc.c)] == [8, 8, 16, 8]
    assert dmgc.d.fmt == formats.get("fixed<8,6>") and dmgc.g.fmt == formats.get("fixed<16,13>")
    assert parse_dmgc("D32M32G32C32").m.fmt is None
    assert parse_dmgc("D8M8G8C8", integer_bits={"M": 4}).m.fmt == formats.get("fixed<8,3>")
    assert parse_dmgc("D8M8G16C8").signature == "D8M8G16C8"


@pytest.mark.parametrize("signature,message", [
    ("D8X8G16C8", "unknown letter 'X'"), ("D8M8G16", "missing letter"), ("D8M8G16C24", "unknown width 24"),
    ("D0M8G16C8", "unknown width 0"), ("D8D8M8G16C8", "appears twice"), ("8bits", "letter-width pairs"),
    ({"D": 8, "M": "mxfp8_e4m3", "G": 8, "C": 8}, "elementwise grid formats"), ({"Q": 8}, "unknown letter"),
    ({"D": "posit8", "M": 8, "G": 8, "C": 8}, "grid formats")])
def test_bad_dmgc_signatures_are_named(signature, message):
    with pytest.raises(ValueError, match=message):
        parse_dmgc(signature)


def test_bad_run_arguments_are_named():
    problem = small_digits()
    for kwargs, message in [({"workers": 0}, "workers must be an integer >= 1"),
                            ({"workers": 17}, "has 16 cores"),
                            ({"obstinate_q": 1.2}, r"obstinate_q must be a probability in \[0, 1\]"),
                            ({"rounding": "up"}, "rounding must be"),
                            ({"interleave": "lockstep"}, "interleave must be"),
                            ({"step_size": 0.0}, "step_size must be > 0")]:
        with pytest.raises(ValueError, match=message):
            asgd.simulate(problem, iterations=10, **kwargs)
    with pytest.raises(ValueError, match="labels in"):
        asgd.Problem(problem.X, np.arange(problem.X.shape[0]), "logistic")
    with pytest.raises(ValueError, match="loss must be one of"):
        asgd.Problem(problem.X, problem.y, "hinge2")


def test_run_reports_every_configuration_with_time_and_energy_to_target(tmp_path):
    from rich.console import Console

    problem = small_digits("logistic")
    report = asgd.run(problem, workers=[1, 4], dmgc=["D32M32G32C32", "D8M8G16C8"], obstinate_q=[0.0, 0.5],
                      iterations=1500, step_size=0.1, records=30)
    frame = report.to_dataframe()
    assert len(frame) == 8 and set(frame["bound"]) <= {"compute", "bandwidth", "communication"}
    one = frame[frame["workers"] == 1]
    assert (one["invalidations_per_iteration"] == 0).all() and (one["bound"] != "communication").all()
    reached = frame[np.isfinite(frame["iterations_to_target"])]
    assert len(reached) >= 1 and (reached["iterations_to_target"] <= 1500).all()
    assert (reached["time_to_target_ms"] > 0).all() and (reached["energy_to_target_uj"] > 0).all()
    assert (frame[frame["q"] == 0.0]["stale_read_fraction"] == 0).all()
    # Time to target is the roofline-scaled cycle count of the first record at or below the target.
    trace = report.traces[0]
    hit = np.flatnonzero(trace.loss <= report.target_loss)[0]
    assert frame.loc[0, "time_to_target_ms"] == pytest.approx(trace.cycles_at[hit] / (trace.clock_ghz * 1e6))
    csv = report.to_csv(tmp_path / "asgd.csv")
    assert len(csv.read_text().splitlines()) == 9
    assert report.plot(tmp_path / "asgd.png").stat().st_size > 0
    console = Console(record=True, width=220)
    console.print(report)
    text = console.export_text()
    assert "D8M8G16C8" in text and "Assumptions" in text


def test_cli_writes_the_table_and_names_bad_input(tmp_path, capsys):
    from qsim.cli import main

    csv = tmp_path / "asgd.csv"
    assert main(["asgd", "digits", "--workers", "1,2", "--q", "0,0.5", "--iterations", "300",
                 "--dmgc", "D8M16G16C16", "--csv", str(csv)]) == 0
    assert len(csv.read_text().splitlines()) == 5
    assert main(["asgd", "digits", "--q", "2", "--iterations", "10"]) == 2
    assert "qsim: error: obstinate_q must be a probability in [0, 1]" in capsys.readouterr().err


def test_roofline_moves_from_bandwidth_to_compute_with_precision_and_to_communication_with_workers():
    dense = asgd.dense_problem()  # 8 MB at float32: streaming it from DRAM limits one core with a 1 MiB LLC
    runs = {(w, s): asgd.simulate(dense, workers=w, dmgc=s, accelerator="multicore_4_a72", iterations=400)
            for w, s in [(1, "D32M32G32C32"), (1, "D8M16G16C16"), (4, "D32M32G32C32")]}
    assert {key: t.bound for key, t in runs.items()} == {(1, "D32M32G32C32"): "bandwidth",
                                                         (1, "D8M16G16C16"): "compute",
                                                         (4, "D32M32G32C32"): "communication"}
    for t in runs.values():  # the DRAM floor: the bytes DRAM delivered at its bandwidth
        machine = t.extra["machine"]
        floor = t.counters["miss_dram"] * machine.l1.line_bytes / machine.memory.dram_bytes_per_cycle
        assert t.dram_floor_cycles == pytest.approx(floor)
        assert t.total_cycles == pytest.approx(max(t.core_cycles.sum(axis=1).max(), floor))


def test_energy_by_component_follows_the_mac_and_event_counts():
    problem = small_digits("logistic")  # dense: each iteration multiplies and updates all 64 features
    one, many = (asgd.simulate(problem, workers=w, dmgc="D8M16G16C16", iterations=320) for w in (1, 16))
    machine = one.extra["machine"]
    pj = machine.event_energy_pj()
    for t in (one, many):
        c = t.counters
        assert t.extra["macs"] == 2 * 64 * 320
        assert t.energy_pj["compute"] == pytest.approx(2 * 64 * 320 * machine.energy.mac_pj(16, 16, 32, "int"))
        assert t.energy_pj["memory"] == pytest.approx(sum(c[e] * pj[e] for e in ("hit", "hit_stale", "miss_llc",
                                                                                 "miss_dram")))
        assert t.energy_pj["coherence"] == pytest.approx(sum(c[e] * pj[e] for e in (
            "upgrade", "miss_remote", "invalidation_sent", "writeback")))
    assert one.energy_pj["coherence"] == 0 and many.energy_pj["coherence"] > many.energy_pj["compute"]
    assert pj["hit"] < pj["miss_llc"] < pj["miss_dram"]
