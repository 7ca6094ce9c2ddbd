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
