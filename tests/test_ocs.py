"""qsim.nn.ocs: the split network computes the same function, its weight range shrinks, and the splits
follow the paper's greedy rule."""
import math

import pytest
import torch
from torch import nn

import qsim
from qsim.nn.ocs import OCSConv2d, OCSLinear, split_channels


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
