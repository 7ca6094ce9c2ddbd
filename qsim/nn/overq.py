"""Calibrate OverQ activation formats per layer from example inputs.

    rules = [(nn.ReLU, QuantSpec(output=OverQ(bits=4, cascade=2, scale="mse")))]
    handle = quantize_model(model, calibrate(model, rules, x_example))
    handle.summary()   # each layer's overq<...,scale=...> with the coverage measured on x_example

Exports calibrate. Uncalibrated, an OverQ format with a strategy step ("mse", "max", "percentile:P")
picks its step again from every tensor it quantizes (dynamic, per tensor); calibrate fixes one step per
module from the float32 model's activations on example inputs (static, as a deployed accelerator would
hold it) and records the outliers, coverage and precision overwrites it measured there.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from qsim.formats.overq import OverQ, OverQStats
from qsim.nn.model import check_rules, matches_rule
from qsim.overq import choose_scale, overq_quantize

_ACTIVATION_FIELDS = ("input", "output")


def calibrate(model: nn.Module, rules, *args, **kwargs) -> list:
    """`rules` followed by one exact-name rule per module whose spec holds an OverQ input or output: the
    same spec with each OverQ's step fixed (from its strategy, on the activations of model(*args,
    **kwargs) in float32) and its measured stats attached. The model is run once, unchanged."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module; got {type(model).__name__}")
    rules = check_rules(rules)
    named = list(model.named_modules())
    chosen = {}
    for matcher, spec in rules:  # the last matching rule wins, as in quantize_model
        for name, module in named:
            if matches_rule(matcher, name, module):
                chosen[name] = spec
    targets = {name: spec for name, spec in chosen.items()
               if any(isinstance(getattr(spec, f), OverQ) for f in _ACTIVATION_FIELDS)}
    if not targets:
        raise ValueError("rules: no rule gives an OverQ input or output format to a module of the model")
    seen: dict[tuple[str, str], torch.Tensor] = {}
    modules = dict(named)
    hooks = []

    def record(name, field, value):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"module {name!r}: OverQ {field} needs a tensor; got {type(value).__name__}")
        seen[name, field] = value.detach()

    for name, spec in targets.items():
        module = modules[name]
        if isinstance(spec.input, OverQ):
            hooks.append(module.register_forward_pre_hook(
                lambda m, a, name=name: record(name, "input", a[0] if a else None), prepend=True))
        if isinstance(spec.output, OverQ):
            hooks.append(module.register_forward_hook(
                lambda m, a, out, name=name: record(name, "output", out), prepend=True))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()

    calibrated = []
    for name, spec in targets.items():
        changes = {}
        for field in _ACTIVATION_FIELDS:
            fmt = getattr(spec, field)
            if isinstance(fmt, OverQ):
                if (name, field) not in seen:
                    raise ValueError(f"module {name!r}: not called by model(*args), so its OverQ {field} "
                                     f"cannot be calibrated")
                changes[field] = _calibrated(fmt, seen[name, field])
        calibrated.append((name, spec.replace(**changes)))
    return list(rules) + calibrated


def _calibrated(fmt: OverQ, x: torch.Tensor) -> OverQ:
    """fmt with its step fixed on x and the stats of quantizing x with it."""
    dim = fmt.dim % x.dim()
    scale = fmt.scale if isinstance(fmt.scale, float) else choose_scale(
        x, fmt.bits, fmt.scale, cascade=fmt.cascade, dim=dim, precision=fmt.precision)
    _, info = overq_quantize(x, fmt.bits, scale, cascade=fmt.cascade, dim=dim, precision=fmt.precision)
    return replace(fmt, scale=scale, stats=OverQStats(info.outliers, info.covered, info.precise, x.numel()))
