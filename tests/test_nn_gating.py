"""Channel-gated convs: Δ = −inf is the dense conv and Δ = +inf the base-path conv bit for bit; any Δ agrees with a
plain per-channel torch reference of the paper's formula; gradients reach weights and thresholds as the
straight-through sigmoid surrogate says; gate_model converts by rules, counts MACs, composes with quantize_model
and removes itself exactly; bad input raises naming the argument."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import qsim
from qsim.nn import ChannelGatedConv2d, QuantSpec, gate_model, quantize_model


def base_channels(k: int, in_per_group: int, out_per_group: int, partitions: int, grouping: str) -> list[int]:
    """Input channels (indices within output channel k's conv group) of k's base part, by the issue's rule."""
    part = in_per_group // partitions
    r = 0 if grouping == "first" else (k % out_per_group) % partitions
    return list(range(r * part, (r + 1) * part))


def reference(conv: nn.Conv2d, x, partitions, grouping, threshold, mean, var, eps, train):
    """out = Y·d + Yp·(1 − d), d = 1[BN(Yp) > Δ], one output channel at a time from sliced inputs and weights."""
    g = conv.groups
    cin, cout = conv.in_channels // g, conv.out_channels // g
    args = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
    ys, yps = [], []
    for k in range(conv.out_channels):
        group = k // cout
        xg = x[:, group * cin:(group + 1) * cin]
        bias = None if conv.bias is None else conv.bias[k:k + 1]
        ys.append(F.conv2d(xg, conv.weight[k:k + 1], bias, **args))
        base = base_channels(k, cin, cout, partitions, grouping)
        yps.append(F.conv2d(xg[:, base], conv.weight[k:k + 1, base], bias, **args))
    y, yp = torch.cat(ys, 1), torch.cat(yps, 1)
    if train:
        mean, var = yp.mean((0, 2, 3)), yp.var((0, 2, 3), unbiased=False)
    z = (yp - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps) - threshold.view(1, -1, 1, 1)
    return torch.where(z > 0, y, yp), z, y, yp


@st.composite
def gated_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    partitions = draw(st.sampled_from([1, 2, 3, 4]))
    cin = groups * partitions * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 5))
    kernel = draw(st.integers(1, 3))
    stride, dilation, padding = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    size = dilation * (kernel - 1) + 1 + draw(st.integers(0, 4))
    return dict(groups=groups, partitions=partitions, cin=cin, cout=cout, kernel=kernel, stride=stride,
                dilation=dilation, padding=padding, size=size, bias=draw(st.booleans()),
                grouping=draw(st.sampled_from(["first", "interleaved"])), batch=draw(st.integers(2, 3)),
                seed=draw(st.integers(0, 2**16)))


def make(case):
    torch.manual_seed(case["seed"])
    conv = nn.Conv2d(case["cin"], case["cout"], case["kernel"], case["stride"], case["padding"], case["dilation"],
                     case["groups"], bias=case["bias"])
    x = torch.randn(case["batch"], case["cin"], case["size"], case["size"])
    return conv, x


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(gated_cases(), st.booleans())
def test_all_gates_on_is_the_dense_conv_exactly(case, train):
    conv, x = make(case)
    gated = ChannelGatedConv2d(conv, case["partitions"], -math.inf, case["grouping"]).train(train)
    assert torch.equal(gated(x), conv(x))
    assert bool(gated.last_gate.all())


@SETTINGS
@given(gated_cases(), st.booleans())
def test_all_gates_off_is_the_base_path_conv_exactly(case, train):
    """Δ = +inf: the conv whose weights outside each output channel's base part are zero, bit for bit."""
    conv, x = make(case)
    base_only = nn.Conv2d(case["cin"], case["cout"], case["kernel"], case["stride"], case["padding"],
                          case["dilation"], case["groups"], bias=case["bias"])
    with torch.no_grad():
        base_only.weight.zero_()
        cin, cout = case["cin"] // case["groups"], case["cout"] // case["groups"]
        for k in range(case["cout"]):
            keep = base_channels(k, cin, cout, case["partitions"], case["grouping"])
            base_only.weight[k, keep] = conv.weight[k, keep]
        if case["bias"]:
            base_only.bias.copy_(conv.bias)
    gated = ChannelGatedConv2d(conv, case["partitions"], math.inf, case["grouping"]).train(train)
    assert torch.equal(gated(x), base_only(x))
    assert not bool(gated.last_gate.any())


