"""The built-in meta-training tasks: small models trained in a fraction of a second under PEPPP-style
precision configurations, whose errors form the shipped meta-training matrix (qsim/data/meta/).

Exports `META_TASKS` (name -> task parameters), `META_SPACE` (the configuration grid), `make_meta_job`,
`train_meta_task` (the job function) and `build` (run every task over the grid through run_sweep,
stored and resumable, then write the matrix as CSV with qsim.sweep.meta).

The grid follows PEPPP (Yang et al., ICLR 2022, section 4): one low-precision format for everything
the training step computes with (weights, activations, errors, gradients) crossed with one higher
precision for the optimizer (momentum and the master copy of the weights that updates accumulate into):

    weight = activation = error = gradient = L      L in 8 floats of 5 to 8 bits
    optimizer_state = master_weight = H             H in 5 floats of 11 to 21 bits

The tasks differ in data (digits: all of it, class subsets, few samples, pixel noise; generated
classification and regression problems of several sizes and difficulties), model (logistic
regression, MLPs of several widths and depths, the digits CNN) and seed, so their error rows share
structure (a format too narrow for every task) yet are not copies of one another. Every run is
100 SGD steps (60 for the CNN) on a few hundred samples: well under a second on one core.

error: classification error (% of the test set); for regression, the test MSE as a percentage of
the test targets' variance (the error of predicting the mean), capped at 100. A run whose loss
becomes NaN/inf stops there and scores the error of a constant prediction (the majority class, or
100), so a diverged configuration is a bad entry of the matrix rather than a missing one.

Regenerate the shipped matrix (960 runs; 8 minutes on 2 cores shared with other work):

    python -m qsim.sweep.meta_tasks --db meta_build.db --out qsim/data/meta/peppp_tasks.csv
"""
from __future__ import annotations

import argparse
import functools
import itertools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .costs import DEFAULT_COSTS, profile_model
from .job import Job
from .space import Config

LOW = ("float<e3m1>", "float<e3m2>", "float<e3m3>", "float<e4m1>", "float<e4m2>", "float<e4m3>",
       "float<e5m1>", "float<e5m2>")
HIGH = ("float<e5m5>", "float<e5m7>", "float<e5m10>", "float<e8m7>", "float<e8m12>")


def meta_configs() -> list[Config]:
    """The grid: len(LOW) x len(HIGH) configurations, low format varying slowest."""
    return [Config.from_dict({"weight": low, "activation": low, "error": low, "gradient": low,
                              "optimizer_state": high, "master_weight": high})
            for low, high in itertools.product(LOW, HIGH)]


def _task(data, model, **options):
    return {"data": data, "model": model, **options}


# name -> parameters: data source and its options, model ("linear", "mlp<h>", "mlp<h>x<h>", "cnn"), task_seed
# (not "seed": the runner passes every job its own per-configuration seed under that name)
META_TASKS = {
    "digits-linear": _task("digits", "linear"),
    "digits-mlp16": _task("digits", "mlp16"),
    "digits-mlp32": _task("digits", "mlp32"),
    "digits-mlp64": _task("digits", "mlp64"),
    "digits-mlp32x32": _task("digits", "mlp32x32"),
    "digits-mlp32-seed1": _task("digits", "mlp32", task_seed=1),
    "digits-mlp32-n200": _task("digits", "mlp32", train=200),
    "digits-mlp32-noise": _task("digits", "mlp32", noise=0.4),
    "digits-mlp32-classes0to4": _task("digits", "mlp32", classes=5),
    "digits-mlp32-lr0.3": _task("digits", "mlp32", lr=0.3),
    "digits-cnn": _task("digits", "cnn", steps=60),
    "digits-cnn-n300": _task("digits", "cnn", train=300, steps=60),
    "class-f20-c2": _task("classification", "mlp32", features=20, classes=2, sep=1.0),
    "class-f20-c4-hard": _task("classification", "mlp32", features=20, classes=4, sep=0.6),
    "class-f40-c8": _task("classification", "mlp64", features=40, classes=8, sep=1.5),
    "class-f10-c3-linear": _task("classification", "linear", features=10, classes=3, sep=1.0),
    "class-f10-c2-flip": _task("classification", "mlp16", features=10, classes=2, sep=0.8, flip=0.1),
    "class-f30-c5-deep": _task("classification", "mlp32x32", features=30, classes=5, sep=1.2, task_seed=2),
    "regress-f10-linear": _task("regression", "linear", features=10, noise=5.0),
    "regress-f20-mlp": _task("regression", "mlp32", features=20, noise=10.0),
    "regress-f50-sparse": _task("regression", "mlp16", features=50, informative=5, noise=1.0),
    "friedman-mlp": _task("friedman", "mlp32", features=10, noise=0.5),
    "friedman-mlp32x32": _task("friedman", "mlp32x32", features=10, noise=1.0, task_seed=3),
    "regress-f5-scaled": _task("regression", "mlp16", features=5, noise=0.1, scale=3.0),
}


