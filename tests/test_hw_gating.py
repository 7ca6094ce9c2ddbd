"""The channel-gating accelerator: all-on masks cost the dense pass plus the gate overhead, all-off the base pass
plus the gate; a hand-built mask gives each schedule's closed-form cycles; lockstep >= compacted >= ideal and
achieved <= ideal speedup for any masks; workload() carries a gated model's measured masks and its MACs agree with
qsim.nn's statistics; bad input raises naming the argument."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from qsim.hw import Layer, Workload, gating, workload
from qsim.hw.gate_masks import GateMasks
from qsim.nn import gate_model

FAST_DRAM = dict(dram_bytes_per_cycle=1e9)  # compute-bound, so cycles are the closed forms below


def accel(rows=4, cols=4, tile_pixels=8, comparators=4, **changes):
    return gating.load(rows=rows, cols=cols, tile_pixels=tile_pixels, comparators=comparators,
                       **{**FAST_DRAM, **changes})


def gated_layer(on: np.ndarray, partitions=4, C=8, R=1, groups=1, **fields) -> Layer:
    N, K, P, Q = on.shape
    layer = Layer.conv("g", N, C, P + R - 1, Q + R - 1, K, R, R, groups=groups, **fields)
    return Layer(**{**layer.__dict__, "gating": GateMasks(on, partitions)})


def run(layer, accelerator, schedule):
    return gating.simulate(Workload("w", (layer,)), accelerator, schedule).frame.iloc[0]


@pytest.mark.parametrize("schedule", gating.SCHEDULES)
def test_all_on_costs_the_dense_pass_plus_a_second_fill_drain_and_the_gate(schedule):
    """Φ folds of R x C; dense Φ(K + F); gated Φ(Kb + F) + Φ(Kc + F) + gate, F = R + C − 2."""
    R = C = 4
    on = np.ones((2, 8, 4, 4), dtype=bool)  # 32 pixels x 8 channels: 8 x 2 = 16 full folds
    layer = gated_layer(on, partitions=4, C=8, R=3)  # reduction 72 = 18 base + 54 conditional
    row = run(layer, accel(), schedule)
    folds, F = 16, R + C - 2
    dense = folds * (72 + F)
    gate = R * C // 4  # the last fold's 4 cycles of comparisons; earlier ones hide behind the next fold (4 <= 18 + F)
    assert row.dense_cycles == dense
    assert row.base_cycles == folds * (18 + F)
    assert row.gate_cycles == gate
    assert row.conditional_cycles == folds * (54 + F)
    assert row.compute_cycles == dense + folds * F + gate
    assert row.macs == layer.macs and row.ideal_speedup == 1.0 and row.achieved_speedup < 1.0


@pytest.mark.parametrize("schedule", gating.SCHEDULES)
def test_all_off_costs_the_base_pass_plus_the_gate(schedule):
    on = np.zeros((2, 8, 4, 4), dtype=bool)
    layer = gated_layer(on, partitions=4, C=8, R=3)
    row = run(layer, accel(), schedule)
    assert row.conditional_cycles == 0
    assert row.compute_cycles == 16 * (18 + 6) + 4
    assert row.macs == layer.macs // 4 and row.ideal_speedup == 4.0
    assert row.gated_off == 1.0


def test_hand_built_mask_closed_form_per_schedule():
    """4x4 array, tiles of 8 pixels, 16 pixels x 8 channels, reduction 2 base + 6 conditional (L + F = 12).
    Channel 0 on at pixels {0, 4}, channel 1 at {1, 2, 3, 5}, channel 5 at {15}.
      lockstep:  folds (pixels 0-3, ch 0-3), (4-7, ch 0-3), (12-15, ch 4-7) have work: 3 x 12 = 36
      compacted: tile 0 / ch 0-3: max(ceil(2/4), ceil(4/4)) = 1 slot; tile 1 / ch 4-7: 1 slot: 2 x 12 = 24
      ideal:     ceil(7 outputs x 12 / 16 PEs) = 6
    base 8 folds x (2 + 6) = 64; gate: 16 comparisons / 4 per cycle = 4 (hidden except the last fold's)."""
    on = np.zeros((1, 8, 4, 4), dtype=bool)
    for channel, pixels in ((0, (0, 4)), (1, (1, 2, 3, 5)), (5, (15,))):
        for pixel in pixels:
            on[0, channel, pixel // 4, pixel % 4] = True
    layer = gated_layer(on, partitions=4, C=8, R=1)
    expected = {"lockstep": 36, "compacted": 24, "ideal": 6}
    for schedule, cycles in expected.items():
        row = run(layer, accel(), schedule)
        assert row.base_cycles == 64 and row.gate_cycles == 4
        assert row.conditional_cycles == cycles
        assert row.compute_cycles == 64 + 4 + cycles
        assert row.macs == 16 * 8 * 2 + 7 * 6
        assert row.imbalance == pytest.approx(cycles / 6)


@st.composite
def masks(draw):
    N, K = draw(st.integers(1, 2)), draw(st.sampled_from([4, 8, 12]))
    P = Q = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    density = rng.uniform(0, 1, size=(1, K, 1, 1)) ** draw(st.sampled_from([0.5, 1, 3]))  # per-channel densities
    return rng.uniform(size=(N, K, P, Q)) < density


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks(), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2]))
def test_lockstep_ge_compacted_ge_ideal_and_achieved_le_ideal_speedup(on, partitions, groups):
    K = on.shape[1]
    if K % groups:
        return
    layer = gated_layer(on, partitions=partitions, C=8 * groups, R=3, groups=groups)
    rows = {s: run(layer, accel(), s) for s in gating.SCHEDULES}
    assert rows["lockstep"].conditional_cycles >= rows["compacted"].conditional_cycles >= rows["ideal"].conditional_cycles
    for row in rows.values():
        assert row.macs == rows["ideal"].macs
        assert row.overall_utilization <= row.compute_utilization <= 1.0
        # achieved <= ideal holds where the dense layer fills the array (it always does along the reduction)
        if row.mapping_efficiency == 1.0:
            assert row.achieved_speedup <= row.ideal_speedup + 1e-12


