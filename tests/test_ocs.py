"""qsim.nn.ocs: the split network computes the same function, its weight (or activation) range shrinks,
and the splits follow the paper's greedy rule."""
import math

import pytest
import torch
from torch import nn

import qsim
from qsim.nn import QuantSpec
from qsim.nn.ocs import ChannelSplit, OCSConv2d, OCSLinear, split_activation_channels, split_channels


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


@pytest.mark.parametrize("ratio", [0.05, 0.25, 1.0])
def test_split_network_computes_the_same_function(ratio):
    model = small_cnn().eval()
    split = qsim.nn.ocs(model, expand_ratio=ratio)
    x = torch.randn(4, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x), rtol=1e-5, atol=1e-5)
    assert isinstance(split[0], OCSConv2d) and isinstance(split[5], OCSLinear) and isinstance(model[0], nn.Conv2d)
    for before, after in ((model[0], split[0]), (model[2], split[2]), (model[5], split[5])):
        extra = math.ceil(ratio * before.weight.shape[1])
        assert after.weight.shape[1] == before.weight.shape[1] + extra
        assert float(after.weight.detach().abs().max()) < float(before.weight.detach().abs().max())


def test_in_float64_the_split_is_exact_up_to_summation_order():
    layer = nn.Linear(6, 3).double()
    split = qsim.nn.ocs(layer, expand_ratio=0.5)
    assert isinstance(split, OCSLinear) and split.weight.shape == (3, 9)  # a bare layer is split too
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(split(x), layer(x), rtol=1e-13, atol=1e-13)


def test_greedy_rule_on_a_worked_example():
    # Channel 1 holds 8: halved to 4 (copy appended); then channel 2's 5 is the largest; then 4 (channel 1, first).
    w = torch.tensor([[1.0, 8.0, -5.0], [2.0, 0.5, 1.0]])
    weight, source = split_channels(w, 3)
    assert source.tolist() == [0, 1, 2, 1, 2, 1]
    assert weight.tolist() == [[1.0, 2.0, -2.5, 4.0, -2.5, 2.0], [2.0, 0.125, 0.5, 0.25, 0.5, 0.125]]


