"""Hooks on the shapes of real models (torchvision/timm-like blocks built from plain torch.nn, random init):
in-place activations after hooked layers, copies of quantized models, MultiheadAttention, flush warnings."""
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import qsim
from qsim.nn import QuantSpec, quantize_model


class InplaceHead(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc, self.act = nn.Linear(6, 5), act

    def forward(self, x):
        y = self.fc(x)
        return F.relu_(y) if self.act == "relu_" else self.act(y)


@pytest.mark.parametrize("act", [nn.ReLU(inplace=True), nn.SiLU(inplace=True), "relu_"], ids=["relu", "silu", "relu_"])
def test_grad_output_alone_survives_an_inplace_activation_and_rounds_the_layer_error(act):
    """The layer's error E is rounded: dW = Q(dL/dy)^T x, with dL/dy taken before the in-place activation."""
    torch.manual_seed(0)
    model = InplaceHead(act)
    x, upstream = torch.randn(7, 6), torch.randn(7, 5)
    reference = InplaceHead(act)
    reference.load_state_dict(model.state_dict())
    with quantize_model(model, [(nn.Linear, QuantSpec(grad_output="fp8_e5m2"))]):
        (model(x) * upstream).sum().backward()
    y = reference.fc(x)
    y.retain_grad()
    z = y.clone()  # the in-place activation acts on a copy, so y.grad is the gradient before it
    out = F.relu_(z) if act == "relu_" else act(z)
    (out * upstream).sum().backward()
    error = qsim.quantize(y.grad, "fp8_e5m2")
    torch.testing.assert_close(model.fc.weight.grad, error.T @ x, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.fc.bias.grad, error.sum(0), rtol=0, atol=1e-6)


def test_backward_only_quantizer_output_can_be_modified_in_place():
    q = qsim.nn.Quantizer(backward="fp8_e5m2")
    x = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    y = q(x * 1)
    y.relu_()
    (y * torch.tensor([0.1001, 0.2, 0.3001])).sum().backward()
    assert torch.equal(x.grad, qsim.quantize(torch.tensor([0.1001, 0.0, 0.3001]), "fp8_e5m2"))


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))


SPEC = [((nn.Conv2d, nn.Linear), QuantSpec(weight="bf16", input="fp8_e4m3", grad_output="fp8_e5m2"))]


@pytest.mark.parametrize("how", ["deepcopy", "save"])
def test_copies_of_a_quantized_model_can_be_cleaned_and_are_not_stacked(how, tmp_path):
    """A copy carries the hooks; remove_quantization finds them from the model itself, quantize_model refuses
    to stack a second set unless replace=True, and the cleaned copy computes as the float32 model."""
    import copy

    torch.manual_seed(0)
    model, x = _cnn(), torch.randn(2, 3, 4, 4)
    plain = model(x)
    handle = quantize_model(model, SPEC)
    quantized = model(x)
    if how == "deepcopy":
        clone = copy.deepcopy(model)
    else:
        torch.save(model, tmp_path / "m.pt")
        clone = torch.load(tmp_path / "m.pt", weights_only=False)
    handle.remove()
    assert torch.equal(model(x), plain) and torch.equal(clone(x), quantized)
    assert qsim.nn.is_quantized(clone) and not qsim.nn.is_quantized(model)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(clone, SPEC)
    again = quantize_model(clone, SPEC, replace=True)
    assert torch.equal(clone(x), quantized)  # one set of hooks, not two
    again.remove()
    assert qsim.nn.remove_quantization(clone) == 0 and torch.equal(clone(x), plain)
    quantize_model(clone, SPEC)
    assert qsim.nn.remove_quantization(clone) == 2 and torch.equal(clone(x), plain)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.head = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.attn(query=x, key=x, value=x, need_weights=False)[0])


def test_multihead_attention_under_the_plain_rule_with_keyword_calls():
    """The README rule (Conv2d, Linear) on a model with attention: out_proj's weight is quantized where the
    attention reads it, its output format reaches the attention's output, and keyword inputs are rounded."""
    torch.manual_seed(0)
    model, x = Attention(), torch.randn(2, 5, 8)
    spec = QuantSpec(weight="int8", input="fp8_e4m3", output="fp8_e4m3", scaling="tensor")
    rules = [((nn.Conv2d, nn.Linear), spec), (nn.MultiheadAttention, QuantSpec(input="fp8_e4m3"))]
    with pytest.warns(UserWarning, match="out_proj's input"):
        handle = quantize_model(model, rules)
    got = model(x)
    handle.remove()
    from qsim.nn.quantizer import round_tensor
    r = lambda t, f: round_tensor(t, qsim.formats.get(f), "nearest", "tensor")  # noqa: E731
    xq = qsim.quantize(x, "fp8_e4m3")
    params = {n: (r(p, "int8") if n == "out_proj.weight" else p) for n, p in model.attn.named_parameters()}
    attended = torch.func.functional_call(model.attn, params, (xq, xq, xq), {"need_weights": False})[0]
    attended = qsim.quantize(attended, "fp8_e4m3")  # the attention's own rule (no scaling) governs its output
    want = r(nn.functional.linear(r(attended, "fp8_e4m3"), r(model.head.weight, "int8"), model.head.bias),
             "fp8_e4m3")
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_flushed_tensors_warn_once_per_place():
    """Unscaled int8 weights of a fresh network round to zero: one FlushWarning per weight, on the first step
    only; with scaling='tensor' nothing warns."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2)), torch.randn(4, 64)
    with quantize_model(model, [(nn.Linear, QuantSpec(weight="int8"))]):
        with pytest.warns(qsim.nn.FlushWarning) as record:
            model(x)
        messages = [str(w.message) for w in record if "weight" in str(w.message)]
        assert len(messages) == 2 and all("scaling='tensor'" in m for m in messages)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(x)  # checked once
    with quantize_model(model, [(nn.Linear, QuantSpec(weight="int8", grad_output="fp8_e5m2", scaling="tensor"))]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model(x).sum().backward()


def test_underflowing_gradients_warn():
    """fp8 e5m2 errors of a tiny loss underflow: the layer's grad_output check says so."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 1)), torch.randn(4, 8)
    with quantize_model(model, [(nn.Linear, QuantSpec(grad_output="fp8_e5m2"))]):
        with pytest.warns(qsim.nn.FlushWarning, match="'2' grad_output"):
            (model(x) * 1e-9).sum().backward()