def test_energy_skips_mac_work_but_not_dram_traffic():
    on = np.zeros((2, 8, 4, 4), dtype=bool)
    on[:, :, :2] = True
    layer = gated_layer(on, partitions=4, C=8, R=3)
    accelerator = accel()
    row = run(layer, accelerator, "compacted")
    dense = gating.ChannelGatingArray(accelerator).layer_stats(Layer(**{**layer.__dict__, "gating": None}))
    table, pe = accelerator.accelerator.energy, accelerator.accelerator.pe
    assert row.macs == 256 * 18 + 128 * 54
    assert row.energy_mac_pj == pytest.approx(row.macs * table.mac_pj(8, 8, 32, "int"))
    assert row.energy_dram_pj == dense["energy_dram_pj"]
    assert row.energy_gate_pj == pytest.approx(256 * table.arith("int").add(pe.accumulator_bits))
    assert row.energy_register_pj < dense["energy_register_pj"]  # (SRAM may grow: partial sums make a round trip)
    base = gating.ChannelGatingArray(accelerator).layer_stats(Layer(**{**layer.__dict__, "gating": None, "C": 2}))
    assert row.sram_ifmap_write_bytes == dense["sram_ifmap_write_bytes"]  # DRAM fills do not shrink
    assert row.sram_ofmap_read_bytes == base["sram_ofmap_read_bytes"] + (256 + 128) * 4  # gate reads, then where on
    assert row.sram_ofmap_write_bytes == base["sram_ofmap_write_bytes"] + 256 * 4  # Yp at 32 bits
    # compacted: every executed output reads its own 54-element input window
    assert row.sram_ifmap_read_bytes == base["sram_ifmap_read_bytes"] + 128 * 54


def small_gated_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, stride=2, groups=2), nn.ReLU(), nn.Conv2d(16, 32, 1))
    handle = gate_model(model, partitions=4)
    return model, handle


def test_workload_carries_measured_masks_and_macs_agree_with_nn_stats():
    model, handle = small_gated_model()
    x = torch.randn(2, 3, 10, 10)
    wl = workload(model, x)
    assert [layer.gating is not None for layer in wl] == [False, True, True, False]
    assert handle.stats().loc["total", "outputs"] == 0  # extracting a workload is not an evaluation
    model.eval()(x)
    stats = handle.stats()
    report = gating.simulate(wl, accel(rows=8, cols=8))
    for layer in wl:
        if layer.gating is None:
            continue
        module = handle.modules[layer.name]
        assert np.array_equal(layer.gating.on, module.last_gate.numpy())
        assert layer.gating.partitions == 4
        assert report.frame.loc[layer.name, "macs"] == stats.loc[layer.name, "base_macs"] + \
            stats.loc[layer.name, "conditional_macs"]
        assert report.frame.loc[layer.name, "dense_macs"] == stats.loc[layer.name, "dense_macs"]
    s = gating.summary(report)
    assert s["achieved_speedup"] <= s["ideal_speedup"]
    assert hash(wl) == hash(workload(model, x))  # layers with masks stay hashable values
    handle.remove()


