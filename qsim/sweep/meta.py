"""Frontiers of a new task from a few evaluations, by transfer from earlier tasks (PEPPP).

Exports `MetaData` (a tasks x configurations error matrix with NaN where unknown, plus each
configuration's costs per task), `load_meta` (the shipped meta-training matrix), `complete`
(weighted SoftImpute), `choose_rank` (rank by cross-validation), `LowRankModel`, `design`
(adaptive frontier design, greedy D-optimal, cost-aware, random), `MetaEstimate`, `estimate_row`,
`make_estimate`, `meta_frontier` (design, evaluate through run_sweep, predict, frontier),
`frontier_metrics`, `meta_metrics` and `hypervolume_2d`.

Why it works (Yang, Wu, Chee, De Sa, Udell, "How Low Can We Go", ICLR 2022). The test errors of
many tasks trained under many precision configurations form a nearly low-rank matrix: a format
that is too narrow hurts every task, and tasks differ mostly in how sensitive they are. So

    X (tasks x configs) ~ A V^T,   A (tasks x r) task factors, V (configs x r) config factors,

and a new task's row x = V u has only r unknowns: measuring k >= r well-chosen entries and solving
least squares for u predicts the whole row, hence its error/cost frontier (costs are known
without training, qsim.sweep.costs).

1. Completion (PEPPP section 3.1): SoftImpute (Mazumder, Hastie, Tibshirani, JMLR 2010) fills the
   missing entries by iterating  Z <- S(W * X + (1 - W) * Z),  S = truncated SVD to rank r with
   singular values soft-thresholded by lambda. With weights W = 1 on observed entries, 0 on
   missing ones this is SoftImpute; any weights in [0, 1] make it the majorise-minimise step of
   min 1/2 |W^(1/2) * (X - Z)|^2 + lambda |Z|_*, the weighted variant. The rank is given or chosen
   by k-fold cross-validation over the observed entries.
2. Design (PEPPP section 3.2): choose the k columns S that maximise log det(M_S),
   M_S = Sigma^-1 + V_S^T V_S / sigma^2 (the posterior precision of u, with the training tasks'
   factors as prior). Greedily, by the matrix determinant lemma, each step adds the column j with
   the largest gain log(1 + v_j^T M^-1 v_j / sigma^2): the configuration whose error is the least
   known. The cost-aware variant divides that gain by the configuration's cost (information per
   KiB); random picks are the baseline. D-optimal picks favour the formats whose errors differ most
   between tasks, which are rarely on a frontier, so the default of meta_frontier is adaptive: the
   "frontier" design runs one configuration at a time, next the one the posterior is least sure is on
   the frontier, and once the frontier is settled the one that most reduces the expected squared
   error of the predicted row (V-optimal, in the error's units).
3. Prediction: u = argmin |V_S u - y|^2 + sigma^2 (u - mu)^T Sigma^-1 (u - mu): least squares on the
   column factors, pulled toward the average training task (mu, Sigma: mean and covariance of the
   task factors; sigma^2: the completion's residual variance) only as much as the data leave it
   undetermined, so k < r still gives an answer. It gives a predictive standard deviation too;
   measured entries are returned as measured.
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .frontier import compare_frontiers, pareto_mask
from .space import Config

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "meta" / "peppp_tasks.csv"
TRANSFORMS = ("none", "logit")
DESIGNS = ("frontier", "d-optimal", "cost", "random")
_FRONTIER_DRAWS = 64  # rows drawn from the posterior to estimate which configurations are on the frontier
_UNSURE = 0.22  # p (1 - p) from which a configuration's place on the frontier counts as unsettled: p in 0.33..0.67
_SHORT = {"W": "weight", "A": "activation", "E": "error", "G": "gradient", "M": "optimizer_state",
          "Acc": "accumulator", "Wm": "master_weight"}
_LOGIT_EPS = 1e-3  # errors are clipped to [0.1%, 99.9%] before the logit, which is infinite at 0 and 100%


def config_from_label(label: str) -> Config:
    """The configuration that Config.label() printed as `label` ("W=bf16 A=fp8_e4m3", "fp32"). A label
    names a layer group ("fc.W=...") but not its matchers, so a grouped configuration read back from a
    CSV has none: keep such history in result stores (MetaData.from_stores keeps them)."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"configuration label: expected text such as 'W=bf16 A=fp8_e4m3', got {label!r}")
    if label.strip() == "fp32":
        return Config(())
    formats = {}
    for part in label.split():
        key, sep, spec = part.partition("=")
        group, _, short = key.rpartition(".")
        if not sep or not spec or short not in _SHORT:
            raise ValueError(f"configuration label {label!r}: cannot read {part!r}; expected ROLE=FORMAT with ROLE "
                             f"one of {sorted(_SHORT)} (optionally GROUP.ROLE)")
        formats[f"{group}.{_SHORT[short]}" if group else _SHORT[short]] = spec
    return Config.from_dict(formats)


