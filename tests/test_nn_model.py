"""quantize_model: hooked modules compute what qsim.quantize applied by hand computes; removal is exact;
rules resolve by precedence and name patterns; the summary lists exactly the hooked modules."""
import io

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.func import functional_call

import qsim
from qsim.nn import QuantSpec, quantize_model, register_module_type

A, W, E = "fp8_e4m3", "bf16", "fp8_e5m2"


def q(t, fmt):
    return qsim.quantize(t, fmt)


def test_linear_output_and_gradients_equal_manual_graph():
    """Every role of a Linear: the output and all gradients equal a hand-built autograd graph in which
    qsim.quantize rounds the values and tensor hooks round the gradients."""
    torch.manual_seed(0)
    layer = nn.Linear(17, 9)
    spec = QuantSpec(weight=W, bias=A, input=A, output=W, grad_weight=E, grad_bias="fp16",
                     grad_input=E, grad_output="fp16")
    x = torch.randn(5, 17, requires_grad=True)
    g = torch.randn(5, 9)

    handle = quantize_model(layer, [(nn.Linear, spec)])
    layer(x).backward(g)
    hooked = (x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    y_hooked = layer(x).detach()
    handle.remove()

    x2 = x.detach().clone().requires_grad_()
    w2, b2 = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    xq, wq, bq = q(x2, A), q(w2, W), q(b2, A)
    xq.register_hook(lambda grad: q(grad, E))
    wq.register_hook(lambda grad: q(grad, E))
    bq.register_hook(lambda grad: q(grad, "fp16"))
    y = q(F.linear(xq, wq, bq), W)
    y.register_hook(lambda grad: q(grad, "fp16"))
    y.backward(g)
    assert torch.equal(y_hooked, y.detach())
    for got, want in zip(hooked, (x2.grad, w2.grad, b2.grad)):
        assert torch.equal(got, want)


MODULES = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), lambda: torch.randn(2, 3, 10)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, groups=1), lambda: torch.randn(2, 3, 9, 9)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), lambda: torch.randn(1, 2, 4, 4, 4)),
    "convtranspose2d": (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2), lambda: torch.randn(2, 3, 5, 5)),
    "embedding": (lambda: nn.Embedding(20, 6), lambda: torch.randint(0, 20, (3, 7))),
    "lstm": (lambda: nn.LSTM(5, 6, num_layers=2, bidirectional=True), lambda: torch.randn(4, 2, 5)),
    "gru": (lambda: nn.GRU(5, 6, batch_first=True), lambda: torch.randn(2, 4, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), lambda: torch.randn(4, 3, 5, 5)),
    "layernorm": (lambda: nn.LayerNorm(8), lambda: torch.randn(3, 8)),
    "mha": (lambda: nn.MultiheadAttention(8, 2), lambda: torch.randn(5, 2, 8)),
}


def _first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_module_output_equals_functional_call_with_quantized_tensors(kind):
    """Each supported type: the hooked output is the module's own computation on quantized parameters
    and input (torch.func.functional_call), then rounded; and removing the hooks restores it bit for bit."""
    make, make_input = MODULES[kind]
    torch.manual_seed(1)
    module = make().train()
    x = make_input()
    args = (x, x, x) if kind == "mha" else (x,)
    torch.manual_seed(2)
    before = _first(module(*args)).detach()

    params = dict(module.named_parameters())
    quantized = {name: q(p, W if "bias" in name else A) for name, p in params.items()}
    xin = q(x, A) if x.is_floating_point() else x
    torch.manual_seed(2)
    want = q(_first(functional_call(module, quantized, (xin, xin, xin) if kind == "mha" else (xin,))), E)

    rules = [(nn.Module, QuantSpec(weight=A, bias=W, input=A, output=E))]
    if kind == "mha":
        rules.append(("out_proj", QuantSpec(weight=A, bias=W)))
    handle = quantize_model(module, rules)
    torch.manual_seed(2)
    got = _first(module(*args)).detach()
    assert torch.equal(got, want)
    assert not torch.equal(got, before)
    handle.remove()
    torch.manual_seed(2)
    assert torch.equal(_first(module(*args)).detach(), before)


