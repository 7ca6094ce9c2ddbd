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


# --- qsim.hw.workload on real model shapes: MACs against torch's FLOP counter and closed forms ---------------
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import qsim.hw as hw  # noqa: E402
from qsim.hw import workload  # noqa: E402


def _counted_macs(model, x):
    """FlopCounterMode's FLOPs / 2 on torch's unfused path (its fused transformer kernels count 0)."""
    model.eval()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return counter.get_total_flops() / 2


def _attention_macs(batch, heads, L, S, d, layers=1):
    """scores and context: 2 · batch · heads · L · S · d per attention (FlopCounterMode gives 0 on the CPU)."""
    return layers * 2 * batch * heads * L * S * d


def _rnn_macs(T, B, input_size, H, gates, num_layers, directions):
    """Σ over layers and directions of T·B·(in + H)·gates·H (input and recurrent GEMMs)."""
    total, features = 0, input_size
    for _ in range(num_layers):
        total += directions * T * B * (features + H) * gates * H
        features = H * directions
    return total


class SDPABlock(nn.Module):
    """timm's ViT attention: qkv linear, F.scaled_dot_product_attention, proj."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))


class Blocks(nn.Module):
    """Functional products inside named blocks: matmul, @, einsum and F.conv2d."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([SDPABlock(), SDPABlock()])
        self.weight = nn.Parameter(torch.randn(4, 1, 3, 3))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        gram = torch.einsum("bnc,bmc->bnm", x, x)  # (B, N, N)
        mixed = torch.matmul(gram, x) @ x.transpose(1, 2)  # (B, N, N)
        return F.conv2d(mixed.unsqueeze(1), self.weight, padding=1)


def _cases():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2,
                                    enable_nested_tensor=False)
    return {
        "transformer_encoder": (encoder, torch.randn(2, 6, 16), _attention_macs(2, 2, 6, 6, 8, layers=2)),
        "lstm": (nn.LSTM(8, 16, num_layers=2, batch_first=True), torch.randn(3, 5, 8),
                 _rnn_macs(5, 3, 8, 16, 4, 2, 1)),
        "gru_bidirectional": (nn.GRU(8, 16, bidirectional=True), torch.randn(5, 3, 8), 0),
        "sdpa_blocks_einsum_conv": (Blocks(), torch.randn(2, 7, 32), _attention_macs(2, 4, 7, 7, 8, layers=2)),
        "mha_keywords": (Attention(), torch.randn(2, 5, 8), _attention_macs(2, 2, 5, 5, 4)),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_workload_macs_equal_the_flop_counter_plus_closed_forms(case):
    """Workload MACs = FlopCounterMode FLOPs / 2 plus the closed-form counts of what the counter misses
    (attention products on the CPU; the LSTM, which it counts as 0), within 1%."""
    model, x, uncounted = _cases()[case]
    wl = workload(model, x)
    counted = _counted_macs(model, x)
    if case == "lstm":
        assert counted == 0  # the counter's blind spot: the closed form is the whole reference
    assert sum(layer.macs for layer in wl) == pytest.approx(counted + uncounted, rel=0.01)
    assert not any("not modelled" in note for note in wl.notes)


def test_lstm_and_gru_decompose_into_their_weight_gemms():
    wl = workload(nn.LSTM(8, 16, num_layers=2, batch_first=True, proj_size=4), torch.randn(3, 5, 8))
    shapes = {l.name: (l.groups, l.gemm_m, l.gemm_k, l.gemm_n) for l in wl}
    assert shapes == {"ih_l0": (1, 15, 8, 64), "hh_l0": (5, 3, 4, 64), "hr_l0": (5, 3, 16, 4),
                      "ih_l1": (1, 15, 4, 64), "hh_l1": (5, 3, 4, 64), "hr_l1": (5, 3, 16, 4)}


def test_unmapped_compute_is_reported_not_silently_dropped():
    class Addmm(nn.Module):
        def __init__(self):
            super().__init__()
            self.w, self.b = nn.Parameter(torch.randn(8, 8)), nn.Parameter(torch.zeros(8))
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return torch.addmm(self.b, self.fc(x), self.w)

    wl = workload(Addmm(), torch.randn(4, 8))
    assert any(note.startswith("not modelled: 0.000512 MFLOP") and "addmm" in note for note in wl.notes)


def test_functional_products_are_named_under_their_module_and_reached_by_globs():
    wl = workload(Blocks(), torch.randn(2, 7, 32), precision={"*": 8, "blocks.1.*": 4})
    names = [l.name for l in wl]
    assert names[:4] == ["blocks.0.qkv", "blocks.0.scaled_dot_product_attention.scores",
                         "blocks.0.scaled_dot_product_attention.context", "blocks.0.proj"]
    assert names[8:] == ["einsum", "matmul", "matmul#1", "conv2d"]
    assert {l.name: l.weight_bits for l in wl}["blocks.1.scaled_dot_product_attention.scores"] == 4


def test_workload_rules_read_as_quantize_model_reads_them():
    """The README rule on a model with attention: out_proj takes its rule's weight width and float32 input
    (the context is internal to the attention); scores and context stay float32; the head is 8-bit."""
    rules = [((nn.Conv2d, nn.Linear), QuantSpec(weight="int8", input="int8")),
             (nn.MultiheadAttention, QuantSpec(weight="int4", input="int4"))]
    with pytest.warns(UserWarning, match="out_proj's input"):
        wl = workload(Attention(), torch.randn(2, 5, 8), rules=rules)
    bits = {l.name: (l.weight_bits, l.act_bits) for l in wl}
    assert bits == {"attn.q_proj": (4, 4), "attn.k_proj": (4, 4), "attn.v_proj": (4, 4), "attn.scores": (32, 32),
                    "attn.context": (32, 32), "attn.out_proj": (8, 32), "head": (8, 8)}


def test_cli_runs_a_token_model_from_the_current_directory(tmp_path, monkeypatch, capsys):
    """`qsim hw mymod:build` finds mymod.py in the current directory; --input-dtype long feeds token ids."""
    from qsim.cli import main

    (tmp_path / "qsim_test_lm.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Embedding(50, 16), nn.LSTM(16, 8, batch_first=True))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    assert main(["hw", "qsim_test_lm:build", "--input-shape", "2,6", "--input-dtype", "long",
                 "--input-high", "50", "--csv", "layers.csv"]) == 0
    import pandas as pd
    layers = pd.read_csv(tmp_path / "layers.csv")
    assert list(layers.iloc[:, 0]) == ["1.ih_l0", "1.hh_l0"]