@SETTINGS
@given(gated_cases(), st.booleans())
def test_output_agrees_with_plain_torch_reference(case, train):
    conv, x = make(case)
    gated = ChannelGatedConv2d(conv, case["partitions"], 0.0, case["grouping"]).train(train)
    with torch.no_grad():
        gated.gate.threshold.uniform_(-1, 1)
        gated.gate.norm.running_mean.normal_()
        gated.gate.norm.running_var.uniform_(0.5, 2)
    mean, var = gated.gate.norm.running_mean.clone(), gated.gate.norm.running_var.clone()
    with torch.no_grad():
        got = gated(x)
        want, z, y, yp = reference(conv, x, case["partitions"], case["grouping"], gated.gate.threshold, mean, var,
                                   gated.gate.norm.eps, train)
    clear = z.abs() > 1e-3  # away from the threshold both decide alike; at it, either path is a valid answer
    torch.testing.assert_close(got[clear], want[clear], rtol=1e-5, atol=1e-5)
    near = ~clear
    assert bool((torch.isclose(got[near], y[near], atol=1e-5) | torch.isclose(got[near], yp[near], atol=1e-5)).all())
    assert torch.equal(gated.last_gate[clear], (z > 0)[clear])


def test_weight_gradients_equal_dense_and_base_conv_gradients():
    """All on: the dense conv's weight gradient; all off: the base conv's, zero outside the base part."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, padding=1)
    x, g = torch.randn(2, 8, 7, 7), torch.randn(2, 6, 7, 7)
    conv(x).backward(g)
    dense_grad = conv.weight.grad.clone()
    for threshold, expected in ((-math.inf, dense_grad), (math.inf, None)):
        conv.weight.grad = None
        gated = ChannelGatedConv2d(conv, 4, threshold).eval()
        gated(x).backward(g)
        if expected is None:
            base = conv.weight.detach()[:, :2].clone().requires_grad_()
            F.conv2d(x[:, :2], base, conv.bias, padding=1).backward(g)
            expected = torch.zeros_like(dense_grad)
            expected[:, :2] = base.grad
        torch.testing.assert_close(conv.weight.grad, expected, rtol=1e-5, atol=1e-5)
        assert gated.gate.threshold.grad is not None and bool((gated.gate.threshold.grad == 0).all())


def test_threshold_gradient_is_the_sigmoid_surrogate_plus_gate_loss():
    """dL/dΔ_k = −Σ g·(Y − Yp)·slope·σ(slope·z)(1 − σ(slope·z)) + 2λ(Δ_k − target), with eval-mode BN."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 5, 3, padding=1))
    handle = gate_model(model, partitions=2, target=1.5, slope=3.0, loss_weight=0.01)
    gated = handle.modules["1"]
    with torch.no_grad():
        gated.gate.threshold.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    h = model[0](x)
    g = torch.randn(2, 5, 6, 6)
    (model(x) * g).sum().backward()
    handle.gate_loss().backward()
    norm = gated.gate.norm
    with torch.no_grad():
        _, z, y, yp = reference(gated, h, 2, "first", gated.gate.threshold, norm.running_mean, norm.running_var,
                                norm.eps, False)
        s = torch.sigmoid(3.0 * z)
        want = -(g * (y - yp) * 3.0 * s * (1 - s)).sum((0, 2, 3)) + 0.01 * 2 * (gated.gate.threshold - 1.5)
    torch.testing.assert_close(gated.gate.threshold.grad, want, rtol=1e-4, atol=1e-6)
    assert model[1].weight.grad.abs().sum() > 0


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, stride=2))