@dataclass(frozen=True, eq=False)
class MetaData:
    """Errors of tasks (rows) under configurations (columns), NaN where unknown, and costs:
    name -> (tasks, configs) array, each task's cost of each configuration (its own model's size)."""

    tasks: tuple[str, ...]
    configs: tuple[Config, ...]
    errors: np.ndarray
    costs: dict = field(default_factory=dict)

    def __post_init__(self):
        errors = np.array(self.errors, dtype=float)
        if errors.ndim != 2:
            raise ValueError(f"errors: expected a (tasks, configurations) matrix, got shape {errors.shape}")
        if errors.shape != (len(self.tasks), len(self.configs)):
            raise ValueError(f"errors: shape {errors.shape} does not match {len(self.tasks)} tasks x "
                             f"{len(self.configs)} configurations")
        if np.isinf(errors).any():
            rows, cols = np.nonzero(np.isinf(errors))
            raise ValueError(f"errors: {len(rows)} infinite entries (first: task {self.tasks[rows[0]]!r}, "
                             f"configuration {self.configs[cols[0]].label()!r}); use NaN for unknown entries")
        if len(set(self.configs)) != len(self.configs):
            raise ValueError("configs: the same configuration appears in two columns")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks: the same task name appears in two rows")
        costs = {}
        for name, values in self.costs.items():
            values = np.asarray(values, dtype=float)
            values = np.broadcast_to(values, errors.shape) if values.shape in ((len(self.configs),), errors.shape) \
                else None
            if values is None or not np.isfinite(values).all():
                raise ValueError(f"costs[{name!r}]: expected finite values per configuration ({len(self.configs)},) "
                                 f"or per task and configuration {errors.shape}")
            costs[name] = np.array(values)
        object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "costs", costs)

    @classmethod
    def from_array(cls, errors, configs, costs=None, tasks=None) -> "MetaData":
        """From a (tasks, configs) array; configs as Config values or their labels."""
        errors = np.asarray(errors, dtype=float)
        configs = tuple(c if isinstance(c, Config) else config_from_label(c) for c in configs)
        tasks = tuple(tasks) if tasks is not None else tuple(f"task{i}" for i in range(len(errors)))
        return cls(tasks, configs, errors, dict(costs or {}))

    @classmethod
    def from_rows(cls, rows, metric: str = "error", costs=("memory_kib",)) -> "MetaData":
        """From long rows (dicts with "task", "config" (a Config or its label), the metric and the costs);
        repeated (task, config) entries (several seeds) are averaged."""
        cells: dict = {}
        task_costs: dict = {}
        for row in rows:
            config = row["config"] if isinstance(row["config"], Config) else config_from_label(row["config"])
            value = float(row[metric]) if row.get(metric) not in (None, "") else math.nan
            cells.setdefault((row["task"], config), []).append(value)
            for name in costs:
                if row.get(name) in (None, ""):
                    raise ValueError(f"costs: entry ({row['task']!r}, {config.label()!r}) has no {name!r}")
                task_costs[(name, row["task"], config)] = float(row[name])
        if not cells:
            raise ValueError("meta-data: no entries")
        tasks = tuple(dict.fromkeys(t for t, _ in cells))
        configs = tuple(dict.fromkeys(c for _, c in cells))
        errors = np.full((len(tasks), len(configs)), np.nan)
        cost_arrays = {name: np.full(errors.shape, np.nan) for name in costs}
        for (task, config), values in cells.items():
            i, j = tasks.index(task), configs.index(config)
            finite = [v for v in values if math.isfinite(v)]
            errors[i, j] = np.mean(finite) if finite else np.nan
            for name in costs:
                cost_arrays[name][i, j] = task_costs[(name, task, config)]
        # a (task, configuration) never run has no stored cost: give it the configuration's mean cost over
        # the tasks that ran it (the fit never reads costs; they only place the frontier's points)
        for name, values in cost_arrays.items():
            gaps = np.isnan(values)
            if gaps.any():
                values[gaps] = np.broadcast_to(np.nanmean(values, axis=0), values.shape)[gaps]
        return cls(tasks, configs, errors, cost_arrays)

    @classmethod
    def from_stores(cls, paths, metric: str = "error", costs=("memory_kib",)) -> "MetaData":
        """Every job stored in these result stores is a task (a row; one per parameter set when a job was
        stored with several); diverged and failed runs are NaN; seeds of one configuration are averaged."""
        from .store import ResultStore

        records = []
        for path in paths:
            if not Path(path).is_file():
                raise ValueError(f"stores: {str(path)!r} does not exist")
            with ResultStore(path) as store:
                records += store.records()
        params = {}
        for r in records:
            params.setdefault(r.job, set()).add(json.dumps(r.params, sort_keys=True))

        def task(r):  # a job stored with several parameter sets is several tasks
            return r.job if len(params[r.job]) == 1 else f"{r.job} {json.dumps(r.params, sort_keys=True)}"

        rows = [{"task": task(r), "config": r.config,
                 metric: r.metrics[metric] if r.status == "ok" and metric in r.metrics else None,
                 **{name: r.costs.get(name) for name in costs}} for r in records]
        return cls.from_rows(rows, metric, costs)

    @classmethod
    def from_csv(cls, path, metric: str = "error", costs=None) -> "MetaData":
        """Long CSV (columns task, config, the metric, costs: as `to_csv` writes) or wide CSV (a task
        column, then one column per configuration label; empty or NaN where unknown; `costs` given)."""
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = list(reader)
        if not header or header[0] != "task":
            raise ValueError(f"{path}: expected a CSV whose first column is 'task', got header {header[:3]}")
        if "config" in header:
            names = [h for h in header if h not in ("task", "config", metric)] if costs is None else list(costs)
            return cls.from_rows(rows, metric, names)
        errors = [[float(row[h]) if row[h] not in ("", None) else math.nan for h in header[1:]] for row in rows]
        return cls.from_array(errors, header[1:], costs, [row["task"] for row in rows])

    def to_csv(self, path) -> Path:
        """Long format, one row per (task, configuration): task, config label, error, costs."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["task", "config", "error", *self.costs])
            for i, task in enumerate(self.tasks):
                for j, config in enumerate(self.configs):
                    writer.writerow([task, config.label(), f"{self.errors[i, j]:.6g}",
                                     *(f"{values[i, j]:.6g}" for values in self.costs.values())])
        return path

    def select(self, configs, tasks=None) -> "MetaData":
        """The columns of these configurations (and the rows of these tasks, default all), in the order
        given; raises naming any that are not in the meta-data."""
        configs, tasks = tuple(configs), self.tasks if tasks is None else tuple(tasks)
        missing = [c.label() for c in configs if c not in self.configs]
        if missing:
            raise ValueError(f"configs: {len(missing)} configurations are not columns of the meta-data "
                             f"(first: {missing[0]!r}); the meta-data has {len(self.configs)}, e.g. "
                             f"{self.configs[0].label()!r}")
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"tasks: {unknown} are not rows of the meta-data; rows: {list(self.tasks)}")
        cols = [self.configs.index(c) for c in configs]
        rows = [self.tasks.index(t) for t in tasks]
        return MetaData(tasks, configs, self.errors[np.ix_(rows, cols)],
                        {n: v[np.ix_(rows, cols)] for n, v in self.costs.items()})

    def drop_task(self, task: str) -> "MetaData":
        keep = [i for i, t in enumerate(self.tasks) if t != task]
        if len(keep) == len(self.tasks):
            raise ValueError(f"task: {task!r} is not a row; rows: {list(self.tasks)}")
        return MetaData(tuple(self.tasks[i] for i in keep), self.configs, self.errors[keep],
                        {n: v[keep] for n, v in self.costs.items()})


def load_meta(path=None) -> MetaData:
    """The shipped meta-training matrix (qsim/data/meta/peppp_tasks.csv), or another long/wide CSV."""
    return MetaData.from_csv(path or SHIPPED)


def _to_model_space(errors: np.ndarray, transform: str) -> np.ndarray:
    if transform == "none":
        return errors
    if transform == "logit":
        if errors.size and (np.nanmin(errors) < 0 or np.nanmax(errors) > 100):
            raise ValueError("transform 'logit': expected errors in percent, within [0, 100]; use transform "
                             "'none' (--transform none) for other metrics")
        p = np.clip(errors / 100.0, _LOGIT_EPS, 1 - _LOGIT_EPS)
        return np.log(p / (1 - p))
    raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")


def _from_model_space(values: np.ndarray, transform: str) -> np.ndarray:
    return values if transform == "none" else 100.0 / (1.0 + np.exp(-values))


def _slope(values: np.ndarray, transform: str) -> np.ndarray:
    """d error / d value at model-space values: what a model-space spread is worth in errors (delta method)."""
    if transform == "none":
        return np.ones_like(values)
    p = 1.0 / (1.0 + np.exp(-values))
    return 100.0 * p * (1 - p)


def complete(errors, rank: int, weights=None, shrinkage: float = 0.0, iterations: int = 1000,
             tol: float = 1e-5) -> np.ndarray:
    """Weighted SoftImpute: the rank-`rank` matrix Z that fits the observed (non-NaN) entries of `errors`.

    weights: in [0, 1], same shape (default 1 where observed); entries with weight 0 are ignored.
    shrinkage: lambda as a fraction of the largest singular value of the mean-filled matrix (0: hard
    impute with a rank cap, the limit PEPPP's small-rank SoftImpute approaches). Stops when an
    iteration changes Z by less than `tol` relative (an over-large rank converges slowly, and its
    held-out error is already poor, which is all cross-validation needs)."""
    x = np.asarray(errors, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"errors: expected a 2-D matrix, got shape {x.shape}")
    observed = ~np.isnan(x)
    w = observed.astype(float) if weights is None else np.where(observed, np.asarray(weights, dtype=float), 0.0)
    if w.shape != x.shape or (w < 0).any() or (w > 1).any():
        raise ValueError(f"weights: expected values in [0, 1] of shape {x.shape}")
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(x.shape):
        raise ValueError(f"rank: expected an int in [1, {min(x.shape)}], got {rank!r}")
    empty_rows = np.flatnonzero(~(w > 0).any(axis=1))
    if len(empty_rows):
        raise ValueError(f"errors: row {empty_rows[0]} has no observed entries (with positive weight)")
    x0 = np.where(observed, x, 0.0)
    counts = (w > 0).sum(axis=0)
    sums = np.where(w > 0, x0, 0.0).sum(axis=0)
    # a column with no entries starts from the overall mean
    fill = np.where(counts > 0, sums / np.maximum(counts, 1), sums.sum() / max(counts.sum(), 1))
    z = np.where(w > 0, x, fill[None, :])  # (T, C): start from the column means of the weighted entries
    lam = shrinkage * np.linalg.svd(z, compute_uv=False)[0]
    for _ in range(iterations):
        u, s, vt = np.linalg.svd(w * x0 + (1 - w) * z, full_matrices=False)
        s = np.maximum(s[:rank] - lam, 0.0)
        new = (u[:, :rank] * s) @ vt[:rank]  # (T, C)
        change = np.linalg.norm(new - z) / max(np.linalg.norm(z), 1e-300)
        z = new
        if change < tol:
            break
    return z


def choose_rank(errors, ranks=range(1, 7), folds: int = 5, seed: int = 0, shrinkage: float = 0.0) -> int:
    """The rank whose completion best predicts held-out observed entries: k-fold cross-validation,
    scored by the median over folds of the held-out RMSE (a fold that takes most of one row's entries
    leaves that row with fewer than r, and its wild predictions say nothing about the rank); ties go
    to the smaller rank."""
    x = np.asarray(errors, dtype=float)
    obs = np.argwhere(~np.isnan(x))
    ranks = [r for r in ranks if 1 <= r <= min(x.shape)]
    if not ranks:
        raise ValueError(f"ranks: none within [1, {min(x.shape)}]")
    fold_of = np.random.default_rng(seed).permutation(len(obs)) % folds
    scores = []
    for r in ranks:
        fold_rmse = []
        for f in range(folds):
            held = obs[fold_of == f]
            train = x.copy()
            train[held[:, 0], held[:, 1]] = np.nan
            keep = ~np.isnan(train).all(axis=1)  # a row left with no entries cannot be predicted: skip it
            z = complete(train[keep], r, shrinkage=shrinkage)
            rows = np.cumsum(keep) - 1
            held = held[keep[held[:, 0]]]
            fold_rmse.append(np.sqrt(np.mean((z[rows[held[:, 0]], held[:, 1]] - x[held[:, 0], held[:, 1]]) ** 2)))
        scores.append(float(np.median(fold_rmse)))
    return ranks[int(np.argmin(np.round(scores, 12)))]


@dataclass(frozen=True, eq=False)
class LowRankModel:
    """A completed meta-training matrix: config factors V (configs, r) with orthonormal columns, the
    prior of a task's factors (mean mu, covariance Sigma, from the training tasks), the residual
    variance sigma^2 of the fit, all in the transformed space."""

    configs: tuple[Config, ...]
    col_factors: np.ndarray
    prior_mean: np.ndarray
    prior_cov: np.ndarray
    noise_var: float
    transform: str
    completed: np.ndarray

    @property
    def rank(self) -> int:
        return self.col_factors.shape[1]

    @classmethod
    def fit(cls, meta: MetaData, rank: int | None = None, transform: str = "none", shrinkage: float = 0.0,
            weights=None) -> "LowRankModel":
        """Complete `meta.errors` (rank by cross-validation when not given) and factor the result."""
        x = _to_model_space(meta.errors, transform)
        rank = choose_rank(x, shrinkage=shrinkage) if rank is None else rank
        z = complete(x, rank, weights, shrinkage)
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        tasks = u[:, :rank] * s[:rank]  # (T, r): z = tasks @ V^T
        observed = ~np.isnan(x)
        scale = float(np.nanvar(x)) or 1.0
        noise = max(float(np.mean((z - x)[observed] ** 2)), 1e-8 * scale)
        # (r, r) prior covariance: the spread of the training tasks, kept positive definite
        cov = np.atleast_2d(np.cov(tasks, rowvar=False)) if len(tasks) > 1 else np.eye(rank) * scale
        cov = cov + 1e-6 * (np.trace(cov) / rank + scale) * np.eye(rank)
        return cls(meta.configs, vt[:rank].T, tasks.mean(axis=0), cov, noise, transform,
                   _from_model_space(z, transform))

    def posterior_cov(self, measured) -> np.ndarray:
        """M^-1 (r, r): the covariance of a task's factors after measuring these column indices, where
        M = Sigma^-1 + V_S^T V_S / sigma^2 is the posterior precision."""
        v = self.col_factors[list(measured)]  # (k, r)
        return np.linalg.inv(np.linalg.inv(self.prior_cov) + v.T @ v / self.noise_var)


def design(model: LowRankModel, k: int, method: str = "d-optimal", costs=None, measured=(), values=None,
           seed: int = 0) -> list[int]:
    """k column indices to evaluate next, after those already `measured` (errors `values`, NaN where a run
    gave none): "frontier" (meta_frontier's default; see _frontier_pick), greedy D-optimal, cost-aware
    D-optimal (gain per unit of cost), or random. costs: (configs,) or (configs, m) values; "cost" divides
    by the first column (positive), "frontier" takes them all as the frontier's cost axes. "frontier" is
    adaptive, meant to pick one at a time from real values: for k > 1 it takes each earlier pick's value
    as predicted."""
    n = len(model.configs)
    measured = [int(i) for i in measured]
    values = [math.nan] * len(measured) if values is None else [float(x) for x in values]
    if method not in DESIGNS:
        raise ValueError(f"method: expected one of {DESIGNS}, got {method!r}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n - len(set(measured)):
        raise ValueError(f"k: expected an int in [1, {n - len(set(measured))}] (the configurations not yet "
                         f"measured), got {k!r}")
    if len(values) != len(measured) or any(not 0 <= i < n for i in measured):
        raise ValueError(f"measured/values: expected column indices in [0, {n}) and one value (or NaN) per index; "
                         f"got {len(measured)} indices and {len(values)} values")
    if method in ("cost", "frontier"):
        costs = np.asarray(costs, dtype=float) if costs is not None else None
        if costs is None or costs.shape[:1] != (n,) or costs.ndim > 2 or not np.isfinite(costs).all() \
                or (method == "cost" and not (costs > 0).all()):
            raise ValueError(f"costs: the {method} design needs finite{' positive' * (method == 'cost')} costs, "
                             f"{n} per cost (one per configuration)")
        costs = costs.reshape(n, -1)
    todo = [j for j in range(n) if j not in measured]
    if method == "random":
        return [int(j) for j in np.random.default_rng(seed).choice(todo, size=k, replace=False)]
    if method == "frontier":
        chosen = []
        for _ in range(k):
            best = _frontier_pick(model, costs, measured, values, np.random.default_rng(seed))
            predicted = model.col_factors[best] @ _posterior(model, *_finite(measured, values))[0]
            measured, values = measured + [best], values + [float(_from_model_space(predicted, model.transform))]
            chosen.append(best)
        return chosen
    chosen = []
    for _ in range(k):
        inverse = model.posterior_cov(measured + chosen)
        v = model.col_factors[todo]  # (m, r)
        # log det gain of adding column j: log(1 + v_j^T M^-1 v_j / sigma^2) (matrix determinant lemma)
        gain = np.log1p(np.einsum("ij,jk,ik->i", v, inverse, v) / model.noise_var)
        if method == "cost":
            gain = gain / costs[todo, 0]
        best = todo[int(np.argmax(gain))]
        chosen.append(best)
        todo.remove(best)
    return chosen


def _finite(measured, values) -> tuple[list[int], list[float]]:
    """The (indices, values) of the runs that gave a finite error."""
    keep = [(i, x) for i, x in zip(measured, values) if math.isfinite(x)]
    return [i for i, _ in keep], [x for _, x in keep]


def _posterior(model: LowRankModel, measured, values) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the new task's factors u after measuring `values` at columns `measured`."""
    v = model.col_factors[list(measured)]  # (k, r)
    y = _to_model_space(np.asarray(values, dtype=float), model.transform)
    inverse = model.posterior_cov(measured)
    return inverse @ (np.linalg.solve(model.prior_cov, model.prior_mean) + v.T @ y / model.noise_var), inverse


def _frontier_pick(model: LowRankModel, costs: np.ndarray, measured, values, rng) -> int:
    """The next configuration to run for the frontier. While the posterior is unsure whether some
    configuration is on the (error, costs) frontier (p (1 - p) >= _UNSURE, p the fraction of rows drawn
    from the posterior, plus the model's residual noise, with runs fixed at their values, on which it is),
    the most unsure one; once the frontier is settled, the one whose run most reduces the expected squared
    error of the predicted row over the configurations not run yet (V-optimal design, in the error's units).

    Why not D-optimal: its picks pin the task's factors down but favour formats whose errors vary most
    between tasks, which are rarely on a frontier. Frontier picks alone find the frontier but predict the
    rest of the row poorly; the switch keeps both (benchmarks/meta_frontier.py: better than random picks
    on recall, precision, hypervolume and RMSE at every k = 3..10 on the shipped matrix)."""
    v, noise = model.col_factors, model.noise_var
    known, y = _finite(measured, values)
    mean, cov = _posterior(model, known, y)
    draws = mean + rng.standard_normal((_FRONTIER_DRAWS, len(mean))) @ np.linalg.cholesky(cov).T  # (D, r)
    rows = _from_model_space(draws @ v.T + math.sqrt(noise) * rng.standard_normal((_FRONTIER_DRAWS, len(v))),
                             model.transform)  # (D, n)
    rows[:, known] = y
    p = np.mean([pareto_mask(np.column_stack([row, costs])) for row in rows], axis=0)
    open_ = np.ones(len(v), dtype=bool)
    open_[list(measured)] = False
    unsure = np.where(open_, p * (1 - p), 0.0)
    # squared-error drop: sum over open i != j of w_i G_ij^2 / (noise + G_jj), plus w_j (G_jj + noise) as j is run
    w = np.where(open_, _slope(v @ mean, model.transform) ** 2, 0.0)
    g = v @ cov @ v.T  # (n, n) posterior covariance of the row in model space
    d = np.diag(g)
    gain = ((g ** 2) @ w - w * d ** 2) / (noise + d) + w * (d + noise)
    # the most unsure configuration while one is unsure enough (gain breaks ties), else the largest gain
    score = unsure + 1e-6 * gain / gain[open_].max() if unsure.max() >= _UNSURE else gain
    return int(np.flatnonzero(open_)[np.argmax(score[open_])])


def estimate_row(model: LowRankModel, measured, values) -> tuple[np.ndarray, np.ndarray]:
    """(predicted errors, predictive std) of every configuration of a new task from the errors `values`
    measured at column indices `measured`; measured entries are returned as measured, with std 0."""
    measured = [int(i) for i in measured]
    values = np.asarray(values, dtype=float)
    n = len(model.configs)
    if len(measured) != len(values) or len(set(measured)) != len(measured):
        raise ValueError(f"measured/values: expected distinct column indices, one per value; got {len(measured)} "
                         f"indices and {len(values)} values")
    if not measured:
        raise ValueError("measured: a row with no observations cannot be predicted; measure at least one entry")
    if any(not 0 <= i < n for i in measured):
        raise ValueError(f"measured: column indices must lie in [0, {n})")
    if not np.isfinite(values).all():
        raise ValueError("values: measured errors must be finite (drop diverged runs, or give them an error)")
    u, inverse = _posterior(model, measured, values)
    v = model.col_factors
    mean = v @ u  # (n,)
    std = np.sqrt(np.einsum("ij,jk,ik->i", v, inverse, v) + model.noise_var) * _slope(mean, model.transform)
    errors = _from_model_space(mean, model.transform)
    errors[measured] = values
    std[measured] = 0.0
    return errors, std


@dataclass(frozen=True, eq=False)
class MetaEstimate:
    """A new task's estimated row: errors (measured where `measured`, else predicted, with `std`), its
    costs (name -> (configs,)), and the estimated frontier of (error, costs...)."""

    configs: tuple[Config, ...]
    errors: np.ndarray
    std: np.ndarray
    measured: np.ndarray
    costs: dict
    on_frontier: np.ndarray
    rank: int

    @property
    def recommended(self) -> tuple[Config, ...]:
        """The configurations on the estimated frontier, cheapest first (by the first cost)."""
        idx = np.flatnonzero(self.on_frontier)
        first = next(iter(self.costs.values()))
        return tuple(self.configs[i] for i in idx[np.argsort(first[idx], kind="stable")])

    def below(self, limit: float) -> "MetaEstimate":
        """The same row with its frontier over the configurations whose error (measured or predicted) is
        below `limit`: one no better than guessing would sit on it only because it is cheap."""
        useful = self.errors < limit
        on_frontier = np.zeros_like(self.on_frontier)
        on_frontier[useful] = pareto_mask(np.column_stack([self.errors, *self.costs.values()])[useful])
        return replace(self, on_frontier=on_frontier)

    def table(self):
        """A DataFrame: label, error, std, measured, costs, on_frontier."""
        import pandas as pd

        return pd.DataFrame({"label": [c.label() for c in self.configs], "error": self.errors, "std": self.std,
                             "measured": self.measured, **self.costs, "on_frontier": self.on_frontier})


def make_estimate(model: LowRankModel, measured, values, costs: dict) -> MetaEstimate:
    """Predict the row and mark its estimated frontier over (error, *costs)."""
    if not costs:
        raise ValueError("costs: expected at least one cost (name -> one value per configuration)")
    errors, std = estimate_row(model, measured, values)
    cost_arrays = {name: np.asarray(v, dtype=float) for name, v in costs.items()}
    mask = np.zeros(len(errors), dtype=bool)
    mask[list(measured)] = True
    on_frontier = pareto_mask(np.column_stack([errors, *cost_arrays.values()]))
    return MetaEstimate(model.configs, errors, std, mask, cost_arrays, on_frontier, model.rank)


def hypervolume_2d(points, reference) -> float:
    """Area dominated by (n, 2) points (both minimised) and bounded by the reference point."""
    pts = np.asarray(points, dtype=float)
    pts = pts[(pts < reference).all(axis=1)]
    pts = pts[pareto_mask(pts)] if len(pts) else pts
    area, last_y = 0.0, reference[1]
    for x, y in sorted(map(tuple, pts)):
        if y < last_y:
            area += (reference[0] - x) * (last_y - y)
            last_y = y
    return area


def frontier_metrics(true_errors, costs: dict, on_frontier, cost: str | None = None) -> dict[str, float]:
    """How good a recommended set of configurations (`on_frontier`, a mask) is against the task's known
    full row: compare_frontiers' recall, precision and epsilon (the recommended configurations scored
    at their true errors), and the relative hypervolume lost on (error, `cost`: default the first),
    both normalised to [0, 1] over all configurations, reference point (1.1, 1.1)."""
    true_errors = np.asarray(true_errors, dtype=float)
    on_frontier = np.asarray(on_frontier, dtype=bool)
    if not np.isfinite(true_errors).all() or on_frontier.shape != true_errors.shape:
        raise ValueError(f"true_errors: expected the task's full row, {on_frontier.shape[0]} finite errors")
    cost = cost or next(iter(costs))
    true_points = np.column_stack([true_errors, *costs.values()])
    closeness = compare_frontiers(true_points[pareto_mask(true_points)], true_points[on_frontier])
    two = np.column_stack([true_errors, costs[cost]])
    lo, hi = two.min(axis=0), two.max(axis=0)
    two = (two - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = np.array([1.1, 1.1])
    best = hypervolume_2d(two, ref)
    return {**closeness, "hypervolume_loss": float((best - hypervolume_2d(two[on_frontier], ref)) / best)}


def meta_metrics(true_errors, estimate: MetaEstimate, cost: str | None = None) -> dict[str, float]:
    """frontier_metrics of the estimate's frontier, plus the RMSE and MAE of its predicted (unmeasured)
    errors and the evaluations spent and saved."""
    metrics = frontier_metrics(true_errors, estimate.costs, estimate.on_frontier, cost)
    gap = (estimate.errors - np.asarray(true_errors, dtype=float))[~estimate.measured]
    return {**metrics, "rmse": float(np.sqrt(np.mean(gap ** 2))) if gap.size else 0.0,
            "mae": float(np.mean(np.abs(gap))) if gap.size else 0.0,
            "evaluations": int(estimate.measured.sum()), "evaluations_saved": int((~estimate.measured).sum())}


def meta_frontier(job, configs, store, k: int, meta: MetaData | None = None, objectives=None, executor=None,
                  seed: int = 0, method: str = "frontier", rank: int | None = None, transform: str = "none",
                  diverged_error: float | None = None, progress: bool = False) -> MetaEstimate:
    """Estimate `job`'s frontier over `configs` (columns of `meta`, default: the shipped matrix) from k
    evaluations chosen by `method` (the adaptive "frontier" design runs them one at a time, each choosing
    the next; the others run them together); evaluations go through run_sweep into `store` (resumable). A run
    that diverged or failed counts as `diverged_error` (e.g. the error at chance, as the shipped matrix
    scores divergence), or, when None, is left out of the prediction with a warning."""
    from .runner import default_executor, run_metric

    configs = list(configs)
    objectives = tuple(objectives or job.objectives)
    cost_names = [c.name for c in job.costs]
    if len(objectives) < 2 or objectives[0] in cost_names or not all(o in cost_names for o in objectives[1:]):
        raise ValueError(f"objectives: expected a metric followed by costs {cost_names}, got {list(objectives)}")
    meta = (meta or load_meta()).select(configs)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(configs):
        raise ValueError(f"k: expected an int in [1, {len(configs)}] (the configurations), got {k!r}")
    job.check(configs)
    model = LowRankModel.fit(meta, rank, transform)
    costs = {name: np.array([job.costs_of(c)[name] for c in configs]) for name in objectives[1:]}
    measured, values = [], []

    def run(chosen):
        for i, value in zip(chosen, run_metric(job, [configs[i] for i in chosen], store, executor, seed,
                                               objectives[0], progress)):
            value = diverged_error if not math.isfinite(value) and diverged_error is not None else value
            if not math.isfinite(value):
                warnings.warn(f"meta_frontier: {configs[i].label()!r} gave no finite {objectives[0]}; "
                              "predicting the row without it", stacklevel=3)
            measured.append(i)
            values.append(value)

    cost_matrix = np.column_stack(list(costs.values()))
    if method == "frontier":  # adaptive: each run decides the next, all in one pool
        own = executor is None
        executor = default_executor() if own else executor
        try:
            for _ in range(k):
                run(design(model, 1, method, cost_matrix, measured, values, seed))
        finally:
            if own:
                executor.shutdown()
    else:
        run(design(model, k, method, cost_matrix, seed=seed))
    measured, values = _finite(measured, values)
    return make_estimate(model, measured, values, costs)
