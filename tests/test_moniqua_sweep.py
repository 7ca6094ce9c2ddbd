"""Moniqua grids on the sweep machinery: every grid point stored once, a second call resumes (runs nothing),
and a stored result is the decentralized run it names."""
import concurrent.futures as cf

import pytest
import torch

from qsim.moniqua import Communication, decentralized_sgd, gossip_matrix, moniqua_bits
from qsim.moniqua_sweep import DIM, DigitsLogistic, digits_job, message_format, run_moniqua_grid
from qsim.sweep import Config, ResultStore
from qsim.sweep.job import config_seed


def test_grid_is_stored_and_resumable(tmp_path):
    grid = dict(bits=(2, 8), graphs=(("ring", 4),), methods=("moniqua",), steps=5, theta=2.0)
    with ResultStore(tmp_path / "results.db") as store, cf.ThreadPoolExecutor(1) as pool:
        first = run_moniqua_grid(store, executor=pool, **grid)
        assert {name: (s.total, s.ok) for name, s in first.items()} == \
            {"moniqua-full-ring-4": (1, 1), "moniqua-moniqua-ring-4": (2, 2)}
        again = run_moniqua_grid(store, executor=pool, **grid)
        assert all(s.skipped == s.total and s.ok == 0 for s in again.values())
        table = store.to_dataframe("moniqua-moniqua-ring-4").set_index("cfg.weight")
    assert set(table.index) == {moniqua_bits(2).spec, moniqua_bits(8).spec}
    # 4 workers × 2 neighbours × 650 parameters × b bits × 5 iterations
    assert table.loc[moniqua_bits(2).spec, "mbit"] == pytest.approx(4 * 2 * DIM * 2 * 5 / 1e6)
    # The stored loss is the run's: recompute it directly with the seed the store recorded.
    config = Config.from_dict({"weight": moniqua_bits(2).spec})
    seed = config_seed(0, config)
    problem = DigitsLogistic()
    direct = decentralized_sgd(problem.gradients(4, seed), torch.zeros(DIM), gossip_matrix("ring", 4), 5, 0.5,
                               Communication("moniqua", moniqua_bits(2), theta=2.0), loss=problem.loss, seed=seed)
    assert table.loc[moniqua_bits(2).spec, "loss"] == pytest.approx(direct["loss"][-1], rel=1e-12)


def test_message_formats_and_bad_graphs():
    assert message_format("moniqua", 2) == "fixed<2,2,unsigned,wrap>"
    assert message_format("naive", 4) == "fixed<4,3>"
    with pytest.raises(ValueError, match="graph"):
        run_moniqua_grid(None, graphs=(("star", 8),))
    metrics = digits_job(Config.from_dict({}), seed=1, graph="complete", workers=3, method="full", steps=2, lr=0.5,
                         theta=1.0, scale=1.0)
    assert set(metrics) == {"loss", "error", "mbit"} and metrics["mbit"] == 3 * 2 * DIM * 32 * 2 / 1e6
