"""Workloads from torch models and SCALE-Sim topologies, operand precisions, the report and the CLI."""
import io

import pytest
import torch
from rich.console import Console
from torch import nn

import qsim.hw as hw
from qsim.cli import main as qsim_main
from qsim.hw.extract import workload
from qsim.hw.models import resnet18

# ResNet-18's 20 convolutions at 224x224 as SCALE-Sim sees them: (name, H, W, R, C, K, stride), with
# H the input span the outputs read, (P - 1) * stride + R.
RESNET18_TOPOLOGY = [("conv1", 229, 7, 3, 64, 2)] + [(f"layer1.{b}.conv{c}", 58, 3, 64, 64, 1) for b in (0, 1) for c in (1, 2)]
for stage, (c_in, c, h_out) in enumerate(((64, 128, 28), (128, 256, 14), (256, 512, 7)), start=2):
    RESNET18_TOPOLOGY += [(f"layer{stage}.0.conv1", (h_out - 1) * 2 + 3, 3, c_in, c, 2),
                          (f"layer{stage}.0.conv2", h_out + 2, 3, c, c, 1),
                          (f"layer{stage}.0.downsample.0", (h_out - 1) * 2 + 1, 1, c_in, c, 2),
                          (f"layer{stage}.1.conv1", h_out + 2, 3, c, c, 1),
                          (f"layer{stage}.1.conv2", h_out + 2, 3, c, c, 1)]


@pytest.fixture(scope="module")
def r18():
    return workload(resnet18(), torch.randn(1, 3, 224, 224))


def test_resnet18_extraction_matches_the_scalesim_topology(r18):
    """20 convs + fc, in execution order, 1.8136 GMAC of convolutions, the same GEMMs as SCALE-Sim's rows."""
    convs = r18.select("conv")
    assert [layer.name for layer in r18] == [row[0] for row in RESNET18_TOPOLOGY] + ["fc"]
    assert convs.macs == 1_813_561_344 and r18.layers[-1].macs == 512 * 1000
    for layer, (name, h, r, c, k, s) in zip(convs, RESNET18_TOPOLOGY):
        ref = hw.scalesim_conv(name, h, h, r, r, c, k, s)
        assert (layer.gemm_m, layer.gemm_k, layer.gemm_n) == (ref.gemm_m, ref.gemm_k, ref.gemm_n), name


def test_resnet18_output_stationary_32x32_total_matches_scalesim(r18):
    """HW_NOTES: SCALE-Sim OS 32x32 over the 20 convs = 2,114,948 cycles (it counts one less per layer)."""
    report = hw.simulate(r18.select("conv"), hw.load_accelerator("systolic_32x32"))
    assert report.frame["compute_cycles"].sum() - len(report.frame) == 2_114_948
    assert report.frame.loc["conv1", "compute_cycles"] - 1 == 163_855
    assert report.frame.loc["layer1.0.conv1", "compute_cycles"] - 1 == 125_047
    assert report.frame.loc["layer4.1.conv2", "compute_cycles"] - 1 == 149_439


def test_topology_round_trip_keeps_every_gemm(tmp_path, r18):
    path = hw.write_topology(r18, tmp_path / "r18.csv")
    back = hw.read_topology(path)
    assert [(l.name, l.gemm_m, l.gemm_k, l.gemm_n, l.stride) for l in back] == \
           [(l.name, l.gemm_m, l.gemm_k, l.gemm_n, l.stride) for l in r18]
    assert path.read_text().splitlines()[1] == "conv1,229,229,7,7,3,64,2,"


def test_read_gemm_topology_and_scalesim_output_rule(tmp_path):
    """SCALE-Sim GEMM rows are name, M, N, K; conv rows use ceil((H - R + s) / s) output rows."""
    gemm = tmp_path / "g.csv"
    gemm.write_text("Layer Name, M, N, K,\nTest 1, 256, 128, 64,\n")
    (layer,) = hw.read_topology(gemm)
    assert (layer.gemm_m, layer.gemm_n, layer.gemm_k) == (256, 128, 64)
    conv = tmp_path / "c.csv"
    conv.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
                    "B,9,7,2,3,3,11,2,\n")
    (layer,) = hw.read_topology(conv)
    assert (layer.P, layer.Q) == (5, 3)  # PyTorch's floor rule would give 4 x 3
    conv.write_text("name,H\nB,9,\n")
    with pytest.raises(ValueError, match="expected 4 fields"):
        hw.read_topology(conv)


def test_depthwise_grouped_and_functional_layers_are_found():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.conv1d = nn.Conv1d(8, 4, 3, stride=2)
            self.w = nn.Parameter(torch.randn(16, 6))

        def forward(self, x):
            y = self.dw(x)                                      # (2, 8, 10, 10)
            z = self.conv1d(y.flatten(2))                       # (2, 4, 49)
            attn = torch.matmul(y.flatten(2), y.flatten(2).transpose(1, 2))  # batched: 2 x (8x100 @ 100x8)
            return z.sum() + attn.sum() + torch.nn.functional.linear(y[:, :, 0, :6], self.w).sum()

    wl = workload(Net(), torch.randn(2, 8, 10, 10))
    by_name = {layer.name: layer for layer in wl}
    assert by_name["dw"].groups == 8 and by_name["dw"].macs == 2 * 8 * 10 * 10 * 9
    assert (by_name["conv1d"].H, by_name["conv1d"].W, by_name["conv1d"].Q, by_name["conv1d"].S) == (1, 100, 49, 3)
    matmul = next(l for l in wl if l.op == "matmul")
    assert (matmul.groups, matmul.gemm_m, matmul.gemm_k, matmul.gemm_n) == (2, 8, 100, 8)
    linear = next(l for l in wl if l.op == "linear")
    assert (linear.gemm_m, linear.gemm_k, linear.gemm_n) == (16, 6, 16)
    assert wl.batch == 2


