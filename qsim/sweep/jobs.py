"""Built-in jobs: `digits` (train a small CNN on scikit-learn's 8x8 digits under a configuration) and
`matmul` (the error of one quantized matrix product, no training: a sweep in seconds).

Exports `BUILTIN_JOBS`, `make_job`, `make_digits_job`, `make_matmul_job`, `DIGITS_SPACE` (the space
`qsim sweep` runs with no arguments), `DigitsCNN`, `digits_setup`, `train_digits` and `matmul_error`.

How the digits job maps the roles onto qsim.nn and qsim.optim, for every Conv2d/Linear layer, with a
layer group's formats replacing the global ones for the layers it matches:
    QuantSpec(weight=W, bias=W, input=A, grad_output=E, grad_weight=G, grad_bias=G, acc=Acc)
and one optimizer per group of parameters:
    LowPrecision(SGD(params, lr, momentum), weight=W, grad=G, momentum=M, acc=Wm, rounding="stochastic")
so the stored weights live in W (rounded stochastically after every step, as in QPyTorch's recipes),
unless a master_weight format Wm keeps a separate copy that the updates accumulate into.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .costs import (ACTIVATION_KIB, BIT_OPS, DEFAULT_COSTS, Cost, LayerProfile, ModelProfile,
                    energy_per_inference_uj, hardware_costs, profile_model)
from .job import Job
from .space import Config

_WEIGHT_LAYERS = (torch.nn.Conv2d, torch.nn.Linear)

DIGITS_SPACE = {
    "weight": ["bf16", "fp8_e4m3", "fp6_e2m3", "fp4_e2m1"],
    "activation": ["bf16", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1"],
    "error": "fp8_e5m2",
    "gradient": "bf16",
    "optimizer_state": "bf16",
}


class DigitsCNN(torch.nn.Module):
    """Two 3x3 conv layers and a linear classifier for 8x8 images: 6 090 parameters."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):  # (B, 1, 8, 8)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 16, 4, 4)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 2, 2)
        return self.fc(x.flatten(1))  # (B, 10)


@functools.lru_cache(maxsize=1)
def _digits_data():
    """scikit-learn's 1797 digits scaled to [0, 1], split 80/20 with a fixed seed (the same split for every config)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_train, y_train, x_test, y_test


def _matcher(text: str):
    """A torch.nn module class for a type name ("Conv2d"), else the text as a name glob ("fc*")."""
    cls = getattr(torch.nn, text, None)
    return cls if isinstance(cls, type) and issubclass(cls, torch.nn.Module) else text


def _layer_spec(config: Config, group: str | None):
    from qsim.nn import QuantSpec

    w = config.get("weight", group)
    g = config.get("gradient", group)
    return QuantSpec(weight=w, bias=w, input=config.get("activation", group), grad_output=config.get("error", group),
                     grad_weight=g, grad_bias=g, acc=config.get("accumulator", group))


def _rules(config: Config) -> list:
    """quantize_model rules: every weight layer gets the global spec, then each group (later rules override)."""
    global_spec = _layer_spec(config, None)
    rules = [(layer_type, global_spec) for layer_type in _WEIGHT_LAYERS]
    for group, matchers in config.groups:
        rules += [(_matcher(m), _layer_spec(config, group)) for m in matchers]
    return rules


def _optimizers(model, config: Config, lr: float, momentum: float) -> list:
    """One LowPrecision-wrapped SGD per parameter group, so every group's W, G, M and Wm formats apply."""
    from qsim.optim import LowPrecision

    by_group: dict[str | None, list] = {}
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            group = config.group_of(name, type(module).__name__) if isinstance(module, _WEIGHT_LAYERS) else None
            by_group.setdefault(group, []).extend(params)
    return [LowPrecision(torch.optim.SGD(params, lr=lr, momentum=momentum),
                         weight=config.get("weight", group), grad=config.get("gradient", group),
                         momentum=config.get("optimizer_state", group), acc=config.get("master_weight", group),
                         rounding="stochastic")
            for group, params in by_group.items()]


def digits_setup(config: Config, lr: float, momentum: float):
    """A fresh DigitsCNN with the config's quantization hooks, the hooks' handle, and its optimizers."""
    from qsim.nn import quantize_model

    model = DigitsCNN()
    return model, quantize_model(model, _rules(config)), _optimizers(model, config, lr, momentum)


