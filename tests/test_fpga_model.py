"""qsim.hw.fpga and qsim.hw.area: BRAM mapping worked by hand, closed-form monotonicity, fit, bad input."""
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.hw as hw
from qsim.hw import area, fpga
from qsim.hw.devices import load_device
from qsim.hw.rtl import MacSpec

ZCU102, VU9P, PYNQ = load_device("zcu102"), load_device("vu9p"), load_device("pynq_z1")


# --- block RAM mapping, worked by hand -----------------------------------------------------------------
@pytest.mark.parametrize("width, depth, device, primitive, shape, count", [
    # 1000 x 36: one BRAM36 as 1K x 36 (two BRAM18 of 512 x 36 use as many bits but more blocks)
    (36, 1000, ZCU102, "bram36", (1024, 36), 1),
    # 18 x 1024 = 18 Kb exactly: one BRAM18 as 1K x 18
    (18, 1024, ZCU102, "bram18", (1024, 18), 1),
    # 72 x 512: one BRAM36 in its 512 x 72 simple-dual-port shape
    (72, 512, ZCU102, "bram36", (512, 72), 1),
    # 256 x 2048: BRAM18 2K x 9 needs ceil(256/9) = 29 blocks = 14.5 BRAM36 (522 Kb); BRAM36 2K x 18
    # needs ceil(256/18) = 15 (540 Kb); 1K x 36 needs 8 x 2 = 16. The cheapest is 29 BRAM18.
    (256, 2048, ZCU102, "bram18", (2048, 9), 29),
    # 72 x 4096 = 288 Kb: one URAM on a device that has them (8 BRAM36 of 512 x 72 also hold it, same bits,
    # more blocks), 8 BRAM36 on one that has none
    (72, 4096, VU9P, "uram", (4096, 72), 1),
    (72, 4096, ZCU102, "bram36", (4096, 9), 8),
    # a tiny buffer still takes a whole BRAM18
    (8, 100, PYNQ, "bram18", (2048, 9), 1),
])
def test_buffer_mapping_worked_by_hand(width, depth, device, primitive, shape, count):
    m = fpga.map_buffer(width, depth, device)
    assert (m.primitive, m.shape, m.count) == (primitive, shape, count)
    assert m.bram36 == {"bram18": 0.5, "bram36": 1.0, "uram": 0.0}[primitive] * count


@pytest.mark.parametrize("width, depth", [(0, 10), (10, 0), (-1, 5), (3.5, 4), (True, 4)])
def test_buffer_mapping_rejects_bad_shapes(width, depth):
    with pytest.raises(ValueError, match="must be a positive integer"):
        fpga.map_buffer(width, depth, ZCU102)


# --- monotonicity and fit ----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(w=st.integers(1, 24), a=st.integers(1, 24), dw=st.integers(0, 8), da=st.integers(0, 8),
       family=st.sampled_from(["7series", "ultrascale_plus"]), dsp=st.booleans())
def test_lane_resources_grow_with_the_widths(w, a, dw, da, family, dsp):
    small = fpga.lane_resources(MacSpec(w, a, 64), family, dsp=dsp)
    big = fpga.lane_resources(MacSpec(w + dw, a + da, 64), family, dsp=dsp)
    rules = fpga.load_cost_model().family(family)
    if dsp and rules.uses_dsp(w, a) != rules.uses_dsp(w + dw, a + da):
        return  # crossing into DSPs trades LUTs and operand registers for a slice
    assert all(big[r] >= small[r] for r in ("luts", "carry", "ffs", "dsps"))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), dn=st.integers(1, 40), precision=st.sampled_from([2, 4, 8, (4, 8), 16, "fp8_e4m3"]))
def test_accelerator_resources_grow_with_the_array(n, dn, precision):
    accel = hw.load_accelerator("systolic_32x32")
    small = fpga.estimate(accel.with_changes(rows=n, cols=n), ZCU102, precision)
    big = fpga.estimate(accel.with_changes(rows=n + dn, cols=n + dn), ZCU102, precision)
    assert all(big.resources[r] >= small.resources[r] for r in ("luts", "ffs", "dsps"))
    # The SRAMs keep their capacity and change shape with the array edge, so their block count need not
    # grow; it never falls below the capacity: 3 x 64 KiB in 36 Kb blocks.
    for e in (small, big):
        assert e.resources["bram36"] * 36 * 1024 >= 3 * 64 * 1024 * 8