def test_remove_restores_the_original_modules_and_bit_identical_outputs():
    torch.manual_seed(2)
    model, x = small_net(), torch.randn(2, 3, 9, 9)
    before, originals = model(x), list(model)
    handle = gate_model(model, partitions=4)
    assert sorted(handle.modules) == ["2", "5"]  # the first conv and the 1x1 conv are skipped
    model.train()(x)  # gate statistics move; the shared weights do not
    assert not torch.equal(model(x), before)
    handle.remove()
    assert all(a is b for a, b in zip(model, originals))
    assert torch.equal(model(x), before)


def test_rules_options_and_skips():
    model = small_net()
    rules = [nn.Conv2d, ("5", {"partitions": 8, "grouping": "interleaved"}), ("2", None), ("0", {"partitions": 3})]
    handle = gate_model(model, rules=rules, partitions=2, skip_first=False, skip_pointwise=False)
    assert sorted(handle.modules) == ["0", "4", "5"]
    assert (handle.modules["5"].partitions, handle.modules["5"].grouping) == (8, "interleaved")
    assert (handle.modules["0"].partitions, handle.modules["4"].partitions) == (3, 2)
    handle.remove()
    handle = gate_model(model, rules={"[0-9]": {}}, partitions=2)  # a dict of rules; first and 1x1 skipped
    assert sorted(handle.modules) == ["2", "5"]
    handle.remove()


