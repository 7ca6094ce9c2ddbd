"""Run a job over configurations on any concurrent.futures.Executor, storing each result as it finishes.

Exports `run_sweep`, `default_executor` (a 2-process pool, forkserver context, one torch thread per
worker), `as_executor` (accepts an Executor or a dask.distributed Client) and `evaluate` (the
function each worker runs). The main process computes the costs of every configuration first (they
are pure functions of the model and the formats, so bad input fails before any work), submits what
the store lacks, and commits each result from the main process as its future completes. A job that
raises is stored as status "error" with its message; one that returns NaN or inf is "diverged"; one
that returns anything but a dict of real numbers is a bug in the job and stops the sweep with TypeError.
"""
from __future__ import annotations

import concurrent.futures as cf
import datetime
import functools
import math
import multiprocessing
import numbers
import platform
import random
import time
import traceback
import warnings
from dataclasses import dataclass
from importlib import metadata

from tqdm.auto import tqdm

from qsim.nn.quantizer import FlushWarning

from .job import Job, config_seed, result_key
from .space import Config
from .store import Record, ResultStore


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: status, metrics, message, wall time and its library versions."""

    status: str
    metrics: dict
    message: str
    wall_s: float
    versions: dict


@dataclass(frozen=True)
class SweepSummary:
    """Counts for one run_sweep call: configurations in total, skipped (already stored), and new results."""

    total: int
    skipped: int
    ok: int
    diverged: int
    error: int


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("qsim", "torch", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _init_worker(threads: int) -> None:
    """One torch thread per worker; Ctrl-C is the main process's to handle (it stores what finished and
    stops the pool): a worker that died of it would break the pool mid-shutdown and print tracebacks."""
    import signal

    import torch
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _bad_metrics(metrics) -> str | None:
    """Why `metrics` is not a dict of real numbers, or None when it is."""
    if not isinstance(metrics, dict) or not metrics:
        return f"expected a non-empty dict of metric name -> number, got {type(metrics).__name__}: {metrics!r:.200}"
    for name, value in metrics.items():
        if not isinstance(name, str):
            return f"metric names must be strings, got {name!r}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"metric {name!r} is {type(value).__name__} {value!r:.100}, expected a real number"
    return None


def evaluate(job: Job, config: Config, seed: int) -> Outcome:
    """Seed python, numpy and torch with `seed`, run the job, classify the outcome. Runs in a worker."""
    start = time.perf_counter()
    try:
        _seed_everything(seed)
        with warnings.catch_warnings():
            # A sweep tries narrow formats on purpose; the metrics record what flushing cost, so the
            # per-tensor warnings would only bury the progress bar.
            warnings.simplefilter("ignore", FlushWarning)
            metrics = job.call(config, seed)
    except Exception as err:  # the job's failure is a result to record, not a crash of the sweep
        lines = traceback.format_exception_only(type(err), err)
        return Outcome("error", {}, "".join(lines).strip(), time.perf_counter() - start, library_versions())
    wall = time.perf_counter() - start
    bad = _bad_metrics(metrics)
    if bad is not None:
        return Outcome("invalid", {}, bad, wall, library_versions())
    metrics = {name: float(value) for name, value in metrics.items()}
    diverged = [name for name, value in metrics.items() if not math.isfinite(value)]
    if diverged:
        return Outcome("diverged", metrics, f"non-finite metrics: {diverged}", wall, library_versions())
    return Outcome("ok", metrics, "", wall, library_versions())


def default_executor(workers: int = 2) -> cf.ProcessPoolExecutor:
    """A process pool with the forkserver context (torch is not fork-safe) and one torch thread per worker."""
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"),
                                  initializer=_init_worker, initargs=(1,))


def as_executor(executor) -> cf.Executor:
    """An Executor as is; a dask.distributed Client through its concurrent.futures adapter."""
    if isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor") and hasattr(executor, "submit"):
        return executor.get_executor()
    raise TypeError(f"executor: expected a concurrent.futures.Executor or a dask.distributed.Client, got {executor!r}")


def run_sweep(job: Job, configs, store: ResultStore, executor=None, seed: int = 0, progress: bool = True,
              retry_errors: bool = False) -> SweepSummary:
    """Evaluate every configuration the store lacks; return counts. `executor=None` uses (and shuts
    down) `default_executor()`; a given executor is left running. Errors stored by an earlier run are
    evaluated again when `retry_errors`."""
    configs = list(configs)
    if not configs:
        raise ValueError("configs: empty; nothing to sweep")
    if not isinstance(job, Job):
        raise TypeError(f"job: expected a qsim.sweep.Job, got {type(job).__name__}")
    job.check(configs)
    stored = store.statuses()
    keys = {config: result_key(job, config, seed) for config in configs}
    todo = [c for c in configs if keys[c] not in stored or (retry_errors and stored[keys[c]] == "error")]
    costs = {config: job.costs_of(config) for config in todo}
    counts = {"ok": 0, "diverged": 0, "error": 0}
    if todo:
        own = executor is None
        pool = default_executor() if own else as_executor(executor)
        futures = {}
        try:
            for config in todo:
                futures[pool.submit(evaluate, job, config, config_seed(seed, config))] = config
            with tqdm(total=len(todo), desc=f"sweep {job.name}", unit="config", disable=not progress) as bar:
                for future in cf.as_completed(futures):
                    config = futures[future]
                    outcome = future.result()
                    if outcome.status == "invalid":
                        raise TypeError(f"job {job.name!r} returned bad metrics for {config.label()!r}: "
                                        f"{outcome.message}")
                    store.add(Record(keys[config], job.name, dict(job.params), config, config_seed(seed, config),
                                     outcome.status, outcome.message, outcome.metrics, costs[config],
                                     outcome.wall_s, outcome.versions,
                                     datetime.datetime.now(datetime.timezone.utc).isoformat()),
                              replace=retry_errors)
                    counts[outcome.status] += 1
                    bar.update(1)
                    bar.set_postfix(counts)
        finally:
            for future in futures:
                future.cancel()
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
    return SweepSummary(len(configs), len(configs) - len(todo), counts["ok"], counts["diverged"], counts["error"])
