"""Closed-form properties of the systolic-array model: cycles, utilisation, traffic, stalls, energy."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.hw as hw
from qsim.hw.systolic import DATAFLOW_CLASSES


def accel(dataflow="os", rows=8, cols=8, **changes):
    return hw.load_accelerator("systolic_32x32", dataflow=dataflow, rows=rows, cols=cols, **changes)


def stats(layer, **kw):
    a = accel(**kw)
    return DATAFLOW_CLASSES[a.array.dataflow](a).layer_stats(layer)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_gemm_that_exactly_fills_the_array_has_unit_steady_state_utilisation(dataflow):
    """Spatial dims equal to the array: every PE busy in every streaming cycle (mapping efficiency 1),
    and overall utilisation is T / (T + fill/drain), which tends to 1 as T grows."""
    rows = cols = 8
    sizes = {"os": dict(m=8, n=8), "ws": dict(k=8, n=8), "is": dict(k=8, m=8)}[dataflow]
    preload = 0 if dataflow == "os" else rows
    ratios = []
    for t in (64, 4096, 262144):
        dims = {"m": t, "k": t, "n": t, **sizes}
        row = stats(hw.Layer.gemm("g", dims["m"], dims["k"], dims["n"]), dataflow=dataflow,
                    dram_bytes_per_cycle=1e9)
        assert row["mapping_efficiency"] == 1.0
        assert row["compute_cycles"] == t + rows + cols - 2 + preload
        compute_utilization = row["macs"] / (row["compute_cycles"] * rows * cols)
        assert compute_utilization == pytest.approx(t / (t + rows + cols - 2 + preload))
        assert row["stall_cycles"] == 2  # the first load and the last write-back, one cycle each
        ratios.append(compute_utilization)
    assert ratios == sorted(ratios) and ratios[-1] > 0.9999


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_compute_cycles_are_folds_times_fold_length(dataflow):
    """Reference: SCALE-Sim's formula, folds = ceil(Sr/rows) * ceil(Sc/cols), fold = T + rows + cols - 2 (+ rows)."""
    layer = hw.Layer.conv("c", 1, 5, 10, 10, 20, 3, 3)  # M = 64 pixels, K = 45, N = 20
    m, k, n = 64, 45, 20
    sr, sc, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]
    fold = t + 8 + 4 - 2 + (0 if dataflow == "os" else 8)
    assert stats(layer, dataflow=dataflow, rows=8, cols=4)["compute_cycles"] == math.ceil(sr / 8) * math.ceil(sc / 4) * fold