def train_digits(config: Config, seed: int, epochs: int = 5, batch_size: int = 32, lr: float = 0.05,
                 momentum: float = 0.9) -> dict[str, float]:
    """Train DigitsCNN under `config`; return the test error (%) and the last epoch's mean training loss."""
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = _digits_data()
    model, handle, optimizers = digits_setup(config, lr, momentum)
    order = torch.Generator().manual_seed(seed)
    loss_sum = float("nan")
    for _ in range(epochs):
        loss_sum, batches = 0.0, 0
        for idx in torch.randperm(len(x_train), generator=order).split(batch_size):
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            if not torch.isfinite(loss):
                handle.remove()
                return {"error": float("nan"), "train_loss": float("nan")}
            for opt in optimizers:
                opt.zero_grad()
            loss.backward()
            for opt in optimizers:
                opt.step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
        loss_sum /= batches
    with torch.no_grad():
        wrong = (model(x_test).argmax(dim=1) != y_test).float().mean().item()
    handle.remove()
    return {"error": 100.0 * wrong, "train_loss": loss_sum}


DIGITS_ACCELERATOR = "systolic_32x32"
DIGITS_ENERGY = Cost("energy_uj", "µJ/inference",
                     functools.partial(energy_per_inference_uj, DigitsCNN, (1, 1, 8, 8), _rules, DIGITS_ACCELERATOR),
                     f"energy per inference on {DIGITS_ACCELERATOR}",
                     f"qsim.hw simulation of one inference on hw_models/{DIGITS_ACCELERATOR}.toml")
DIGITS_HARDWARE = hardware_costs(DIGITS_ACCELERATOR, "zcu102", 45)  # luts, dsps, brams, area_mm2


def make_digits_job(epochs: int = 5, batch_size: int = 32, lr: float = 0.05, momentum: float = 0.9) -> Job:
    """The built-in job: DigitsCNN, SGD with momentum (one optimizer state per parameter)."""
    profile = profile_model(DigitsCNN(), torch.zeros(1, 1, 8, 8), batch_size=batch_size, optimizer_states=1)
    params = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum}
    return Job("digits", train_digits, tuple(params.items()), profile, (*DEFAULT_COSTS, DIGITS_ENERGY, *DIGITS_HARDWARE),
               units=(("error", "% test"), ("train_loss", "nats")), metrics=("error", "train_loss"),
               chance=90.0)  # ten classes: guessing errs 90 % of the time


def matmul_error(config: Config, seed: int, m: int = 64, k: int = 256, n: int = 64,
                 rounding: str = "stochastic") -> dict[str, float]:
    """Relative Frobenius error (%) of Q_A(X) Q_W(W) against X W for fixed Gaussian X (m, k), W (k, n)."""
    from qsim import quantize

    data = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=data)  # (m, k)
    w = torch.randn(k, n, generator=data) / k ** 0.5  # (k, n)
    a_fmt, w_fmt = config.get("activation"), config.get("weight")
    xq = x if a_fmt is None else quantize(x, a_fmt, rounding=rounding, seed=seed)
    wq = w if w_fmt is None else quantize(w, w_fmt, rounding=rounding, seed=seed + 1)
    exact = x.double() @ w.double()
    return {"error": 100.0 * ((xq.double() @ wq.double() - exact).norm() / exact.norm()).item()}


def make_matmul_job(m: int = 64, k: int = 256, n: int = 64, rounding: str = "stochastic") -> Job:
    """A job that trains nothing: weight and activation formats of one (m, k) x (k, n) product."""
    profile = ModelProfile((LayerProfile("matmul", "Linear", k * n, k, k * n),), batch_size=m, optimizer_states=0)
    params = {"m": m, "k": k, "n": n, "rounding": rounding}
    return Job("matmul", matmul_error, tuple(params.items()), profile, (ACTIVATION_KIB, BIT_OPS),
               units=(("error", "% rel. Frobenius"),), keys=frozenset({"weight", "activation"}),
               objectives=("error", "bit_ops"), metrics=("error",))


BUILTIN_JOBS = {"digits": make_digits_job, "matmul": make_matmul_job}


def make_job(name: str, params: dict | None = None) -> Job:
    """A built-in job by name, or "package.module:attribute" naming a Job, a factory returning one
    (called with `params`), or a plain function config -> metrics (params passed to it on every call)."""
    import importlib
    import inspect

    params = dict(params or {})
    if name in BUILTIN_JOBS:
        factory = BUILTIN_JOBS[name]
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"job: cannot import {name!r}: {err}") from None
    else:
        raise ValueError(f"job: expected a built-in job {sorted(BUILTIN_JOBS)} or 'module:function', got {name!r}")
    if isinstance(factory, Job):
        if params:
            raise ValueError(f"job: {name!r} is a ready Job; it takes no parameters, got {sorted(params)}")
        return factory
    if not callable(factory):
        raise TypeError(f"job: {name!r} is not callable")
    signature = inspect.signature(factory)
    unknown = [p for p in params if p not in signature.parameters]
    if unknown:
        raise ValueError(f"job parameters: {name!r} does not take {unknown}; it takes {list(signature.parameters)}")
    if name in BUILTIN_JOBS or signature.return_annotation in (Job, "Job"):
        return factory(**params)
    return Job(name, factory, tuple(params.items()), objectives=())