@pytest.mark.parametrize("precision", [2, 4, 8, (4, 8), 16])
def test_accelerator_resources_grow_with_the_widths(precision):
    w, a, _ = fpga.operand_widths(precision)
    one = fpga.estimate("systolic_32x32", ZCU102, (w, a), packing=False).resources
    wider = fpga.estimate("systolic_32x32", ZCU102, (w + 1, a + 1), packing=False).resources
    assert wider["ffs"] >= one["ffs"] and wider["bram36"] >= one["bram36"]
    assert wider["luts"] + 100 * wider["dsps"] >= one["luts"] + 100 * one["dsps"]


@pytest.mark.parametrize("precision", ["w4a4", 8, "fp8_e4m3"])
def test_what_fits_keeps_fitting_on_a_bigger_device(precision):
    best = fpga.largest_array("systolic_32x32", PYNQ, precision)
    assert best is not None and best.fits
    for bigger in (ZCU102, VU9P, load_device("u250")):
        assert fpga.estimate(hw.load_accelerator("systolic_32x32").with_changes(rows=best.rows, cols=best.cols),
                             bigger, precision).fits


def test_largest_array_is_the_edge_of_fitting():
    best = fpga.largest_array("systolic_32x32", ZCU102, "w4a4")
    accel = hw.load_accelerator("systolic_32x32")
    n = best.rows
    assert best.fits and best.utilization[best.binding] <= 1.0
    assert not fpga.estimate(accel.with_changes(rows=n + 1, cols=n + 1), ZCU102, "w4a4").fits


def test_utilisation_is_resources_over_capacity_and_binding_is_the_largest():
    e = fpga.estimate("systolic_32x32", ZCU102, 8)
    cap = ZCU102.capacity()
    assert e.utilization["luts"] == pytest.approx(e.resources["luts"] / cap["luts"])
    assert e.utilization[e.binding] == max(e.utilization.values())
    assert e.resources["uram"] == 0 and e.utilization["uram"] == 0.0


def test_wp486_packing_halves_int8_dsps_on_ultrascale_plus_only():
    packed = fpga.estimate("systolic_32x32", ZCU102, 8, packing=True).resources["dsps"]
    plain = fpga.estimate("systolic_32x32", ZCU102, 8, packing=False).resources["dsps"]
    assert (plain, packed) == (1024, 512)
    # DSP48E1's 25-bit port cannot hold two products 18 bits apart: no packing on 7-series
    accel = hw.load_accelerator("systolic_8x8")
    assert fpga.estimate(accel, PYNQ, 8, packing=True).resources["dsps"] == 64


@pytest.mark.parametrize("w, a, dsps", [(8, 8, 1), (27, 18, 1), (18, 27, 1), (28, 18, 2), (32, 32, 4), (48, 48, 6)])
def test_wide_multiplies_split_over_dsp48e2(w, a, dsps):
    # signed chunks of 26 x 17 bits below the top one: ceil(w/26) x ceil(a/17)
    assert fpga.dsp_slices(w, a, ZCU102.dsp) == dsps


def test_fmax_is_capped_by_the_data_sheet_and_rises_with_speed_grade():
    slow = fpga.estimate("systolic_32x32", load_device("zcu102", speed_grade="-1"), 8)
    fast = fpga.estimate("systolic_32x32", load_device("zcu102", speed_grade="-3"), 8)
    assert slow.fmax_mhz < fast.fmax_mhz
    for e in (slow, fast):
        assert e.fmax_mhz <= min(e.device.grade.dsp_mhz, e.device.grade.bram_mhz)


def test_fmax_is_capped_by_the_global_clock_buffer():
    slow = dataclasses.replace(ZCU102, grades=tuple(dataclasses.replace(g, bufg_mhz=100.0) for g in ZCU102.grades))
    e = fpga.estimate("systolic_32x32", slow, 4)
    assert (e.fmax_mhz, e.critical_path) == (100.0, "global clock buffer FMAX")
    assert fpga.estimate("systolic_32x32", ZCU102, 4).fmax_mhz > 100.0


def test_fmax_falls_with_the_accumulator_carry_chain():
    accel = hw.load_accelerator("systolic_32x32")
    narrow = fpga.estimate(accel.with_changes(accumulator_bits=16), PYNQ, 4).fmax_mhz
    wide = fpga.estimate(accel.with_changes(accumulator_bits=48), PYNQ, 4).fmax_mhz
    assert wide < narrow


