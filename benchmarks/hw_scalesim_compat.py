"""qsim.hw's scalesim_compat mode against SCALE-Sim v3's stall and traffic figures on small layers.

Runs SCALE-Sim (through benchmarks/hw_scalesim.py's worker, in its own numpy<2.4 environment; see
that file's docstring for the setup) on six small layers x OS/WS/IS x 4x4 and 8x8 arrays in five
configurations (CONFIGS): SRAMs of 64 KiB (operands fit) and 1 KiB (some overflow) in its USER bandwidth
mode (ifmap 4, filter 2, ofmap 4 words per cycle, and an output-bound 64/64/1 at 1 KiB) and in its CALC
mode; prints, per quantity, on how many runs qsim's compat figure is equal and the range of
qsim / SCALE-Sim where it is not; --write-reference writes the table that
tests/test_hw_scalesim_compat.py checks.

    python benchmarks/hw_scalesim_compat.py --scalesim-python /tmp/scalesim-venv/bin/python \\
        --write-reference tests/data/scalesim_traffic.csv
"""
import argparse
import os
import sys
from pathlib import Path

import hw_scalesim

USER_BANDWIDTHS = {"ifmap_bw": 4, "filter_bw": 2, "ofmap_bw": 4}  # words (bytes) per cycle
SLOW_OFMAP = {"ifmap_bw": 64, "filter_bw": 64, "ofmap_bw": 1}  # output-bound
CONFIGS = [("USER", 64, USER_BANDWIDTHS), ("USER", 1, USER_BANDWIDTHS), ("USER", 1, SLOW_OFMAP),
           ("CALC", 64, {}), ("CALC", 1, {})]  # (bandwidth mode, KiB per SRAM, DRAM words per cycle)
ARRAYS = (4, 8)
GEMMS = [(16, 16, 16), (36, 36, 8), (100, 70, 30)]  # (M, K, N)
CONVS = [("conv3x3", 8, 8, 3, 3, 4, 8, 1), ("down1x1_s2", 8, 8, 1, 1, 8, 16, 2),
         ("conv2x3_s3", 8, 9, 2, 3, 3, 4, 3)]  # SCALE-Sim topology rows: name, H, W, R, S, C, K, stride
# SCALE-Sim figures the compat mode reproduces, and the qsim report column each is compared with.
QUANTITIES = {"compute_cycles": "scalesim_compute_cycles", "stall_cycles": "scalesim_stall_cycles",
              "sram_ifmap_read_bytes": "scalesim_ifmap_sram_reads",
              "sram_filter_read_bytes": "scalesim_filter_sram_reads",
              "sram_ofmap_write_bytes": "scalesim_ofmap_sram_writes",
              "dram_ifmap_read_bytes": "scalesim_ifmap_dram_reads",
              "dram_filter_read_bytes": "scalesim_filter_dram_reads",
              "dram_write_bytes": "scalesim_ofmap_dram_writes"}


def workloads():
    """(Workload, is_gemm) pairs: three GEMMs and three convolutions, one SCALE-Sim topology each."""
    import qsim.hw as hw

    gemms = hw.Workload("gemms", tuple(hw.Layer.gemm(f"gemm_{m}x{k}x{n}", m, k, n) for m, k, n in GEMMS))
    convs = hw.Workload("convs", tuple(hw.scalesim_conv(*row) for row in CONVS))
    return [(gemms, True), (convs, False)]


def accelerator(size: int, dataflow: str, sram_kib: int, words: dict):
    """The qsim accelerator that describes one SCALE-Sim configuration (`words`: its USER-mode bandwidths)."""
    import qsim.hw as hw

    return hw.load_accelerator("systolic_32x32", rows=size, cols=size, dataflow=dataflow, ifmap_sram_kib=sram_kib,
                               filter_sram_kib=sram_kib, ofmap_sram_kib=sram_kib,
                               **{f"{key[:-3]}_dram_bytes_per_cycle": value for key, value in words.items()})


