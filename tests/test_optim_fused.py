"""The fused LowPrecision(SGD) step (qsim/optim_fused.py) against the unfused one: the same bits in every
parameter, gradient, momentum buffer and master, with the same seeds drawn, whatever the options."""
from __future__ import annotations

import pytest
import torch

from qsim import optim_fused
from qsim.optim import LowPrecision

# Sizes around the span (768 elements), the threading threshold (2^15) and torch's vector width.
SIZES = [(10,), (3, 257), (768,), (40, 1000), (2**15 + 5,)]
RECIPE = dict(weight="float<e5m2>", grad="float<e5m2>", momentum="float<e6m9>", acc="float<e6m9>",
              grad_scale=1 / 1000, rounding=dict(weight="nearest", grad="nearest"))


def _run(sgd_options: dict, lp_options: dict, fused: bool, steps: int = 3, monkeypatch=None):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(size)) for size in SIZES]
    opt = LowPrecision(torch.optim.SGD(params, **sgd_options), **lp_options)
    taken = []
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = None if (step == 1 and i == 2) else torch.randn(p.shape) * 1000  # a parameter skipped once
        if not fused:
            monkeypatch.setattr(optim_fused, "applies", lambda lp: False)
        taken.append(optim_fused.applies(opt))
        opt.step()
    state = [opt.state[p].get("momentum_buffer") for p in params]
    return params, state, [opt.masters.get(p) for p in params], taken, torch.random.get_rng_state()


CASES = [
    (dict(lr=0.01, momentum=0.9), RECIPE),
    (dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=5e-4), RECIPE),
    (dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), dict(RECIPE, rounding="stochastic")),
    (dict(lr=0.1), dict(weight="fixed<8,4>", grad="bf16", rounding="stochastic")),
    (dict(lr=0.1, momentum=0.5), dict(weight="fp8_e4m3", momentum="fp16", rounding=dict(weight="up"))),
    (dict(lr=0.1, momentum=0.9), dict(acc="float<e8m10>", grad_scale=0.5)),
]


@pytest.mark.parametrize("sgd_options, lp_options", CASES)
def test_fused_step_gives_the_unfused_bits(sgd_options, lp_options, monkeypatch):
    fused = _run(sgd_options, lp_options, fused=True)
    with monkeypatch.context() as m:
        unfused = _run(sgd_options, lp_options, fused=False, monkeypatch=m)
    assert all(fused[3]) and not any(unfused[3])
    for a, b in zip(fused[0], unfused[0]):
        assert torch.equal(a.detach(), b.detach()) and torch.equal(a.grad, b.grad)
    for group_a, group_b in zip(fused[1:3], unfused[1:3]):
        for a, b in zip(group_a, group_b):
            assert (a is None) == (b is None)
            assert a is None or torch.equal(a, b)
    assert torch.equal(fused[4], unfused[4])  # as many seeds drawn


@pytest.mark.parametrize("sgd_options, lp_options", [
    (dict(lr=0.1, momentum=0.9, foreach=True), RECIPE),       # another arithmetic
    (dict(lr=0.1, momentum=0.9, maximize=True), RECIPE),
    (dict(lr=0.1, momentum=0.9), dict(RECIPE, weight="mxfp8_e4m3")),  # a block format
])
def test_other_cases_take_the_unfused_path(sgd_options, lp_options):
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(100))
    opt = LowPrecision(torch.optim.SGD([p], **sgd_options), **lp_options)
    p.grad = torch.randn(100)
    assert not optim_fused.applies(opt)
    opt.step()


def test_hooks_and_non_float32_tensors_take_the_unfused_path():
    p = torch.nn.Parameter(torch.randn(100))
    opt = LowPrecision(torch.optim.SGD([p], lr=0.1, momentum=0.9), **RECIPE)
    p.grad = torch.randn(100)
    assert optim_fused.applies(opt)
    handle = opt.optimizer.register_step_pre_hook(lambda *args: None)
    assert not optim_fused.applies(opt)
    handle.remove()
    opt.step()
    opt.param_groups[0]["momentum"] = 0  # the buffer stays in the state, and the unfused path rounds it
    assert not optim_fused.applies(opt)
    opt.param_groups[0]["momentum"] = 0.9
    p.grad = torch.randn(200)[::2]
    assert not optim_fused.applies(opt)
    opt = LowPrecision(torch.optim.SGD([torch.nn.Parameter(torch.randn(4, dtype=torch.float64))], lr=0.1), **RECIPE)
    opt.param_groups[0]["params"][0].grad = torch.randn(4, dtype=torch.float64)
    assert not optim_fused.applies(opt)