def test_bad_input_raises_naming_the_argument():
    layer = Layer.conv("g", 1, 8, 4, 4, 8, 1, 1)
    with pytest.raises(ValueError, match=r"gate masks have shape \(1, 8, 3, 4\), expected \(N, K, P, Q\)"):
        Layer(**{**layer.__dict__, "gating": GateMasks(np.ones((1, 8, 3, 4), bool), 4)})
    with pytest.raises(ValueError, match="partitions=3 must divide"):
        Layer(**{**layer.__dict__, "gating": GateMasks(np.ones((1, 8, 4, 4), bool), 3)})
    with pytest.raises(TypeError, match="masks: expected a boolean array"):
        GateMasks(np.ones((1, 8, 4, 4)), 4)
    with pytest.raises(ValueError, match="masks: expected shape"):
        GateMasks(np.ones((8, 4, 4), bool), 4)
    with pytest.raises(TypeError, match="gating must be a GateMasks"):
        Layer(**{**layer.__dict__, "gating": np.ones((1, 8, 4, 4), bool)})
    wl = Workload("w", (layer,))
    with pytest.raises(ValueError, match="schedule must be one of lockstep, compacted, ideal, got 'greedy'"):
        gating.simulate(wl, accel(), "greedy")
    with pytest.raises(ValueError, match="tile_pixels=6 must be a multiple of the array rows"):
        gating.simulate(wl, accel(tile_pixels=6))
    with pytest.raises(ValueError, match="output-stationary"):
        gating.simulate(wl, accel(dataflow="ws"))
    with pytest.raises(ValueError, match=r"no \[gating\] section"):
        gating.load("systolic_32x32")
    with pytest.raises(ValueError, match="comparators must be a positive integer"):
        gating.load(comparators=0)
    with pytest.raises(TypeError, match="GatedAccelerator"):
        gating.ChannelGatingArray(gating.load().accelerator)


def test_packaged_description_loads_with_its_assumptions():
    accelerator = gating.load("channel_gating_32x32")
    assert accelerator.gating.schedule in gating.SCHEDULES
    assert accelerator.accelerator.array.dataflow == "os"
    report = gating.simulate(Workload("w", (Layer.conv("c", 1, 8, 4, 4, 8, 1, 1),)), accelerator)
    assert any("Channel gating" in a for a in report.assumptions)
    assert math.isclose(report.frame.iloc[0].achieved_speedup, 1.0)


def test_cli_trains_measures_and_simulates(capsys):
    from qsim.cli import main

    threads = torch.get_num_threads()
    assert main(["gating", "--epochs", "1", "--resnet-steps", "0", "--no-progress", "--schedule", "lockstep"]) == 0
    out = capsys.readouterr().out
    assert "digits CNN, 1 epochs: accuracy dense" in out and "lockstep schedule" in out and "achieved" in out
    assert torch.get_num_threads() == threads
    assert main(["gating", "--accelerator", "systolic_32x32"]) == 2
    assert "no [gating] section" in capsys.readouterr().err
    assert main(["gating", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_qsim_hw_gates_calibrates_and_simulates_a_builtin_model(capsys, tmp_path):
    from qsim.cli import main

    assert main(["hw", "resnet18", "--input-shape", "1,3,64,64", "--accelerator", "channel_gating_32x32",
                 "--gating", "target=1.0,partitions=4", "--schedule", "lockstep", "--csv", str(tmp_path / "g.csv")]) == 0
    out = capsys.readouterr().out
    assert "lockstep schedule" in out and "ideal speedup" in out
    frame = pd.read_csv(tmp_path / "g.csv", index_col=0)
    gated = frame[frame.gated_off > 0]
    assert len(gated) == 16  # every 3x3 conv but the stem; thresholds at 1.0 on calibrated gates: most outputs off
    assert (gated.gated_off > 0.5).all() and (frame.achieved_speedup <= frame.ideal_speedup + 1e-12).all()
    for argv, says in (
            (["--input-shape", "1,3,32,32", "--accelerator", "channel_gating_32x32", "--gating", "target=high"],
             "--gating 'target=high': target must be a float"),
            (["--accelerator", "channel_gating_32x32", "--gating", "slope=2"], "KEY one of target, partitions, grouping")):
        assert main(["hw", "resnet18", *argv]) == 2
        assert says in capsys.readouterr().err
    topology = tmp_path / "t.csv"
    from qsim.hw import write_topology
    write_topology(Workload("t", (Layer.gemm("g", 64, 64, 64),)), topology)
    assert main(["hw", str(topology), "--gating", "target=1"]) == 2
    assert "a topology file has no model to gate" in capsys.readouterr().err