@pytest.mark.parametrize("traceable", [True, False])
def test_multihead_attention_becomes_its_six_gemms(traceable):
    """Projections (L*B x E x E), scores and context batched over B*heads, output projection."""
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(64, 4, batch_first=True)

        def forward(self, x):
            if not traceable and x.sum() > 0:
                x = x * 2
            return self.attn(x, x, x)[0]

    wl = workload(Block(), torch.randn(2, 10, 64))
    shapes = {l.name.split(".")[-1]: (l.groups, l.gemm_m, l.gemm_k, l.gemm_n) for l in wl}
    assert shapes == {"q_proj": (1, 20, 64, 64), "k_proj": (1, 20, 64, 64), "v_proj": (1, 20, 64, 64),
                      "scores": (8, 10, 16, 10), "context": (8, 10, 10, 16), "out_proj": (1, 20, 64, 64)}
    assert ("could not trace" in wl.notes[0]) != traceable


def test_untraceable_model_falls_back_to_hooks():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                x = -x
            return self.b(self.a(x))

    wl = workload(Branchy(), torch.ones(3, 4))
    assert [l.name for l in wl] == ["a", "b"] and "could not trace" in wl.notes[0]
    assert wl.layers[0].gemm_m == 3


def test_precision_mapping_by_glob_last_match_wins(r18):
    wl = workload(resnet18(), torch.randn(1, 3, 64, 64), precision={"*": 8, "layer1.*": (4, 8), "fc": "int4"})
    bits = {l.name: (l.weight_bits, l.act_bits, l.arith) for l in wl}
    assert bits["conv1"] == (8, 8, "int") and bits["layer1.0.conv2"] == (4, 8, "int") and bits["fc"] == (4, 4, "int")
    wl = workload(nn.Linear(4, 4), torch.randn(1, 4), precision="fp8_e4m3")
    assert (wl.layers[0].weight_bits, wl.layers[0].arith) == (8, "float")
    with pytest.raises(ValueError, match=r"precision\['\*'\]"):
        workload(nn.Linear(4, 4), torch.randn(1, 4), precision={"*": "no_such_format"})
    with pytest.raises(ValueError, match="not both"):
        workload(nn.Linear(4, 4), torch.randn(1, 4), precision=8, rules=[])


def test_quantize_model_rules_set_the_operand_widths():
    """A rule's weight/input/output formats become the layer's bits; an unmatched layer stays float32."""
    from qsim.nn import QuantSpec
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    rules = [(nn.Conv2d, QuantSpec(weight="int4", input="fp8_e4m3", output="int8"))]
    wl = workload(net, torch.randn(1, 3, 8, 8), rules=rules)
    conv, linear = wl.layers
    assert (conv.weight_bits, conv.act_bits, conv.out_bits, conv.arith) == (4, 8, 8, "float")
    assert (linear.weight_bits, linear.arith) == (32, "float")


def test_narrow_operands_cut_energy_and_traffic_on_resnet18(r18):
    """4-bit weights halve weight bytes and quarter 8x8 multiply energy (per the table's bits^2 rule)."""
    accel = hw.load_accelerator("systolic_32x32", ifmap_sram_kib=1e5, filter_sram_kib=1e5, ofmap_sram_kib=1e5)
    narrow = hw.Workload("r18w4", tuple(l.with_bits(weight_bits=4) for l in r18), batch=1)
    full, half = hw.simulate(r18, accel).frame, hw.simulate(narrow, accel).frame
    assert half["sram_filter_read_bytes"].sum() == pytest.approx(full["sram_filter_read_bytes"].sum() / 2)
    table = accel.energy
    ratio = (table.int_mac.mult(4, 8) + table.int_mac.add(32)) / (table.int_mac.mult(8, 8) + table.int_mac.add(32))
    assert half["energy_mac_pj"].sum() == pytest.approx(full["energy_mac_pj"].sum() * ratio)


def test_report_renders_exports_and_plots(tmp_path, r18):
    report = hw.simulate(r18, hw.load_accelerator("systolic_32x32", dataflow="ws"))
    console = Console(file=io.StringIO(), width=120)
    console.print(report)
    text = console.file.getvalue()
    assert "layer4.1.conv2" in text and "Assumptions" in text and "inferences/s" in text
    frame = report.to_dataframe()
    assert list(frame.index) == [l.name for l in r18]
    csv = report.to_csv(tmp_path / "r.csv").read_text()
    assert csv.splitlines()[0].startswith("layer,op,macs")
    for suffix in ("png", "svg"):
        path = report.plot(tmp_path / f"r.{suffix}")
        assert path.stat().st_size > 1000


def test_cli_runs_the_builtin_model_and_a_topology(tmp_path, capsys):
    assert qsim_main(["hw", "resnet18", "--accelerator", "systolic_8x8", "--dataflow", "is", "--precision", "4,8",
                      "--csv", str(tmp_path / "l.csv"), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "inferences/s" in out and (tmp_path / "p.png").exists()
    topo = hw.write_topology(hw.Workload("t", (hw.Layer.gemm("g", 64, 64, 64),)), tmp_path / "t.csv")
    assert qsim_main(["hw", str(topo), "--precision", "g=4,4"]) == 0
    assert qsim_main(["hw", "no_such_model"]) == 2
    assert "qsim: error: MODEL_OR_TOPOLOGY" in capsys.readouterr().err
