"""qsim.nn.Quantizer / quantizer / quantize_fb: forward rounds the tensor, backward rounds the gradient."""
import math

import pytest
import torch

import qsim
from qsim.nn import Quantizer, quantize_fb, quantizer


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(64, 33) * 3


def test_forward_equals_qsim_quantize(x):
    """The forward value is exactly qsim.quantize of the input."""
    q = Quantizer(forward="fp8_e4m3")
    assert torch.equal(q(x), qsim.quantize(x, "fp8_e4m3"))


def test_backward_rounds_incoming_gradient_only(x):
    """d/dx of sum(Quantizer(x) * g) is quantize(g, backward): the value path is straight-through."""
    leaf = x.clone().requires_grad_()
    g = torch.randn_like(x) * 1e-2
    (Quantizer(forward="fp8_e4m3", backward="fp8_e5m2")(leaf) * g).sum().backward()
    assert torch.equal(leaf.grad, qsim.quantize(g, "fp8_e5m2"))


def test_backward_only_leaves_forward_unchanged(x):
    """forward=None is the identity in value, backward still rounds."""
    leaf = x.clone().requires_grad_()
    y = quantize_fb(leaf, None, qsim.formats.get("bf16"))
    assert torch.equal(y, x)
    g = torch.randn_like(x)
    y.backward(g)
    assert torch.equal(leaf.grad, g.bfloat16().float())


def test_stochastic_rounding_reproducible_under_manual_seed(x):
    """Stochastic rounding draws from torch's generator, so torch.manual_seed makes it repeatable."""
    q = quantizer(forward="fp8_e5m2", forward_rounding="stochastic")
    torch.manual_seed(3)
    a = q(x)
    torch.manual_seed(3)
    b = q(x)
    assert torch.equal(a, b)
    assert torch.equal(qsim.quantize(a, "fp8_e5m2"), a)


def test_functional_form_equals_module(x):
    leaf1, leaf2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn_like(x)
    quantizer("bf16", "fp8_e5m2")(leaf1).backward(g)
    Quantizer("bf16", "fp8_e5m2")(leaf2).backward(g)
    assert torch.equal(leaf1.grad, leaf2.grad)


def test_tensor_scaling_is_a_power_of_two_into_range():
    """scaling='tensor' multiplies by 2^floor(log2(max/amax)), rounds, divides: large tensors do not saturate."""
    torch.manual_seed(1)
    x = torch.randn(1000) * 5000.0  # far beyond e4m3's max of 448
    fmt = qsim.formats.get("fp8_e4m3")
    amax = x.abs().max().item()
    scale = 2.0 ** math.floor(math.log2(fmt.max / amax))
    expected = qsim.quantize(x * scale, fmt) / scale
    got = quantizer(fmt, scaling="tensor")(x)
    assert torch.equal(got, expected)
    assert (got - x).abs().max() <= amax * 2 ** -4  # 3 mantissa bits: relative error <= 2^-4 at the top


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="fmt"):
        Quantizer(forward="fp9_nothing")
    with pytest.raises(ValueError, match="backward_rounding"):
        Quantizer(backward="bf16", backward_rounding="sideways")
    with pytest.raises(TypeError, match="forward"):
        Quantizer(forward=8)
    with pytest.raises(ValueError, match="scaling"):
        quantizer("bf16", scaling="channel")


def test_tensor_scaling_uses_the_largest_power_of_two_that_keeps_the_maximum_in_range():
    """scaling='tensor' multiplies by 2^k, k the largest integer with amax·2^k <= max (exact fractions), also
    where floor(log2(max / amax)) computed in float32 would be one off (amax just above max / 2^j)."""
    from fractions import Fraction

    from qsim.nn.quantizer import round_tensor

    fmt = qsim.formats.get("fp8_e4m3")
    generator = torch.Generator().manual_seed(0)
    # 29360130 = 448·2^16·(1 + 2^-22.6): the float32 quotient 448 / amax rounds up to 2^-16.
    edges = [29360130.0] + [448 * 2.0 ** -j * (1 + 2.0 ** -23) for j in range(-20, 20)] + \
        [448 * 2.0 ** -j for j in range(-20, 20)]
    random = (torch.rand(2000, generator=generator) * 2.0 ** torch.randint(-60, 60, (2000,), generator=generator))
    for amax in torch.tensor(edges + random.tolist(), dtype=torch.float32):
        a = Fraction(float(amax))
        k = 130
        while Fraction(2) ** k * a > Fraction(fmt.max):
            k -= 1
        k = max(-126, k)
        x = torch.stack([amax, -amax / 3])
        for rounding in ("nearest", "up"):  # rounding up shows a scale one too high: the maximum saturates
            want = qsim.quantize(x * 2.0 ** k, fmt, rounding) / 2.0 ** k
            assert torch.equal(round_tensor(x, fmt, rounding, "tensor"), want), (float(amax), rounding)
