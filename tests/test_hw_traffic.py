"""Input traffic counts only the input elements some output reads (strides larger than kernels, dilation)."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import qsim.hw as hw


def brute_force_touched(H, W, R, S, stride, padding, dilation):
    """Input positions that appear in some output's window: unfold an index image, padding reads index 0."""
    index = torch.arange(1, H * W + 1, dtype=torch.float64).reshape(1, 1, H, W)
    windows = F.unfold(index, (R, S), dilation=dilation, padding=padding, stride=stride)
    return int(torch.unique(windows[windows > 0]).numel())


@settings(max_examples=150, deadline=None)
@given(H=st.integers(1, 19), W=st.integers(1, 19), R=st.integers(1, 5), S=st.integers(1, 5),
       stride=st.tuples(st.integers(1, 5), st.integers(1, 5)), padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)), N=st.integers(1, 2), C=st.integers(1, 3))
def test_ifmap_elements_are_the_inputs_some_window_reads(H, W, R, S, stride, padding, dilation, N, C):
    if H + 2 * padding[0] < dilation[0] * (R - 1) + 1 or W + 2 * padding[1] < dilation[1] * (S - 1) + 1:
        return  # no output
    layer = hw.Layer.conv("c", N, C, H, W, 4, R, S, stride=stride, padding=padding, dilation=dilation)
    assert layer.ifmap_elems == N * C * brute_force_touched(H, W, R, S, stride, padding, dilation)


@pytest.mark.parametrize("H, R, stride, padding, dilation, rows", [
    (56, 1, 2, 0, 1, 28),   # ResNet's 1x1 stride-2 downsample reads every other row
    (9, 2, 3, 0, 1, 6),     # a 2-wide kernel at stride 3 skips one row in three
    (8, 2, 2, 0, 1, 8),     # stride = kernel: every row once
    (9, 3, 1, 0, 2, 9),     # dilation 2 at stride 1: the windows interleave and cover all
    (9, 2, 4, 0, 3, 4),     # dilation 3 at stride 4: two outputs read rows 0, 3 and 4, 7
])
def test_touched_rows_in_closed_form(H, R, stride, padding, dilation, rows):
    layer = hw.Layer.conv("c", 1, 1, H, H, 1, R, R, stride=stride, padding=padding, dilation=dilation)
    assert layer.ifmap_elems == rows * rows


def test_a_strided_1x1_conv_moves_the_data_of_the_same_conv_on_the_subsampled_input():
    """layer2.0.downsample of ResNet-18 (64x56x56, 1x1, stride 2, 128 filters) and a stride-1 1x1 conv on
    the 28x28 subsample are the same GEMMs reading the same inputs: equal DRAM and SRAM bytes and energy."""
    strided = hw.Layer.conv("down", 1, 64, 56, 56, 128, 1, 1, stride=2)
    subsampled = hw.Layer.conv("down", 1, 64, 28, 28, 128, 1, 1)
    for dataflow in ("os", "ws", "is"):
        accel = hw.load_accelerator("systolic_32x32", dataflow=dataflow)
        a, b = (hw.simulate(hw.Workload("w", [layer]), accel).frame.iloc[0] for layer in (strided, subsampled))
        for column in ("dram_read_bytes", "dram_write_bytes", "sram_ifmap_write_bytes", "energy_pj", "total_cycles"):
            assert a[column] == pytest.approx(b[column]), (dataflow, column)