def test_report_runs_at_fmax_and_carries_the_estimate():
    wl = hw.Workload("g", (hw.Layer.gemm("g", 256, 256, 256),))
    report = fpga.simulate(wl, "systolic_32x32", "zcu102", node_nm=7)
    t = report.totals()
    assert t["fpga_fmax_mhz"] == report.fpga.fmax_mhz == report.accelerator.clock_mhz
    assert t["latency_ms"] == pytest.approx(t["total_cycles"] / (t["fpga_fmax_mhz"] * 1e3))
    assert t["fpga_gops"] == pytest.approx(2 * 256 ** 3 * t["inferences_per_s"] / 1e9)
    # on-chip energy from Horowitz's 45 nm at 0.9 V (0.9 x nominal) to 7 nm at 0.9 x 0.7 V (Stillmaker and Baas's
    # energy fits), DRAM kept
    scale = (0.1776 * 0.63 ** 2 - 0.09097 * 0.63 + 0.02447) / (1.018 * 0.9 ** 2 - 0.3107 * 0.9 + 0.1539)
    dram = t["energy_per_inference_uj"] * t["energy_dram_uj"] / t["energy_uj"]
    at_7nm = (t["energy_per_inference_uj"] - dram) * scale + dram
    assert t["asic_energy_per_inference_uj"] == pytest.approx(at_7nm)
    assert t["power_w"] == pytest.approx(at_7nm * 1e-6 * t["inferences_per_s"])
    assert area.estimate("systolic_32x32", 45, 8).energy_scale == 1.0
    assert t["fpga_fits"] is True and t["area_mm2"] > 0
    assert any("FPGA resources" in a for a in report.assumptions)
    assert any("ASIC area" in a for a in report.assumptions)


# --- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision, message", [
    (0, "bit width must be > 0"), (65, "between 1 and 64"), ((4, 100), "between 1 and 64"),
    ("w0a4", "bit width must be > 0"), ("wxa4", "expected wWaA"),
])
def test_bad_widths_are_named(precision, message):
    with pytest.raises(ValueError, match=message):
        fpga.estimate("systolic_32x32", ZCU102, precision)


@pytest.mark.parametrize("kwargs, message", [
    (dict(w_bits=0, a_bits=8), "w_bits must be between 1 and 64"),
    (dict(w_bits=8, a_bits=65), "a_bits must be between 1 and 64"),
    (dict(w_bits=8, a_bits=8, acc_bits=12), "acc_bits .* must hold a product"),
    (dict(w_bits=8, a_bits=8, lanes=0), "lanes must be"),
])
def test_bad_lane_specs_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MacSpec(**kwargs)


def test_unknown_device_in_estimate_lists_the_catalogue():
    with pytest.raises(ValueError, match="unknown device 'kintex'.*zcu102"):
        fpga.estimate("systolic_32x32", "kintex", 8)


# --- ASIC area -----------------------------------------------------------------------------------------
def test_area_rule_reproduces_horowitz_and_predicts_the_unanchored_entries():
    table = area.load_area_table()
    assert table.int_add.adder(8) == 36 and table.int_mult.multiplier(8, 8) == 282
    rules = {"int_add": table.int_add.adder, "float_add": table.float_add.adder,
             "int_mult": lambda b: table.int_mult.multiplier(b, b),
             "float_mult": lambda b: table.float_mult.multiplier(b, b)}
    for point in table.published:
        assert rules[point.op](point.bits) == pytest.approx(point.um2, rel=0.06), point


def test_area_grows_with_widths_and_shrinks_with_the_node():
    a4, a8 = area.estimate("systolic_32x32", 45, 4), area.estimate("systolic_32x32", 45, 8)
    assert a4.total_mm2 < a8.total_mm2
    # Stillmaker and Baas (2017), area table, 45 nm row: 0.059 at 7 nm
    assert area.estimate("systolic_32x32", 7, 8).total_mm2 == pytest.approx(a8.total_mm2 * 0.059)
    # SRAM: 3 x 64 KiB x 8 bits x 0.346 um2 / 0.5
    assert a8.area_mm2["sram"] == pytest.approx(3 * 64 * 1024 * 8 * 0.346 / 0.5 * 1e-6)
    with pytest.raises(ValueError, match="node_nm must be a process node"):
        area.estimate("systolic_32x32", 0, 8)


