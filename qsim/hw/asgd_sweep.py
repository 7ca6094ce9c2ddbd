"""Sweeps of asynchronous SGD over (DMGC, obstinate q, workers) on qsim.sweep: stored, resumable, a frontier.

Exports `make_asgd_job(...)` -> a qsim.sweep Job whose
configurations are points of the grid (axes "dmgc", "obstinate_q", "workers"), `asgd_job` (what one
configuration runs) and `sweep(problem, workers=..., dmgc=..., obstinate_q=..., store=...)`, also
reachable as `qsim.hw.asgd.sweep`, which runs the grid through `qsim.sweep.run_sweep` (each result
committed to the SQLite store as it finishes; a rerun or an interrupted sweep runs only what is missing)
and returns the results with their time-to-target / energy-to-target frontier.

A stored result must not depend on which other configurations a sweep holds, so the target loss is
fixed by the job (asgd.run instead measures it against the best loss of its runs): by default the loss
that full-precision sequential SGD (one worker, D32M32G32C32) reaches in the same iterations, plus
`target_fraction` of the way back to the loss at w = 0. A configuration that never reaches the target
has infinite time and energy to target, which the sweep stores as status "diverged".
Every configuration runs with the same simulation seed (common random numbers: the same samples in the
same order), so differences between configurations are theirs, not the draw's.

    from qsim.hw import asgd
    sweep = asgd.sweep("digits", workers=[1, 4, 16], dmgc=["D32M32G32C32", "D8M16G16C16"],
                       obstinate_q=[0.0, 0.5, 0.9], store="asgd.db", iterations=2000)
    sweep.results[sweep.results["on_frontier"]]     # time_to_target_ms vs energy_to_target_uj
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qsim.sweep import Job, ResultStore, SweepSummary, frontier, grid_space, result_key, run_sweep

from . import asgd
from .asgd_report import AsgdReport
from .coherence import load_multicore, obstinacy
from .dmgc import parse_dmgc

AXES = frozenset({"dmgc", "obstinate_q", "workers"})
OBJECTIVES = ("time_to_target_ms", "energy_to_target_uj")
UNITS = (("time_to_target_ms", "ms"), ("energy_to_target_uj", "µJ"), ("cycles_per_iteration", "cycles"),
         ("energy_per_iteration_nj", "nJ"), ("iterations_per_s", "1/s"))


@functools.lru_cache(maxsize=4)
def _problem(name: str, options: str) -> asgd.Problem:
    """A problem by name and its factory's keyword arguments (JSON, so that the cache can key on them)."""
    if name not in asgd.PROBLEMS:
        raise ValueError(f"problem: expected one of {sorted(asgd.PROBLEMS)}, got {name!r}")
    try:
        return asgd.PROBLEMS[name](**json.loads(options))
    except TypeError as err:
        raise ValueError(f"problem_options for {name!r}: {err}") from None


def asgd_job(config, problem: str, problem_options: dict, accelerator: str, iterations: int, step_size: float,
             rounding: str, target_loss: float, run_seed: int, max_ignored: int | None) -> dict:
    """One configuration: its row of asgd.run's table at the job's target loss, numeric columns only."""
    data = _problem(problem, json.dumps(problem_options, sort_keys=True))
    trace = asgd.simulate(data, config.value("workers"), config.value("dmgc"), config.value("obstinate_q"),
                          accelerator, iterations, step_size=step_size, rounding=rounding, seed=run_seed,
                          max_ignored=max_ignored)
    row = AsgdReport(data.name, trace.extra["machine"], [trace], target_loss, ()).row(trace)
    return {name: float(value) for name, value in row.items()
            if isinstance(value, (int, float, np.number)) and name not in ("workers", "q")}