@functools.lru_cache(maxsize=32)
def _data(data: str, seed: int, train: int, test: int, classes: int, features: int, informative: int, sep: float,
          flip: float, noise: float, scale: float):
    """(x_train, y_train, x_test, y_test, n_out, regression) for one task; targets standardised for regression."""
    from sklearn import datasets

    regression = data in ("regression", "friedman")
    if data == "digits":
        digits = datasets.load_digits()
        keep = digits.target < classes
        x, y = digits.data[keep] / 16.0, digits.target[keep]
        x = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    elif data == "classification":
        x, y = datasets.make_classification(train + test, features, n_informative=max(2, features // 2),
                                            n_redundant=0, n_classes=classes, n_clusters_per_class=1,
                                            class_sep=sep, flip_y=flip, random_state=seed)
    elif data == "regression":
        x, y = datasets.make_regression(train + test, features, n_informative=informative or features,
                                        noise=noise, random_state=seed)
        x = x * scale
    elif data == "friedman":
        x, y = datasets.make_friedman1(train + test, n_features=features, noise=noise, random_state=seed)
    else:
        raise ValueError(f"data: expected 'digits', 'classification', 'regression' or 'friedman', got {data!r}")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    x_train, y_train, x_test, y_test = x[:train], y[:train], x[train:train + test], y[train:train + test]
    if regression:
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    as_x = functools.partial(torch.tensor, dtype=torch.float32)
    as_y = functools.partial(torch.tensor, dtype=torch.float32 if regression else torch.long)
    n_out = 1 if regression else int(y.max()) + 1
    return as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test), n_out, regression


def _model(kind: str, n_in: int, n_out: int) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(n_in, n_out)
    if kind == "cnn":
        from .jobs import DigitsCNN
        return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), DigitsCNN())
    if kind.startswith("mlp"):
        widths = [n_in, *map(int, kind[3:].split("x")), n_out]
        layers = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        return torch.nn.Sequential(*layers[:-1])
    raise ValueError(f"model: expected 'linear', 'cnn' or 'mlp<width>[x<width>...]', got {kind!r}")


def _defaults(params: dict) -> dict:
    """Every data option with its default filled in (the cache key of _data and the profile's input size)."""
    return {"train": 400, "test": 400, "classes": 10 if params["data"] == "digits" else 2,
            "features": 64, "informative": 0, "sep": 1.0, "flip": 0.0, "noise": 0.0, "scale": 1.0,
            **{k: v for k, v in params.items() if k not in ("data", "model", "task_seed", "steps", "batch_size", "lr")},
            "data": params["data"], "seed": params.get("task_seed", 0)}