layers = st.builds(
    lambda n, c, h, k, r, s, g: hw.Layer.conv("l", n, c * g, h + r, h + r, k * g, r, r, stride=s, padding=r // 2, groups=g),
    st.integers(1, 2), st.integers(1, 48), st.integers(1, 24), st.integers(1, 48), st.integers(1, 5),
    st.integers(1, 3), st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(layer=layers, dataflow=st.sampled_from(["os", "ws", "is"]), size=st.sampled_from([4, 8, 16]),
       bw=st.floats(0.25, 64), sram=st.sampled_from([0.5, 4, 64]), double=st.booleans())
def test_doubling_dram_bandwidth_never_increases_cycles(layer, dataflow, size, bw, sram, double):
    """Cycles are monotone in DRAM bandwidth, never below compute cycles, and stall-free at huge bandwidth."""
    kw = dict(dataflow=dataflow, rows=size, cols=size, ifmap_sram_kib=sram, filter_sram_kib=sram,
              ofmap_sram_kib=sram, double_buffered=double)
    slow, fast = stats(layer, dram_bytes_per_cycle=bw, **kw), stats(layer, dram_bytes_per_cycle=2 * bw, **kw)
    assert fast["total_cycles"] <= slow["total_cycles"]
    assert slow["total_cycles"] >= slow["compute_cycles"]
    assert slow["compute_cycles"] == fast["compute_cycles"]
    huge = stats(layer, dram_bytes_per_cycle=1e12, **kw)
    # What remains is one cycle per transfer that cannot overlap compute.
    assert huge["stall_cycles"] <= (2 * layer.groups if double else 2 * huge["folds"])


@settings(max_examples=40, deadline=None)
@given(layer=layers, dataflow=st.sampled_from(["os", "ws", "is"]))
def test_dram_traffic_is_each_tensor_once_when_everything_fits(layer, dataflow):
    """With SRAMs larger than every tensor, DRAM reads = input + weights and writes = outputs, exactly."""
    row = stats(layer, dataflow=dataflow, ifmap_sram_kib=1e6, filter_sram_kib=1e6, ofmap_sram_kib=1e6)
    assert row["dram_read_bytes"] == pytest.approx(layer.ifmap_elems + layer.filter_elems)
    assert row["dram_write_bytes"] == pytest.approx(layer.ofmap_elems)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_stall_cycles_match_a_hand_count_for_one_fold(dataflow):
    """One fold, no overlap possible: stall = ceil(loads / bw) + ceil(writes / bw)."""
    layer = hw.Layer.gemm("g", 4, 4, 4)  # 16 B ifmap, 16 B weights, 16 B outputs at 8 bits
    row = stats(layer, dataflow=dataflow, rows=4, cols=4, dram_bytes_per_cycle=3)
    assert row["folds"] == 1
    assert row["stall_cycles"] == math.ceil(32 / 3) + math.ceil(16 / 3)


def test_groups_cost_the_sum_of_their_independent_gemms():
    """A g-group conv is g GEMMs of C/g x K/g: cycles, MACs and energy are g times one group's."""
    grouped = hw.Layer.conv("dw", 1, 32, 16, 16, 32, 3, 3, padding=1, groups=4)
    single = hw.Layer.conv("one", 1, 8, 16, 16, 8, 3, 3, padding=1)
    for dataflow in ("os", "ws", "is"):
        a, b = stats(grouped, dataflow=dataflow), stats(single, dataflow=dataflow)
        for key in ("compute_cycles", "total_cycles", "macs", "dram_read_bytes", "energy_pj"):
            assert a[key] == pytest.approx(4 * b[key]), key


def test_sram_and_dram_bytes_scale_with_operand_bits():
    """Halving both operand widths halves every byte count (same elements move) on a non-scalable PE."""
    layer = hw.Layer.conv("c", 1, 16, 12, 12, 24, 3, 3, padding=1)
    full = stats(layer.with_bits(8, 8, 8), dram_bytes_per_cycle=1e9, ifmap_sram_kib=1e6, filter_sram_kib=1e6, ofmap_sram_kib=1e6)
    half = stats(layer.with_bits(4, 4, 4), dram_bytes_per_cycle=1e9, ifmap_sram_kib=1e6, filter_sram_kib=1e6, ofmap_sram_kib=1e6)
    for key in ("sram_ifmap_read_bytes", "sram_filter_read_bytes", "dram_read_bytes", "dram_write_bytes"):
        assert half[key] == pytest.approx(full[key] / 2), key
    assert half["compute_cycles"] == full["compute_cycles"]


@pytest.mark.parametrize("scaling, w, a, rate", [("none", 4, 4, 1), ("linear", 4, 4, 2), ("linear", 4, 8, 1),
                                                   ("quadratic", 4, 4, 4), ("quadratic", 2, 8, 4),
                                                   ("quadratic", 2, 2, 16), ("linear", 16, 8, 0.5), ("none", 16, 16, 0.5),
                                                   ("quadratic", 16, 16, 0.25)])
def test_precision_scalable_pe_throughput(scaling, w, a, rate):
    """MACs per PE cycle: Bit Fusion-style quadratic packing, linear SIMD packing, or multi-pass when wider."""
    pe = hw.PESpec(native_bits=8, scaling=scaling, min_bits=1)
    assert float(pe.macs_per_cycle(w, a)) == rate


def test_packed_reduction_shortens_output_stationary_folds():
    """OS streams the reduction in time: a 2-MAC/cycle PE halves T, so a long GEMM nearly halves its cycles."""
    layer = hw.Layer.gemm("g", 8, 4096, 8).with_bits(4, 4, 4)
    plain = stats(layer, dataflow="os", dram_bytes_per_cycle=1e9)
    packed = stats(layer, dataflow="os", dram_bytes_per_cycle=1e9, scaling="linear")
    assert plain["compute_cycles"] == 4096 + 14 and packed["compute_cycles"] == 2048 + 14
    # Utilisation is against the PE's peak at this width (2 MACs/cycle); +2: first load, last write-back.
    assert packed["overall_utilization"] == pytest.approx(layer.macs / ((2048 + 14 + 2) * 64 * 2))
    assert packed["compute_utilization"] == pytest.approx(layer.macs / ((2048 + 14) * 64 * 2))


def test_energy_scales_with_macs_as_the_table_says():
    """MAC energy = MACs x (mult(w, a) + add(acc)); doubling filters doubles it; 4-bit multiplies cost 1/4."""
    table = hw.load_energy_table("horowitz_45nm")
    small = hw.Layer.conv("c", 1, 16, 8, 8, 16, 3, 3, padding=1)
    double = hw.Layer.conv("c", 1, 16, 8, 8, 32, 3, 3, padding=1)
    s, d = stats(small), stats(double)
    per_mac = 0.2 + 0.03 * 32 / 8  # 8x8-bit multiply + 32-bit accumulate, Horowitz 45 nm
    assert s["energy_mac_pj"] == pytest.approx(small.macs * per_mac)
    assert d["energy_mac_pj"] == pytest.approx(2 * s["energy_mac_pj"])
    assert table.int_mac.mult(4, 4) == pytest.approx(table.int_mac.mult(8, 8) / 4)
    assert table.int_mac.add(16) == pytest.approx(2 * table.int_mac.add(8))
    assert s["energy_register_pj"] == pytest.approx(small.macs * (8 + 8 + 32) * table.register_pj_per_bit)


def test_energy_components_add_up_and_dram_uses_the_table():
    layer = hw.Layer.conv("c", 1, 16, 8, 8, 16, 3, 3, padding=1)
    row = stats(layer)
    parts = sum(row[f"energy_{c}_pj"] for c in ("mac", "register", "sram", "dram"))
    assert row["energy_pj"] == pytest.approx(parts)
    table = hw.load_energy_table()
    assert row["energy_dram_pj"] == pytest.approx((row["dram_read_bytes"] + row["dram_write_bytes"]) * 8 * table.dram_pj_per_bit)


def test_report_totals_are_sums_and_throughput_follows_the_clock():
    wl = hw.Workload("two", (hw.Layer.gemm("a", 64, 64, 64), hw.Layer.gemm("b", 32, 128, 16)), batch=2)
    a = accel()
    report = hw.simulate(wl, a)
    t, f = report.totals(), report.to_dataframe()
    assert t["total_cycles"] == f["total_cycles"].sum()
    assert t["inferences_per_s"] == pytest.approx(2 * a.clock_mhz * 1e6 / t["total_cycles"])
    assert t["energy_per_inference_uj"] == pytest.approx(f["energy_pj"].sum() * 1e-6 / 2)
    assert t["overall_utilization"] == pytest.approx(f["macs"].sum() / (t["total_cycles"] * 64))
    assert t["compute_utilization"] == pytest.approx(f["macs"].sum() / (t["compute_cycles"] * 64))


@settings(max_examples=40, deadline=None)
@given(layer=layers, dataflow=st.sampled_from(["os", "ws", "is"]), bw=st.floats(0.5, 32),
       sram=st.sampled_from([0.25, 2, 64]))
def test_pass_extrapolation_equals_the_full_fold_sequence(layer, dataflow, bw, sram):
    """_pipeline evaluates 3 and 4 column passes and extrapolates; compare with all folds laid out."""
    import numpy as np

    from qsim.hw.memory import double_buffered_cycles
    a = accel(dataflow=dataflow, rows=4, cols=4, dram_bytes_per_cycle=bw, ifmap_sram_kib=sram,
              filter_sram_kib=sram, ofmap_sram_kib=sram)
    sim = DATAFLOW_CLASSES[dataflow](a)
    plan = sim.plan(layer)
    unique = {"ifmap": layer.ifmap_elems / layer.groups, "filter": layer.filter_elems / layer.groups,
              "ofmap": layer.ofmap_elems / layer.groups}
    loads0, loads1, writes, _ = sim._dram_schedule(plan, unique, 4 * layer.gemm_m * layer.gemm_n)
    full = double_buffered_cycles(sim.dram, plan.fold_cycles,
                                  np.concatenate([loads0] + [loads1] * (plan.col_folds - 1)),
                                  np.tile(writes, plan.col_folds))
    assert sim._pipeline(plan.fold_cycles, loads0, loads1, writes, plan.col_folds, True) == pytest.approx(full)