def test_master_weights_untouched_and_remove_restores_everything():
    """Without store_weights the Parameters keep their float32 values and identity; after remove the
    state_dict keys, parameters and outputs are those of the unhooked model."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
    x = torch.randn(2, 1, 5, 5)
    ref = model(x)
    params = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    keys = list(model.state_dict())
    handle = quantize_model(model, [("*", QuantSpec(weight="fp8_e4m3", input="fp8_e4m3", grad_output=E,
                                                    acc="fp16", chunk=2))])
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p is params[name][0] and torch.equal(p, params[name][1])
    handle.remove()
    assert list(model.state_dict()) == keys
    assert torch.equal(model(x), ref)
    assert "forward" not in vars(model[0]) and "forward" not in vars(model[4])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_store_weights_rounds_the_stored_parameters():
    """store_weights=True rounds the Parameter itself, at attach time and again after an update."""
    torch.manual_seed(0)
    layer = nn.Linear(10, 4)
    quantize_model(layer, [(nn.Linear, QuantSpec(weight="fp8_e4m3", store_weights=True))])
    assert torch.equal(q(layer.weight, "fp8_e4m3"), layer.weight)
    with torch.no_grad():
        layer.weight.add_(torch.randn_like(layer.weight) * 1e-2)
    assert not torch.equal(q(layer.weight, "fp8_e4m3"), layer.weight)
    layer(torch.randn(2, 10)).sum().backward()
    assert torch.equal(q(layer.weight, "fp8_e4m3"), layer.weight)
    assert layer.weight.grad is not None


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(Block(), Block())
        self.head = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_name_patterns_and_precedence():
    """A glob matches qualified names; later rules override earlier ones whole; blocks match by exact name."""
    net = Net()
    s1, s2, s3 = QuantSpec(weight="fp16"), QuantSpec(weight="fp8_e4m3"), QuantSpec(output="bf16")
    handle = quantize_model(net, [(nn.Conv2d, s1), ("features.*.conv", s2), ("head", s1), ("features.1", s3)])
    assert handle.specs == {"features.0.conv": s2, "features.1": s3, "features.1.conv": s2, "head": s1}
    handle.remove()
    handle = quantize_model(net, [("features.*.conv", s2), (nn.Conv2d, s1)])
    assert handle.specs == {"features.0.conv": s1, "features.1.conv": s1}
    handle.remove()
    # '*' matches layers (with or without parameters) but not the blocks that hold them.
    handle = quantize_model(net, [("*", QuantSpec(output="bf16"))])
    assert set(handle.specs) == {"features.0.conv", "features.0.act", "features.1.conv", "features.1.act", "head"}
    handle.remove()


def test_parameter_fields_do_not_apply_to_parameterless_modules():
    """A weight-only rule hooks nothing on a ReLU; its applied spec keeps only the activation fields."""
    net = Net()
    handle = quantize_model(net, [("*", QuantSpec(weight="fp16", output="bf16", acc="fp16"))])
    assert handle.specs["features.0.act"] == QuantSpec(output="bf16")
    assert handle.specs["head"] == QuantSpec(weight="fp16", output="bf16", acc="fp16")
    handle.remove()
    handle = quantize_model(net, [("*", QuantSpec(weight="fp16"))])
    assert set(handle.specs) == {"features.0.conv", "features.1.conv", "head"}
    handle.remove()


def test_summary_lists_exactly_the_hooked_modules():
    net = Net()
    handle = quantize_model(net, [("features.*.conv", QuantSpec(weight="fp8_e4m3")), ("head", QuantSpec(input=A))])
    hooked = {name for name, m in net.named_modules() if m._forward_pre_hooks}
    assert hooked == set(handle.specs) == {"features.0.conv", "features.1.conv", "head"}
    buffer = io.StringIO()
    handle.summary(Console(file=buffer, width=200))
    text = buffer.getvalue()
    rows = [line for line in text.splitlines() if "│" in line and "module" not in line]
    assert [row.split("│")[1].strip() for row in rows] == ["features.0.conv", "features.1.conv", "head"]
    assert "fp8_e4m3" in text and "3 quantized modules" in text


def test_pattern_matching_nothing_raises():
    with pytest.raises(ValueError, match="featurez"):
        quantize_model(Net(), [("featurez.*", QuantSpec(weight="fp16"))])


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((3,), 1.1))

    def forward(self, x):
        return x * self.scale


def test_unknown_module_with_parameters_raises_until_registered():
    """Matching a module type qsim does not know is an error naming it, not a silent skip."""
    model = nn.Sequential(Custom())
    with pytest.raises(TypeError, match="Custom"):
        quantize_model(model, [(Custom, QuantSpec(weight="fp8_e4m3"))])
    register_module_type(Custom)
    handle = quantize_model(model, [(Custom, QuantSpec(weight="float<e4m1>"))])
    assert torch.equal(model(torch.ones(3)), q(model[0].scale, "float<e4m1>"))
    handle.remove()


def test_acc_on_a_module_without_gemm_simulation_raises():
    with pytest.raises(TypeError, match="acc"):
        quantize_model(nn.LSTM(3, 3), [(nn.LSTM, QuantSpec(acc="fp16"))])


def test_hooking_twice_raises_and_leaves_first_hooks():
    layer = nn.Linear(3, 3)
    handle = quantize_model(layer, [(nn.Linear, QuantSpec(weight="fp16"))])
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(layer, [(nn.Linear, QuantSpec(weight="bf16"))])
    assert len(layer._forward_pre_hooks) == 1
    handle.remove()
    quantize_model(layer, [(nn.Linear, QuantSpec(weight="bf16"))]).remove()


def test_multihead_attention_out_proj_weights_and_outputs():
    """MultiheadAttention reads out_proj's weight without calling out_proj: its weight formats are applied
    through the parent's hooks, its output format to the attention's output, its input format (the
    attention's internal context) is dropped with a warning, and an accumulator is refused with a way out."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    x = torch.randn(4, 1, 8)
    with pytest.raises(TypeError, match="'out_proj': a low-precision accumulator"):
        quantize_model(mha, [(nn.Linear, QuantSpec(weight=A, acc="fp16"))])
    params = {n: (q(p, A) if n == "out_proj.weight" else p) for n, p in mha.named_parameters()}
    with pytest.warns(UserWarning, match="out_proj's input"):
        handle = quantize_model(mha, [(nn.Linear, QuantSpec(weight=A, input=A, output=A))])
    out, weights = mha(x, x, x)
    want, want_weights = functional_call(mha, params, (x, x, x))
    assert torch.equal(out, q(want, A)) and torch.equal(weights, want_weights)  # attention weights stay float32
    handle.remove()
    handle = quantize_model(mha, [(nn.Linear, QuantSpec(weight=A))])
    assert set(handle.specs) == {"out_proj"}
    params = {n: (q(p, A) if n == "out_proj.weight" else p) for n, p in mha.named_parameters()}
    assert torch.equal(mha(x, x, x)[0], functional_call(mha, params, (x, x, x))[0])
    handle.remove()


def test_transformer_block_hooks_fire_in_training_and_eval():
    """Linear layers inside a TransformerEncoderLayer are quantized (torch's fused fast path is off while
    hooks are attached), in train and eval mode."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    x = torch.randn(2, 5, 8)
    for mode in (layer.train, layer.eval):
        mode()
        quantized = {n: (q(p, A) if n.endswith("weight") and "norm" not in n else p) for n, p in layer.named_parameters()}
        want = functional_call(layer, quantized, (x,))  # parameters requiring grad: torch's unfused path
        plain = layer(x)
        handle = quantize_model(layer, [((nn.Linear,), QuantSpec(weight=A)), ("*.out_proj", QuantSpec(weight=A)),
                                        (nn.MultiheadAttention, QuantSpec(weight=A))])
        assert torch.equal(layer(x), want)
        if not layer.training:
            # Without grad, eval mode takes torch's fused kernels: same values up to their float32 rounding.
            with torch.no_grad():
                fused = layer(x)
            assert torch.allclose(fused, want, atol=1e-5) and not torch.allclose(fused, plain, atol=1e-3)
        handle.remove()


def test_acc_rule_uses_functional_accumulator():
    """A rule with acc runs the module's GEMM through qsim.nn.functional with that accumulator."""
    torch.manual_seed(0)
    layer, conv = nn.Linear(40, 5), nn.Conv2d(3, 4, 3, padding=1)
    x, xc = torch.randn(6, 40), torch.randn(2, 3, 6, 6)
    handle = quantize_model(nn.ModuleList([layer, conv]), [("*", QuantSpec(weight=W, acc="fp16", chunk=4))])
    want = qsim.nn.functional.linear(x, q(layer.weight, W), layer.bias, acc="fp16", chunk=4)
    assert torch.equal(layer(x), want)
    want_c = qsim.nn.functional.conv2d(xc, q(conv.weight, W), conv.bias, padding=1, acc="fp16", chunk=4)
    assert torch.equal(conv(xc), want_c)
    handle.remove()


def test_rules_are_checked():
    with pytest.raises(TypeError, match="rules\\[0\\]"):
        quantize_model(nn.Linear(2, 2), [(nn.Linear, {"weight": "fp16"})])
    with pytest.raises(TypeError, match="matcher"):
        quantize_model(nn.Linear(2, 2), [(3, QuantSpec())])
    with pytest.raises(ValueError, match="chunk"):
        QuantSpec(chunk=4)
    with pytest.raises(ValueError, match="grad_input"):
        QuantSpec(grad_input="fp7")