def train_meta_task(config: Config, seed: int, data: str, model: str, steps: int = 100, batch_size: int = 32,
                    lr: float = 0.05, task_seed: int = 0, **options) -> dict[str, float]:
    """Train one meta task under `config` (roles mapped as in qsim.sweep.jobs); return {"error": %}.
    `seed` is the run's (the runner's, per configuration); `task_seed` makes another task of the same
    recipe: it draws the data (generated problems, split, pixel noise) and shifts the training seed."""
    from qsim.nn import quantize_model
    from qsim.nn.quantizer import FlushWarning

    from .jobs import _optimizers, _rules

    data_options = _defaults({"data": data, "model": model, "task_seed": task_seed, **options})
    seed = seed + task_seed
    x_train, y_train, x_test, y_test, n_out, regression = _data(**data_options)
    with warnings.catch_warnings():
        # narrow formats flush many values to zero: that is what the matrix measures, not news to print
        warnings.simplefilter("ignore", FlushWarning)
        torch.manual_seed(seed)
        net = _model(model, x_train.shape[1], n_out)
        handle = quantize_model(net, _rules(config))
        optimizers = _optimizers(net, config, lr, momentum=0.9)
        loss_fn = (lambda out, y: F.mse_loss(out.squeeze(1), y)) if regression else F.cross_entropy
        order = torch.Generator().manual_seed(seed)
        diverged = False
        for _ in range(steps):
            idx = torch.randint(len(x_train), (batch_size,), generator=order)
            loss = loss_fn(net(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                diverged = True
                break
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
        with torch.no_grad():
            out = net(x_test)
    handle.remove()
    if regression:
        mse = F.mse_loss(out.squeeze(1), y_test).item()
        relative = mse / y_test.var(unbiased=False).item()
        return {"error": 100.0 if diverged or not np.isfinite(relative) else min(100.0, 100.0 * relative)}
    if diverged or not torch.isfinite(out).all():
        return {"error": 100.0 * (1.0 - torch.bincount(y_test).max().item() / len(y_test))}
    return {"error": 100.0 * (out.argmax(dim=1) != y_test).float().mean().item()}


def make_meta_job(name: str) -> Job:
    """The Job of one built-in meta task; its costs (memory, bit operations) come from its own model."""
    if name not in META_TASKS:
        raise ValueError(f"task: expected one of {sorted(META_TASKS)}, got {name!r}")
    params = META_TASKS[name]
    x_train, _, _, _, n_out, _ = _data(**_defaults(params))
    profile = profile_model(_model(params["model"], x_train.shape[1], n_out), x_train[:1],
                            batch_size=params.get("batch_size", 32), optimizer_states=1)
    return Job(f"meta/{name}", train_meta_task, tuple(params.items()), profile, DEFAULT_COSTS,
               units=(("error", "% test"),))


def build(db: str, out: str | None, tasks=None, workers: int = 2, progress: bool = True) -> None:
    """Run every task over the grid into the store `db` (resumable), then write the matrix CSV to `out`."""
    from .runner import default_executor, run_sweep
    from .store import ResultStore

    configs = meta_configs()
    with ResultStore(db) as store, default_executor(workers) as pool:
        for name in tasks or META_TASKS:
            summary = run_sweep(make_meta_job(name), configs, store, pool, seed=0, progress=progress)
            print(f"{name}: {summary.total} configurations, {summary.skipped} stored, {summary.ok} ok, "
                  f"{summary.diverged} diverged, {summary.error} errors", flush=True)
    if out:
        from .meta import MetaData
        meta = MetaData.from_stores([db], metric="error", costs=("memory_kib", "bit_ops"))
        # rows and columns in the order of META_TASKS and the grid, whatever order the runs finished in
        meta.select(configs, [make_meta_job(name).name for name in tasks or META_TASKS]).to_csv(out)
        print(f"wrote {out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m qsim.sweep.meta_tasks", description=build.__doc__)
    parser.add_argument("--db", default="meta_build.db", help="result store (resumable; default meta_build.db)")
    parser.add_argument("--out", help="matrix CSV to write (e.g. qsim/data/meta/peppp_tasks.csv)")
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    build(args.db, args.out, args.tasks.split(",") if args.tasks else None, args.workers, not args.no_progress)


if __name__ == "__main__":
    main()