def test_stats_count_gated_macs_from_eval_forwards():
    """MACs: base = outputs·C/p·R·S, conditional = on-outputs·C(1 − 1/p)·R·S; ideal speedup = dense / sum."""
    torch.manual_seed(3)
    model = small_net()
    handle = gate_model(model, partitions=4)
    x = torch.randn(3, 3, 9, 9)
    model.train()(x)
    assert handle.stats().loc["total", "outputs"] == 0  # training forwards are not counted
    model.eval()(x)
    model(x)
    frame = handle.stats()
    for name, module in handle.modules.items():
        row = frame.loc[name]
        outputs = 2 * module.last_gate.numel()
        on = 2 * int(module.last_gate.sum())
        taps = math.prod(module.kernel_size)
        assert row.outputs == outputs and row.outputs_on == on
        assert row.base_macs == outputs * module.in_channels // 4 * taps
        assert row.conditional_macs == on * (module.in_channels - module.in_channels // 4) * taps
        assert row.dense_macs == outputs * module.in_channels * taps
        assert row.gated_off == pytest.approx(1 - on / outputs)
    total = frame.loc["total"]
    assert total.ideal_speedup == pytest.approx(total.dense_macs / (total.base_macs + total.conditional_macs))
    with torch.no_grad():
        for module in handle.modules.values():
            module.gate.threshold.fill_(math.inf)
    handle.reset_stats()
    model(x)
    assert handle.stats().loc["total", "ideal_speedup"] == pytest.approx(4.0)
    handle.remove()


def test_gated_then_quantized_equals_gated_on_quantized_weight_and_input():
    """gate_model then quantize_model (int8 weights and inputs): the gated conv computes on the rounded
    tensors, as the fixed-point accelerator does; removing both restores the float model."""
    torch.manual_seed(4)
    model = small_net().eval()
    x = torch.randn(2, 3, 9, 9)
    before = model(x)
    gates = gate_model(model, partitions=2)
    spec = QuantSpec(weight="int8", input="int8")
    quant = quantize_model(model, [(nn.Conv2d, spec)])
    gated = gates.modules["5"]
    h = model[:5](x)  # the input the last conv sees (quantized convs before it)
    got = gated(h)
    quant.remove()
    w = gated.weight.detach().clone()
    with torch.no_grad():
        gated.weight.copy_(qsim.quantize(w, "int8"))
        want = gated(qsim.quantize(h, "int8"))
        gated.weight.copy_(w)
    assert torch.equal(got, want)
    gates.remove()
    assert torch.equal(model(x), before)


def test_bad_input_raises_naming_the_argument():
    with pytest.raises(ValueError, match="partitions=3 must divide"):
        ChannelGatedConv2d(nn.Conv2d(8, 4, 3), partitions=3)
    with pytest.raises(ValueError, match="partitions=8: .* fewer than partitions"):
        ChannelGatedConv2d(nn.Conv2d(4, 4, 3), partitions=8)
    with pytest.raises(ValueError, match="partitions=2: .*1 input channel"):
        ChannelGatedConv2d(nn.Conv2d(4, 4, 3, groups=4), partitions=2)
    with pytest.raises(ValueError, match="grouping"):
        ChannelGatedConv2d(nn.Conv2d(4, 4, 3), grouping="random")
    with pytest.raises(ValueError, match="partitions"):
        ChannelGatedConv2d(nn.Conv2d(4, 4, 3), partitions=0)
    with pytest.raises(TypeError, match="conv"):
        ChannelGatedConv2d(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="module '2': partitions=3"):
        gate_model(small_net(), partitions=3)
    with pytest.raises(ValueError, match=r"rules\[0\]: 'fc\*' matches no nn.Conv2d"):
        gate_model(small_net(), rules="fc*")
    with pytest.raises(ValueError, match="unknown option"):
        gate_model(small_net(), rules=[(nn.Conv2d, {"partitons": 2})])
    with pytest.raises(TypeError, match=r"rules\[0\]"):
        gate_model(small_net(), rules=[42])
    with pytest.raises(ValueError, match="target"):
        gate_model(small_net(), target=float("nan"))
    model = small_net()
    quant = quantize_model(model, [(nn.Conv2d, QuantSpec(weight="int8"))])
    with pytest.raises(ValueError, match="gate the model first"):
        gate_model(model)
    quant.remove()
    handle = gate_model(model)
    with pytest.raises(ValueError, match="already gated"):
        gate_model(model)
    assert isinstance(model[2], ChannelGatedConv2d)  # the failed second call left the first one in place
    handle.remove()


def test_calibrate_sets_gate_statistics_to_those_of_the_base_partial_sums():
    """After calibrate(b1, b2): running mean/var = mean and unbiased variance of Yp over both batches (cumulative
    average of the per-batch statistics, as BatchNorm with momentum=None keeps them); the model's own BNs, the
    weights and the thresholds are untouched."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
    handle = gate_model(model, partitions=2, threshold=0.7)
    gated = handle.modules["3"]
    bn_before = model[1].running_mean.clone()
    batches = [torch.randn(4, 3, 9, 9), torch.randn(4, 3, 9, 9)]
    handle.calibrate(*batches)
    means, variances = [], []
    with torch.no_grad():
        for b in batches:
            h = model[:3].eval()(b)
            yp = F.conv2d(h[:, :4], gated.weight[:, :4], gated.bias, padding=1)
            means.append(yp.mean((0, 2, 3)))
            variances.append(yp.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(gated.gate.norm.running_mean, (means[0] + means[1]) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gated.gate.norm.running_var, (variances[0] + variances[1]) / 2, rtol=1e-5, atol=1e-6)
    assert torch.equal(model[1].running_mean, bn_before)
    assert bool((gated.gate.threshold == 0.7).all()) and gated.gate.norm.momentum == 0.1 and model.training  # mode restored
    with pytest.raises(ValueError, match="batches"):
        handle.calibrate()


def test_gated_conv_on_every_device(device):
    """Built from a conv on `device`: its gate and mask live there too; Δ = −inf is the dense conv bit for bit,
    gradients reach the thresholds, and the stats count on the host."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, padding=1, groups=2)).to(device)
    x = torch.randn(2, 3, 9, 9, device=device)
    dense = model(x)
    handle = gate_model(model, partitions=2, threshold=-math.inf, grouping="interleaved")
    assert torch.equal(model(x), dense)
    with torch.no_grad():
        handle.modules["1"].gate.threshold.fill_(0.0)
    model(x).sum().backward()
    assert handle.modules["1"].gate.threshold.grad.device.type == torch.device(device).type
    model.eval()(x)
    assert handle.stats().loc["total", "outputs"] == 2 * 8 * 7 * 7
    handle.remove()
