"""Executors: a dask LocalCluster runs the same seeded sweep to the same results as the process pool."""
import pytest

from qsim.sweep.jobs import make_matmul_job
from qsim.sweep.runner import default_executor, run_sweep
from qsim.sweep.space import space_from_dict
from qsim.sweep.store import ResultStore

distributed = pytest.importorskip("dask.distributed")


def test_dask_local_cluster_and_process_pool_store_identical_results(tmp_path):
    """matmul with stochastic rounding: every metric depends on the per-configuration seed."""
    job = make_matmul_job(m=16, k=32, n=16)
    configs = space_from_dict({"weight": ["fp8_e4m3", "fp6_e2m3", "fp4_e2m1"], "activation": ["fp8_e5m2", "bf16"]}).configs()
    with ResultStore(tmp_path / "pool.db") as store, default_executor(2) as pool:
        run_sweep(job, configs, store, pool, seed=5, progress=False)
        by_pool = store.to_dataframe().set_index("key")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, ResultStore(tmp_path / "dask.db") as store:
        run_sweep(job, configs, store, client, seed=5, progress=False)
        by_dask = store.to_dataframe().set_index("key")
    assert sorted(by_pool.index) == sorted(by_dask.index) and len(by_pool) == len(configs)
    assert (by_pool["status"] == "ok").all()
    for column in ("seed", "error", "bit_ops", "activation_kib"):
        assert by_pool[column].to_dict() == by_dask.loc[by_pool.index, column].to_dict()
    assert by_pool["error"].nunique() == len(configs)