# --- sweep costs ---------------------------------------------------------------------------------------
def test_sweep_costs_are_the_estimates_at_the_widest_formats():
    from qsim.sweep.costs import LayerProfile, ModelProfile, hardware_costs
    from qsim.sweep.jobs import make_digits_job
    from qsim.sweep.space import Config

    assert {"luts", "dsps", "brams", "area_mm2"} <= {c.name for c in make_digits_job().costs}
    profile = ModelProfile((LayerProfile("a", "Linear", 10, 10, 10), LayerProfile("b", "Linear", 10, 10, 10)), 1)
    costs = {c.name: c for c in hardware_costs("systolic_32x32", "zcu102", 45)}
    config = Config.from_dict({"weight": "int4", "activation": "int8"})
    expected = fpga.estimate("systolic_32x32", ZCU102, (4, 8))
    assert costs["luts"](profile, config) == expected.resources["luts"]
    assert costs["dsps"](profile, config) == expected.resources["dsps"]
    assert costs["brams"](profile, config) == expected.resources["bram36"]
    assert costs["area_mm2"](profile, config) == pytest.approx(area.estimate("systolic_32x32", 45, (4, 8)).total_mm2)
    narrow = Config.from_dict({"weight": "int4", "activation": "int4"})
    assert costs["area_mm2"](profile, narrow) < costs["area_mm2"](profile, config)


# --- command line --------------------------------------------------------------------------------------
def test_cli_fit_and_device_columns(capsys):
    from qsim.cli import main

    assert main(["hw", "fit", "--device", "zcu102", "--precision", "w4a4"]) == 0
    out = capsys.readouterr().out
    n = fpga.largest_array("systolic_32x32", ZCU102, "w4a4").rows
    assert f"on zcu102: {n}x{n}" in out and "fits" in out
    assert main(["hw", "resnet18", "--accelerator", "systolic_8x8", "--device", "pynq_z1", "--node", "7"]) == 0
    out = capsys.readouterr().out
    assert "FPGA pynq_z1" in out and "fmax" in out and "ASIC 7 nm" in out
    assert main(["hw", "fit", "--device", "zcu1020"]) == 2
    assert "qsim: error: unknown device 'zcu1020'" in capsys.readouterr().err
    assert main(["hw", "fit"]) == 2
    assert "qsim hw fit needs --device" in capsys.readouterr().err


SHIPPED = ("systolic_8x8", "bitfusion_like_16x16", "channel_gating_32x32", "overq_ws_32x32")  # every kind


@pytest.mark.parametrize("accelerator", SHIPPED)
def test_cli_fit_and_device_work_for_every_shipped_kind(accelerator, capsys):
    from qsim.cli import main

    topology = str(Path(__file__).parents[1] / "examples" / "mobilenet_head.csv")
    assert main(["hw", "fit", "--accelerator", accelerator, "--device", "zcu102", "--precision", "w4a4"]) == 0
    n = fpga.largest_array(accelerator, ZCU102, "w4a4").rows
    assert f"on zcu102: {n}x{n}" in capsys.readouterr().out
    assert main(["hw", topology, "--accelerator", accelerator, "--device", "zcu102", "--node", "7"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    luts = fpga.estimate(accelerator, ZCU102, workload=hw.read_topology(topology)).resources["luts"]
    assert "FPGA zcu102" in out and f"luts {luts:,.0f}" in out and "ASIC 7 nm" in out
    assert ("logic is not counted" in out) == (accelerator in ("channel_gating_32x32", "overq_ws_32x32"))


@pytest.mark.parametrize("precision, device", [(4, ZCU102), (8, ZCU102), ((4, 8), PYNQ), (6, PYNQ)])
def test_a_fixed_width_pe_is_the_lane_checked_against_yosys(precision, device):
    w, a, _ = fpga.operand_widths(precision)
    pe = fpga.estimate("systolic_32x32", device, precision, packing=False).pe
    assert pe == fpga.lane_resources(MacSpec(w, a, 32), device)


def test_a_sweep_file_can_minimise_luts_and_area():
    from qsim.sweep.sweepfile import load_sweep

    objectives = ["error", "luts", "dsps", "brams", "area_mm2"]
    spec = load_sweep({"sweep": {"job": "digits", "objectives": objectives},
                       "space": {"weight": ["int4", "int8"], "activation": ["int4"]}})
    assert spec.objectives == tuple(objectives)
    costs = {c.as_dict()["weight"]: spec.job.costs_of(c) for c in spec.space.configs()}
    # w4a4: 8-bit products stay in LUTs; w8a4: 12-bit products take DSPs (two per slice by WP486)
    assert costs["int4"]["dsps"] == 0 and costs["int8"]["dsps"] == 512
    assert costs["int4"]["luts"] > costs["int8"]["luts"] and costs["int4"]["area_mm2"] < costs["int8"]["area_mm2"]
    from qsim.sweep.jobs import DIGITS_ACCELERATOR
    for w in ("int4", "int8"):
        assert costs[w]["brams"] == fpga.estimate(DIGITS_ACCELERATOR, "zcu102", (int(w[3:]), 4)).resources["bram36"] > 0