def collect(python: str, raw_dir) -> "pd.DataFrame":
    """One row per SCALE-Sim layer run, with the layer's fields and qsim's compat figures beside."""
    import pandas as pd

    import qsim.hw as hw

    rows = []
    for mode, sram_kib, words in CONFIGS:
        for size in ARRAYS:
            for dataflow in ("os", "ws", "is"):
                accel = accelerator(size, dataflow, sram_kib, words)
                for wl, gemm in workloads():
                    config = {"mode": mode, "sram_kib": sram_kib, **words}
                    results, _ = hw_scalesim.run_scalesim(python, wl, gemm, size, dataflow, raw_dir, **config)
                    frame = hw.simulate(wl, accel, scalesim_compat=mode.lower()).frame
                    for layer, res in zip(wl, results):
                        assert res["layer"] == layer.name, (res["layer"], layer.name)
                        fields = ({"M": layer.gemm_m, "Kgemm": layer.gemm_k, "N": layer.gemm_n} if gemm else
                                  {"H": layer.H, "W": layer.W, "R": layer.R, "S": layer.S, "C": layer.C,
                                   "K": layer.K, "stride": layer.stride[0]})
                        res = dict(res, scalesim_compute_cycles=res["scalesim_cycles"] - res["scalesim_stall_cycles"])
                        qsim = {f"qsim_{q}": float(frame.loc[layer.name, q]) for q in QUANTITIES}
                        rows.append({"mode": mode, "sram_kib": sram_kib, **dict.fromkeys(USER_BANDWIDTHS), **words,
                                     "array": size, "dataflow": dataflow, "layer": layer.name, **fields, **res, **qsim})
    return pd.DataFrame(rows)


def summarise(table) -> bool:
    """Prints, per configuration and quantity, the runs where qsim equals SCALE-Sim and the ratio range
    of the others; True when every figure is equal."""
    all_equal = True
    print(f"{'mode':>4} {'SRAM':>6} {'words/cycle':>11} {'quantity':>24} {'equal':>7}  qsim / SCALE-Sim where not equal")
    for (mode, sram_kib, *words), group in table.groupby(["mode", "sram_kib", *USER_BANDWIDTHS], sort=False,
                                                          dropna=False):
        words = "/".join(f"{w:g}" for w in words if w == w) or "-"
        for ours, theirs in QUANTITIES.items():
            q, s = group[f"qsim_{ours}"], group[theirs]
            equal = q == s
            all_equal &= bool(equal.all())
            off = (q[~equal] / s[~equal].where(s[~equal] != 0)).dropna()
            spread = f"{off.min():.4f} .. {off.max():.4f}" if len(off) else ""
            zero = int(((s == 0) & ~equal).sum())
            spread += f" ({zero} where SCALE-Sim has 0)" if zero else ""
            print(f"{mode:>4} {sram_kib:>3}KiB {words:>11} {ours:>24} {int(equal.sum()):>3}/{len(group):<3}  {spread}")
    return all_equal


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalesim-python", default=os.environ.get("QSIM_SCALESIM_PYTHON"),
                        help="python of the environment where scalesim is installed (or QSIM_SCALESIM_PYTHON)")
    parser.add_argument("--raw-dir", help="save SCALE-Sim's per-layer JSON lines here, and reuse those found")
    parser.add_argument("--write-reference", type=Path, help="write the table the tests check (CSV)")
    args = parser.parse_args(argv)
    if not args.scalesim_python:
        parser.error("give --scalesim-python or set QSIM_SCALESIM_PYTHON (see benchmarks/hw_scalesim.py)")
    table = collect(args.scalesim_python, args.raw_dir)
    summarise(table)
    if args.write_reference:
        version = hw_scalesim.installed_versions(args.scalesim_python)
        header = [
            f"# SCALE-Sim v3 stall and traffic figures: PyPI scalesim=={version[0]} (numpy {version[1]}), one layer per run.",
            "# Configuration: benchmarks/hw_scalesim.py's SCALESIM_CONFIG with ArrayHeight = ArrayWidth = array,",
            "# the three SRAMs of sram_kib KiB each, InterfaceBandwidth = mode; in USER mode the DRAM words per",
            "# cycle are the columns ifmap_bw, filter_bw, ofmap_bw (IfmapSRAMBankBandwidth, FilterSRAMBankBandwidth,",
            "# Bandwidth).",
            "# Convolution rows give SCALE-Sim's topology fields (H, W, R, S, C, K, stride); GEMM rows M, Kgemm, N.",
            "# scalesim_cycles, scalesim_stall_cycles: COMPUTE_REPORT.csv's Total Cycles and Stall Cycles;",
            "# scalesim_compute_cycles = their difference; SRAM and DRAM columns: DETAILED_ACCESS_REPORT.csv",
            "# (1-byte words). qsim_* columns: qsim.hw.simulate(..., scalesim_compat=mode) when the table was",
            "# written (the test recomputes them).",
            "# Produced by: python benchmarks/hw_scalesim_compat.py --scalesim-python PY \\",
            "#     --write-reference tests/data/scalesim_traffic.csv",
        ]
        columns = [c for c in table.columns if c != "scalesim_seconds"]
        args.write_reference.parent.mkdir(parents=True, exist_ok=True)
        args.write_reference.write_text("\n".join(header) + "\n" + table[columns].to_csv(index=False))
        print(f"reference table: {args.write_reference} ({len(table)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