def make_asgd_job(problem: str = "digits", problem_options: dict | None = None, accelerator: str = "multicore_16",
                  iterations: int = 4000, step_size: float = 0.05, rounding: str = "stochastic",
                  target_loss: float | None = None, target_fraction: float = 0.05, run_seed: int = 0,
                  max_ignored: int | None = None) -> Job:
    """The sweep job of one problem, machine and run length (all part of every result key); its
    configurations give the axes dmgc, obstinate_q and workers. Bad arguments fail here, before any run."""
    options = dict(problem_options or {})
    data = _problem(problem, json.dumps(options, sort_keys=True))
    asgd.check_settings(iterations, step_size, rounding)
    obstinacy(0.0, max_ignored)
    if target_loss is None:
        if not 0 <= target_fraction < 1:
            raise ValueError(f"target_fraction must be in [0, 1), got {target_fraction!r}")
        reference = asgd.simulate(data, 1, "D32M32G32C32", 0.0, accelerator, iterations, step_size=step_size,
                                  rounding=rounding, seed=run_seed, records=1)
        start = float(data.objective(np.zeros(data.features)))
        target_loss = float(reference.loss[-1]) + target_fraction * (start - float(reference.loss[-1]))
    params = {"problem": problem, "problem_options": options, "accelerator": str(accelerator),
              "iterations": iterations, "step_size": step_size, "rounding": rounding,
              "target_loss": float(target_loss), "run_seed": run_seed, "max_ignored": max_ignored}
    return Job(f"asgd-{problem}", asgd_job, tuple(params.items()), units=UNITS, keys=frozenset(),
               objectives=OBJECTIVES, axes=AXES)


@dataclass(frozen=True)
class AsgdSweep:
    """What `sweep` ran (`summary`: how many were stored already) and every configuration's stored result,
    with an `on_frontier` column over `objectives`."""

    job: Job
    summary: SweepSummary
    results: pd.DataFrame
    objectives: tuple[str, ...]


def _checked_grid(workers, dmgc, obstinate_q, accelerator) -> list:
    """The grid's configurations, each value checked the way asgd.simulate will check it."""
    as_list = asgd._as_list
    machine = load_multicore(accelerator)
    for w in as_list(workers):
        asgd._check_count("workers", w)
        if w > machine.cores:
            raise ValueError(f"workers={w}: {machine.name} has {machine.cores} cores (one worker per core)")
    for q in as_list(obstinate_q):
        obstinacy(q)
    for signature in as_list(dmgc):
        if not isinstance(signature, str):
            raise ValueError(f"dmgc: a sweep stores signatures as strings such as 'D8M8G16C8', got {signature!r}")
        parse_dmgc(signature)
    return grid_space(dmgc=as_list(dmgc), obstinate_q=[float(q) for q in as_list(obstinate_q)],
                      workers=[int(w) for w in as_list(workers)]).configs()


def sweep(problem="digits", workers=(1,), dmgc=("D32M32G32C32",), obstinate_q=(0.0,), store="asgd.db",
          executor=None, seed=0, progress=False, objectives=OBJECTIVES, **job_options) -> AsgdSweep:
    """Runs (or resumes) every workers x dmgc x obstinate_q configuration of `problem` (a name in
    asgd.PROBLEMS; its factory's arguments in problem_options=) and returns the stored results with their frontier.
    `store`: a path or an open qsim.sweep.ResultStore; `executor`: as qsim.sweep.run_sweep (None: two
    threads, enough since the compiled simulation releases the GIL; no process start-up); `seed`: the sweep seed and the simulation seed of every configuration; `job_options`:
    make_asgd_job's (accelerator, iterations, step_size, rounding, target_loss, target_fraction, ...)."""
    job = make_asgd_job(problem, run_seed=seed, **job_options)
    configs = _checked_grid(workers, dmgc, obstinate_q, dict(job.params)["accelerator"])
    with contextlib.ExitStack() as stack:
        if not isinstance(store, ResultStore):
            store = stack.enter_context(ResultStore(Path(store)))
        if executor is None:
            executor = stack.enter_context(cf.ThreadPoolExecutor(2))
        summary = run_sweep(job, configs, store, executor=executor, seed=seed, progress=progress)
        keys = {result_key(job, config, seed) for config in configs}
        frame = store.to_dataframe(job.name)
    return AsgdSweep(job, summary, frontier(frame[frame["key"].isin(keys)].reset_index(drop=True), objectives),
                     tuple(objectives))
