"""qsim.optim.LowPrecision: rounds gradients, weights, optimizer state and the accumulator as specified."""
import copy

import pytest
import torch
from torch import nn

import qsim
from qsim.optim import LowPrecision

FP32 = qsim.FloatingPoint(8, 23)
OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))


def _train(model, optimizer, steps, seed=1):
    torch.manual_seed(seed)
    data = [(torch.randn(16, 6), torch.randn(16, 2)) for _ in range(steps)]
    for x, y in data:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def representable(t, fmt):
    return torch.equal(qsim.quantize(t, fmt), t)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_float32_formats_reproduce_the_wrapped_optimizer_exactly(name):
    a, b = _model(), _model()
    _train(a, OPTIMIZERS[name](a.parameters()), 4)
    _train(b, LowPrecision(OPTIMIZERS[name](b.parameters()), weight=FP32, grad=FP32, momentum=FP32, acc=FP32,
                           rounding="nearest"), 4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_state_tensor_is_representable_after_each_step(name):
    """Weights in W, gradients in G, accumulator masters in Acc, every state tensor in M, step by step."""
    model = _model()
    w, g, m, acc = "fp8_e4m3", "fp8_e5m2", "bf16", "float<e6m9>"
    opt = LowPrecision(OPTIMIZERS[name](model.parameters()), weight=w, grad=g, momentum=m, acc=acc)
    for step in range(3):
        _train(model, opt, 1, seed=step)
        for p in model.parameters():
            assert representable(p, w) and representable(p.grad, g) and representable(opt.masters[p], acc)
            state = [v for k, v in opt.state[p].items() if k != "step"]
            assert state and all(representable(v, m) for v in state)


def test_per_state_formats_and_per_role_rounding():
    model = _model()
    opt = LowPrecision(torch.optim.Adam(model.parameters(), lr=1e-2),
                       momentum={"exp_avg": "fp8_e4m3", "exp_avg_sq": "fp16"}, rounding={"momentum": "nearest"})
    _train(model, opt, 2)
    for p in model.parameters():
        assert representable(opt.state[p]["exp_avg"], "fp8_e4m3")
        assert representable(opt.state[p]["exp_avg_sq"], "fp16")
        assert not representable(opt.state[p]["exp_avg_sq"], "fp8_e4m3")
    assert opt.rounding == {"weight": "stochastic", "grad": "stochastic", "momentum": "nearest", "acc": "stochastic"}


def test_sgd_update_follows_qpytorch_semantics():
    """Plain SGD, nearest rounding: master <- Acc(master - lr * G(grad * scale)); weight <- W(master)."""
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(50))
    grad = torch.randn(50) * 3
    w, g, acc = "fp8_e4m3", "fp8_e5m2", "fp16"
    opt = LowPrecision(torch.optim.SGD([p], lr=0.1), weight=w, grad=g, acc=acc, grad_scale=0.5, rounding="nearest")
    master = qsim.quantize(p.detach().clone(), acc)
    for _ in range(3):
        p.grad = grad.clone()
        opt.step()
        master = qsim.quantize(master - 0.1 * qsim.quantize(grad * 0.5, g), acc)
        assert torch.equal(opt.masters[p], master)
        assert torch.equal(p.detach(), qsim.quantize(master, w))


def test_without_accumulator_the_weight_itself_is_rounded_after_the_update():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LowPrecision(torch.optim.SGD([p], lr=0.01), weight="fp8_e4m3", rounding="nearest")
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0]))  # 0.99 and 1.99 round back: updates are swamped
    assert not opt.masters


def test_state_dict_round_trips():
    """Saving after k steps and loading into a fresh wrapper continues identically."""
    model = _model()
    opt = LowPrecision(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), weight="bf16", grad="bf16",
                       momentum="bf16", acc="fp16", rounding="nearest")
    _train(model, opt, 2)
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(model, opt, 2, seed=7)

    fresh = _model()
    fresh.load_state_dict(saved_model)
    opt2 = LowPrecision(torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9), weight="bf16", grad="bf16",
                        momentum="bf16", acc="fp16", rounding="nearest")
    opt2.load_state_dict(saved)
    _train(fresh, opt2, 2, seed=7)
    for pa, pb in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(pa, pb)


def test_lr_scheduler_drives_the_shared_param_groups():
    model = _model()
    inner = torch.optim.SGD(model.parameters(), lr=1.0)
    opt = LowPrecision(inner, weight="bf16")
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train(model, opt, 1)
    scheduler.step()
    assert inner.param_groups[0]["lr"] == 0.5 and opt.param_groups is inner.param_groups


def test_bad_arguments_name_the_argument():
    params = _model().parameters()
    with pytest.raises(TypeError, match="optimizer"):
        LowPrecision(params)
    inner = torch.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="grad_scale"):
        LowPrecision(inner, grad_scale=0)
    with pytest.raises(ValueError, match="momentum"):
        LowPrecision(inner, momentum="fp99")
    with pytest.raises(ValueError, match="rounding"):
        LowPrecision(inner, rounding={"weights": "nearest"})
