"""Budgeted frontier estimation: find the error/cost frontier while evaluating only part of the space.

Exports `config_features`, `active_frontier` and `BudgetResult`.

Why it works. The costs of every configuration are known before any training (qsim.sweep.costs), so
only the error is uncertain. `active_frontier` evaluates a small spread-out design first, fits a
Gaussian process to error as a function of each role's format (its storage bits and log2 of its
largest value), and then repeatedly evaluates the configurations that could still be on the
frontier: those non-dominated when unevaluated errors are replaced by an optimistic bound
(mean - kappa * std). It stops when the budget is spent or when no unevaluated configuration can
reach the frontier even optimistically. Evaluations go through `run_sweep`, so they are stored
and a later full sweep reuses them; `compare_frontiers` says how close the estimate came.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .costs import format_bits
from .frontier import pareto_mask
from .job import Job, result_key
from .runner import as_executor, default_executor, run_sweep
from .space import Config
from .store import ResultStore


def config_features(configs) -> np.ndarray:
    """(n, 2 * keys) features: for each config key seen, the format's bits and log2(max); fp32 when absent."""
    from qsim import formats

    keys = sorted({key for config in configs for key, _ in config.formats})
    fp32_range = math.log2(formats.get("fp32").max)

    def feature(spec):
        return (32.0, fp32_range) if spec is None else (format_bits(spec), math.log2(formats.get(spec).max))

    return np.array([[v for key in keys for v in feature(config.as_dict().get(key))] for config in configs],
                    dtype=float).reshape(len(configs), 2 * len(keys))


@dataclass(frozen=True)
class BudgetResult:
    """The configurations evaluated (in order), the estimated frontier among them, and whether the
    search stopped before the budget because no other configuration could reach the frontier."""

    evaluated: tuple[Config, ...]
    frontier: tuple[Config, ...]
    converged: bool


def _initial_design(costs: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """The cheapest and dearest configuration on each cost, then random picks, `count` in all."""
    chosen = []
    for column in costs.T:
        for idx in (int(np.argmin(column)), int(np.argmax(column))):
            if idx not in chosen:
                chosen.append(idx)
    rest = [i for i in rng.permutation(len(costs)) if i not in chosen]
    return (chosen + rest)[:count]


def _surrogate(features: np.ndarray, errors: np.ndarray, seed: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    center = features.mean(axis=0)
    kernel = ConstantKernel(1.0) * RBF(np.ones(features.shape[1]), (1e-2, 1e3)) + WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed)
    with warnings.catch_warnings():
        # noise-free objectives drive the noise level to its bound; the fit is still the one we want
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit((features - center) / scale, errors)
    return lambda x: gp.predict((x - center) / scale, return_std=True)


def active_frontier(job: Job, configs, store: ResultStore, budget: int, objectives=None, executor=None,
                    seed: int = 0, batch: int = 2, kappa: float = 1.0, initial: int | None = None,
                    progress: bool = False) -> BudgetResult:
    """Estimate the frontier of (first objective: a metric, the others: costs) with at most `budget`
    evaluations (configurations already in the store count too)."""
    configs = list(configs)
    objectives = tuple(objectives or job.objectives)
    job.check_objectives(objectives, estimating=True)
    if not isinstance(budget, int) or not 2 <= budget:
        raise ValueError(f"budget: expected an int >= 2 (configurations to evaluate), got {budget!r}")
    if batch < 1 or kappa < 0:
        raise ValueError(f"batch/kappa: expected batch >= 1 and kappa >= 0, got {batch}, {kappa}")
    job.check(configs)
    budget = min(budget, len(configs))
    costs = np.array([[job.costs_of(c)[o] for o in objectives[1:]] for c in configs])  # (n, k - 1)
    features = config_features(configs)
    rng = np.random.default_rng(seed)
    own = executor is None
    pool = default_executor() if own else as_executor(executor)
    evaluated: list[int] = []
    errors: dict[int, float] = {}

    def run(indices):
        run_sweep(job, [configs[i] for i in indices], store, pool, seed=seed, progress=progress)
        stored = {r.key: r for r in store.records(job.name)}
        for i in indices:
            record = stored[result_key(job, configs[i], seed)]
            value = record.metrics.get(objectives[0], math.nan) if record.status == "ok" else math.nan
            errors[i] = float(value)
            evaluated.append(i)

    converged = False
    try:
        run(_initial_design(costs, initial or max(2, min(budget, math.ceil(budget / 3))), rng))
        while len(evaluated) < budget:
            todo = [i for i in range(len(configs)) if i not in errors]
            if not todo:
                break
            seen = [i for i in evaluated if math.isfinite(errors[i])]
            if len(seen) < 2:
                run(list(rng.choice(todo, size=min(batch, budget - len(evaluated)), replace=False)))
                continue
            worst = max(errors[i] for i in seen)
            fit_idx = list(evaluated)
            fit_err = np.array([errors[i] if math.isfinite(errors[i]) else worst for i in fit_idx])
            mean, std = _surrogate(features[fit_idx], fit_err, seed)(features[todo])
            points = np.vstack([np.column_stack([[errors[i] for i in seen], costs[seen]]),
                                np.column_stack([mean - kappa * std, costs[todo]])])
            optimistic = pareto_mask(points)[len(seen):]
            candidates = [todo[j] for j in np.argsort(-std) if optimistic[j]]
            if not candidates:
                converged = True
                break
            run(candidates[:min(batch, budget - len(evaluated))])
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    ok = [i for i in evaluated if math.isfinite(errors[i])]
    mask = pareto_mask(np.column_stack([[errors[i] for i in ok], costs[ok]])) if ok else []
    return BudgetResult(tuple(configs[i] for i in evaluated), tuple(configs[i] for i, m in zip(ok, mask) if m),
                        converged)