def test_split_layers_take_weight_quantization_hooks():
    split = qsim.nn.ocs(small_cnn().eval(), expand_ratio=0.1)
    x = torch.randn(2, 3, 6, 6)
    with qsim.quantize_model(split, [(nn.Conv2d, qsim.QuantSpec(weight="int8"))]) as handle:
        assert set(handle.specs) == {"0", "2"}
        with torch.no_grad():
            y = split(x)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(expand_ratio=-0.1), ValueError, "expand_ratio"), (dict(expand_ratio=2), ValueError, "expand_ratio"),
    (dict(expand_ratio="5%"), ValueError, "expand_ratio"), (dict(types=nn.Conv1d), TypeError, "types"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        qsim.nn.ocs(small_cnn(), **kwargs)


def test_grouped_convolutions_are_refused():
    with pytest.raises(ValueError, match="groups=1"):
        qsim.nn.ocs(nn.Conv2d(4, 4, 3, groups=2))


def layer_inputs(model, x):
    """The largest |activation| each layer multiplies (by name) over model(x): its input, or for a split
    layer the output of its ChannelSplit."""
    peaks = {}

    def record(name, x):
        peaks[name] = float(x.abs().max())

    hooks = [m.register_forward_hook(lambda m, a, out, name=name: record(name, out)) if isinstance(m, ChannelSplit)
             else m.register_forward_pre_hook(lambda m, a, name=name: record(name, a[0]))
             for name, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear, ChannelSplit)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return peaks


@pytest.mark.parametrize("ratio", [0.05, 0.25, 1.0])
def test_activation_split_computes_the_same_function_and_shrinks_the_activation(ratio):
    model = small_cnn().double().eval()
    x = torch.randn(8, 3, 6, 6, dtype=torch.float64)
    split = qsim.nn.ocs(model, expand_ratio=ratio, activations=x)
    with torch.no_grad():
        torch.testing.assert_close(split(x), model(x), rtol=1e-12, atol=1e-12)
        conv = qsim.nn.ocs(model[0], expand_ratio=ratio, activations=x)  # an unbatched image too
        torch.testing.assert_close(conv(x[0]), model[0](x[0]), rtol=1e-12, atol=1e-12)
    before = layer_inputs(model, x)
    after = layer_inputs(split, x)
    assert set(after) == {f"{name}.split" for name in before}
    for name, peak in before.items():
        assert after[f"{name}.split"] < peak
        layer = split.get_submodule(name)
        assert layer.weight.shape[1] == model.get_submodule(name).weight.shape[1] + math.ceil(
            ratio * model.get_submodule(name).weight.shape[1])
        # Weight columns are duplicated, not halved: the weight range is unchanged.
        assert float(layer.weight.abs().max()) == float(model.get_submodule(name).weight.abs().max())


def test_activation_greedy_rule_on_a_worked_example():
    # Peaks 1, 8, 5: channel 1 halves (4, copy appended), then channel 2 (2.5), then channel 1 again (first tie).
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    weight, source, gain = split_activation_channels(w, torch.tensor([1.0, 8.0, -0.0 + 5.0]), 3)
    assert source.tolist() == [0, 1, 2, 1, 2, 1]
    assert gain.tolist() == [1.0, 0.25, 0.5, 0.5, 0.5, 0.25]
    assert weight.tolist() == [[1.0, 2.0, 3.0, 2.0, 3.0, 2.0], [4.0, 5.0, 6.0, 5.0, 6.0, 5.0]]


def test_activation_outliers_are_found_on_the_calibration_inputs():
    torch.manual_seed(1)
    layer = nn.Linear(4, 3)
    x = torch.rand(16, 4)
    x[5, 2] = -100.0  # the outlier channel: |x| counts
    split = qsim.nn.ocs(layer, expand_ratio=0.25, activations=x)
    assert split.source.tolist() == [0, 1, 2, 3, 2]
    assert split.split.gain.tolist() == [1.0, 1.0, 0.5, 1.0, 0.5]
    assert torch.equal(split.split(x)[5], torch.tensor([x[5, 0], x[5, 1], -50.0, x[5, 3], -50.0]))


def test_calibration_leaves_the_model_state_alone():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = qsim.nn.ocs(model, 0.5, activations=torch.randn(4, 2, 5, 5) + 3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert split.training and split[0].training


def test_split_activations_take_quantization_rules():
    model = small_cnn().eval()
    x = torch.randn(4, 3, 6, 6)
    split = qsim.nn.ocs(model, expand_ratio=0.25, activations=x)
    with qsim.quantize_model(split, [(ChannelSplit, QuantSpec(output="int8", scaling="tensor"))]) as handle:
        assert set(handle.specs) == {"0.split", "2.split", "5.split"}
        with torch.no_grad():
            y = split(x)
    torch.testing.assert_close(y, model(x), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("activations, error, match", [
    ([torch.randn(1, 3, 6, 6)], TypeError, "activations: expected a tensor"),
    ((), TypeError, "activations: expected a tensor"),
    (torch.zeros(0, 3, 6, 6), ValueError, "non-empty"),
    (torch.full((1, 3, 6, 6), float("nan")), ValueError, "non-finite"),
])
def test_bad_activations(activations, error, match):
    with pytest.raises(error, match=match):
        qsim.nn.ocs(small_cnn(), activations=activations)


def test_a_layer_the_calibration_never_reaches_is_named():
    model = nn.ModuleDict({"used": nn.Linear(3, 3), "unused": nn.Linear(3, 3)})
    model.forward = lambda x: model["used"](x)
    with pytest.raises(ValueError, match="never called layer.*unused"):
        qsim.nn.ocs(model, activations=torch.randn(2, 3))
