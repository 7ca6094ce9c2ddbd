"""OverQ as an activation format: inline specs, qsim.quantize, quantize_model hooks, per-layer calibration."""
import math

import pytest
import torch
from torch import nn

import qsim
from qsim import OverQ, QuantSpec, quantize_model
from qsim.formats.overq import OverQStats
from qsim.nn.overq import calibrate
from qsim.overq import choose_scale


def relu_activations(seed=0, shape=(8, 16, 6, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(shape, generator=g)) * torch.exp(torch.randn(shape, generator=g))


@pytest.mark.parametrize("spec, value", [
    ("overq<4>", OverQ(4)),
    ("overq<4,cascade=2>", OverQ(4, cascade=2)),
    ("overq<3,cascade=0,scale=max,precision=false,dim=-1>", OverQ(3, 0, "max", False, -1)),
    ("overq<4,cascade=1,scale=percentile:99.9>", OverQ(4, 1, "percentile:99.9")),
    ("overq<4,cascade=1,scale=0.0625>", OverQ(4, 1, 0.0625)),
])
def test_inline_specs_parse_and_round_trip(spec, value):
    assert qsim.formats.get(spec) == value
    assert qsim.formats.get(value.spec) == value and hash(qsim.formats.get(value.spec)) == hash(value)


@pytest.mark.parametrize("spec, match", [
    ("overq<>", "expected overq<bits"), ("overq<4,cascade>", "option 'cascade'"),
    ("overq<4,width=2>", "option"), ("overq<1>", "bits"), ("overq<4,cascade=63>", "cascade"),
    ("overq<4,scale=-1>", "scale"), ("overq<4,scale=percentile:0>", "scale"), ("overq<4,scale=median>", "scale"),
    ("overq<4,precision=yes>", "expected overq"),
])
def test_bad_specs_raise(spec, match):
    with pytest.raises(ValueError, match=match):
        qsim.formats.get(spec)


def test_quantize_with_a_fixed_step_equals_overq_quantize():
    x = relu_activations()
    y, _ = qsim.overq_quantize(x, 4, 0.125, cascade=2)
    assert torch.equal(qsim.quantize(x, "overq<4,cascade=2,scale=0.125>"), y)
    with pytest.raises(ValueError, match="rounding: OverQ rounds half to even only"):
        qsim.quantize(x, "overq<4,cascade=2,scale=0.125>", rounding="stochastic", seed=0)


def test_strategies_pick_the_documented_steps():
    x = relu_activations(1)
    assert choose_scale(x, 4, "max") == pytest.approx(float(x.max()) / 15, rel=1e-7)
    p = float(torch.quantile(x.flatten().double(), 0.99))  # linear interpolation, as numpy's default
    assert choose_scale(x, 4, "percentile:99") == pytest.approx(p / 15, rel=1e-6)
    # "mse": no candidate step gives a smaller squared error than the one chosen (brute force over the grid).
    step = choose_scale(x, 4, "mse", cascade=1)
    errors = {k: float(((qsim.overq_quantize(x, 4, float(x.max()) / 15 * k / 64, cascade=1)[0] - x) ** 2).sum())
              for k in range(1, 65)}
    assert errors[round(step / (float(x.max()) / 15) * 64)] == pytest.approx(min(errors.values()))
    assert choose_scale(torch.zeros(3, 4), 4, "mse") == 1.0


def test_a_spec_string_quantizes_the_outputs_of_hooked_modules():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        hidden = model[1](model[0](x))
        want = model[2](qsim.overq_quantize(hidden, 4, 0.05, cascade=2)[0])
    with quantize_model(model, [(nn.ReLU, QuantSpec(output="overq<4,cascade=2,scale=0.05>"))]):
        with torch.no_grad():
            got = model(x)
    assert torch.equal(got, want)


def test_calibrate_fixes_one_step_per_layer_and_summary_shows_coverage():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    x = torch.randn(64, 12)
    rules = calibrate(model, [(nn.ReLU, QuantSpec(output=OverQ(bits=3, cascade=2, scale="percentile:99")))], x)
    by_name = dict((name, spec) for name, spec in rules[1:])
    assert set(by_name) == {"1", "3"}
    with torch.no_grad():
        a1 = model[1](model[0](x))
    fmt = by_name["1"].output
    assert fmt.scale == pytest.approx(choose_scale(a1, 3, "percentile:99"))
    _, info = qsim.overq_quantize(a1, 3, fmt.scale, cascade=2)
    assert fmt.stats == OverQStats(info.outliers, info.covered, info.precise, a1.numel()) and info.outliers > 0
    handle = quantize_model(model, rules)
    from rich.console import Console
    console = Console(record=True, width=250)
    handle.summary(console=console)
    text = console.export_text()
    assert f"{fmt.stats.coverage:.0%} of {fmt.stats.outliers} outliers covered" in text
    with torch.no_grad():
        y = model(x)
    handle.remove()
    with torch.no_grad():
        step1 = qsim.overq_quantize(model[1](model[0](x)), 3, fmt.scale, cascade=2)[0]
        h = model[3](model[2](step1))
        want = model[4](qsim.overq_quantize(h, 3, by_name["3"].output.scale, cascade=2)[0])
    assert torch.equal(y, want)


def test_calibrate_errors():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(ValueError, match="no rule gives an OverQ"):
        calibrate(model, [(nn.ReLU, QuantSpec(output="int8"))], torch.randn(2, 4))
    with pytest.raises(TypeError, match="model"):
        calibrate("model", [], torch.randn(2, 4))


def test_stats_do_not_change_the_value():
    a = OverQ(4, 2, 0.5)
    b = OverQ(4, 2, 0.5, stats=OverQStats(10, 9, 3, 100))
    assert a == b and hash(a) == hash(b) and "90% of 10 outliers covered" in b.name and a.name == a.spec
    assert math.isnan(OverQStats(0, 0, 0, 5).coverage)