def test_qpytorch_float8_recipe_trains_a_vgg_shaped_network_with_inplace_relus():
    """vgg11's shape in small: conv/ReLU(inplace)/pool features and a linear/ReLU(inplace)/dropout head."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(16 * 2 * 2, 32), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(32, 10))
    recipe = qsim.nn.recipes.float8_qpytorch()
    handle, optimizer = recipe.apply(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    (nn.functional.cross_entropy(model(x), y) * recipe.loss_scale).backward()
    optimizer.step()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    handle.remove()


def test_a_conv_subclass_defined_outside_torch_is_counted_once():
    """fx would trace into a Conv2d subclass of user code; the hooks already record it as one conv."""
    class MyConv(nn.Conv2d):
        def forward(self, x):
            return F.conv2d(x, self.weight * 1.0, self.bias, self.stride, self.padding)

    model = nn.Sequential(MyConv(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    wl = workload(model, torch.randn(1, 3, 8, 8))
    assert [l.name for l in wl] == ["0", "2"]
    assert sum(l.macs for l in wl) == _counted_macs(model, torch.randn(1, 3, 8, 8))


def test_narrow_terminals_fold_table_cells_instead_of_dropping_digits():
    """At 60 columns the report's long layer names and 9-digit totals fold; nothing is cut to an ellipsis."""
    from rich.console import Console

    wl = workload(Blocks(), torch.randn(2, 7, 32))
    report = hw.simulate(wl, hw.load_accelerator("systolic_8x8"))
    console = Console(width=60, record=True)
    console.print(report)
    text = console.export_text()
    assert "…" not in text
    footer = text[text.index("├"):text.index("└")].splitlines()[1:]
    cycles = "".join(line.split("│")[4].strip() for line in footer)  # the cycles column, folded over lines
    assert cycles == f"{report.totals()['total_cycles']:,}"


@pytest.mark.parametrize("equation, shapes", [
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 6)]),   # broadcast batch dims spelled as '...'
    ("bij,bjk", [(2, 4, 5), (2, 5, 3)]),                 # implicit output
    ("ij,jk,kl->il", [(4, 5), (5, 6), (6, 2)]),          # three operands, contracted left to right
    ("bhqd,bhkd->bhqk", [(2, 3, 7, 8), (2, 3, 9, 8)]),   # attention scores
])
def test_einsum_macs_equal_the_flop_counter(equation, shapes):
    class Two(nn.Module):
        def forward(self, a, b):
            return torch.einsum(equation, a, b)

    class Three(nn.Module):
        def forward(self, a, b, c):
            return torch.einsum(equation, a, b, c)

    operands = tuple(torch.randn(shape) for shape in shapes)
    wl = workload((Two if len(shapes) == 2 else Three)(), operands)
    assert "traced with torch.fx" in wl.notes[0]
    with FlopCounterMode(display=False) as counter:
        torch.einsum(equation, *operands)
    assert sum(layer.macs for layer in wl) == counter.get_total_flops() / 2


def test_the_readme_sample_topology_and_accelerator_run(capsys):
    """examples/ ships a SCALE-Sim topology and an accelerator file to start from; the README's command runs."""
    from pathlib import Path

    from qsim.cli import main

    root = Path(__file__).resolve().parent.parent
    assert main(["hw", str(root / "examples/mobilenet_head.csv"), "--accelerator",
                 str(root / "examples/edge_16x16.toml"), "--precision", "4,4"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_head on edge_16x16: 16x16 WS" in out and "conv3_" in out and "mobilenet_head.csv" in out
