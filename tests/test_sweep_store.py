"""Result store and runner: results survive SIGKILL of the sweep process, a rerun computes only what is
missing, failures are recorded and do not stop the sweep, bad metrics stop it with a clear error,
and exports round-trip."""
import concurrent.futures as cf
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from qsim.sweep.job import Job
from qsim.sweep.runner import run_sweep
from qsim.sweep.space import Config
from qsim.sweep.store import ResultStore

CONFIGS = [Config.from_dict({"weight": w, "activation": a})
           for w in ("bf16", "fp16", "fp8_e4m3", "fp8_e5m2") for a in ("bf16", "fp8_e4m3", "fp8_e5m2")]


def bits_job(config, seed, log=None, delay=0.0):
    """Analytic: error = 1 / (weight bits * activation bits), logged so a test can count evaluations."""
    from qsim import formats

    if log:
        with open(log, "a") as f:
            f.write(config.label() + "\n")
    time.sleep(delay)
    bits = formats.get(config.get("weight")).bits_per_element * formats.get(config.get("activation")).bits_per_element
    return {"error": 1.0 / bits, "seed_echo": float(seed)}


def failing_job(config):
    if config.get("weight") == "fp16":
        raise RuntimeError("overflow in layer 3")
    if config.get("weight") == "fp8_e5m2":
        return {"error": math.nan}
    return {"error": 1.0}


def test_failures_are_recorded_and_the_sweep_continues(tmp_path):
    job = Job("failing", failing_job)
    with ResultStore(tmp_path / "r.db") as store, cf.ThreadPoolExecutor(2) as pool:
        summary = run_sweep(job, CONFIGS, store, pool, progress=False)
        assert (summary.ok, summary.diverged, summary.error) == (6, 3, 3)
        df = store.to_dataframe()
        errors = df[df["status"] == "error"]
        assert set(errors["cfg.weight"]) == {"fp16"} and errors["message"].str.contains("overflow in layer 3").all()
        assert df.loc[df["status"] == "diverged", "error"].isna().all()
        # a rerun evaluates nothing; retry_errors evaluates exactly the three errors again
        assert run_sweep(job, CONFIGS, store, pool, progress=False).skipped == 12
        retry = run_sweep(job, CONFIGS, store, pool, progress=False, retry_errors=True)
        assert (retry.skipped, retry.error) == (9, 3) and len(store) == 12


@pytest.mark.parametrize("result, message", [({"error": "low"}, "metric 'error' is str"),
                                             ([0.1], "expected a non-empty dict")])
def test_non_numeric_metrics_stop_the_sweep_with_type_error(tmp_path, result, message):
    job = Job("bad", lambda config: result)
    with ResultStore(tmp_path / "r.db") as store, cf.ThreadPoolExecutor(1) as pool:
        with pytest.raises(TypeError, match=message):
            run_sweep(job, CONFIGS[:2], store, pool, progress=False)
        assert len(store) == 0


def test_records_hold_config_costs_seed_versions_and_export_round_trips(tmp_path):
    job = Job("bits", bits_job)
    with ResultStore(tmp_path / "r.db") as store, cf.ThreadPoolExecutor(2) as pool:
        run_sweep(job, CONFIGS[:4], store, pool, seed=3, progress=False)
        df = store.to_dataframe("bits")
        assert (df["seed"] == df["seed_echo"]).all() and df["seed"].nunique() == 4
        assert set(store.records()[0].versions) == {"python", "qsim", "torch", "numpy"}
        for suffix, read in ((".csv", pd.read_csv), (".parquet", pd.read_parquet)):
            back = read(store.export(tmp_path / f"r{suffix}", "bits"))
            assert sorted(back["key"]) == sorted(df["key"])
            assert back.set_index("key")["error"].to_dict() == pytest.approx(df.set_index("key")["error"].to_dict())
        with pytest.raises(ValueError, match="csv or .parquet"):
            store.export(tmp_path / "r.xlsx")


SWEEP_SCRIPT = textwrap.dedent("""
    import concurrent.futures as cf, sys
    sys.path.insert(0, {tests!r})
    from test_sweep_store import CONFIGS, bits_job
    from qsim.sweep.job import Job
    from qsim.sweep.runner import run_sweep
    from qsim.sweep.store import ResultStore
    job = Job("bits", bits_job, (("log", {log!r}), ("delay", {delay})))
    with ResultStore({db!r}) as store, cf.ThreadPoolExecutor(2) as pool:
        run_sweep(job, CONFIGS, store, pool, progress=False)
""")


def stored_rows(db):
    if not Path(db).exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT key, config, finished_at FROM results").fetchall()
        except sqlite3.OperationalError:  # the table does not exist yet
            return []


def test_sigkill_mid_sweep_loses_no_finished_result_and_rerun_completes_the_rest(tmp_path):
    db, log = str(tmp_path / "r.db"), str(tmp_path / "calls.log")
    script = SWEEP_SCRIPT.format(tests=str(Path(__file__).parent), log=log, delay=0.4, db=db)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(stored_rows(db)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    before = stored_rows(db)
    assert 3 <= len(before) < len(CONFIGS), "the kill must land mid-sweep"
    calls_before = Path(log).read_text().splitlines()

    rerun = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert rerun.returncode == 0
    after = stored_rows(db)
    keys = [row[0] for row in after]
    assert len(keys) == len(set(keys)) == len(CONFIGS)
    assert set(before) <= set(after), "a stored result was changed or lost"
    calls_after = Path(log).read_text().splitlines()[len(calls_before):]
    stored_labels = {Config.from_dict(__import__("json").loads(row[1])).label() for row in before}
    assert sorted(calls_after) == sorted({c.label() for c in CONFIGS} - stored_labels), \
        "the rerun must evaluate exactly the configurations without a stored result"
