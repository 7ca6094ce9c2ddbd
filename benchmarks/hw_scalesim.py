"""SCALE-Sim v3 against qsim.hw on the same layers: cycle agreement and speed ratio.

SCALE-Sim needs numpy<2.4, so it runs in its own virtual environment; this script drives it there
by re-invoking itself with that environment's python in ``--worker`` mode (the worker imports only
the standard library and scalesim). Set up the environment once:

    python -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim==3.0.0 "numpy<2.4" six

Then:

    python benchmarks/hw_scalesim.py --scalesim-python /tmp/scalesim-venv/bin/python  # 4 GEMMs, 3 arrays, 3 dataflows
    python benchmarks/hw_scalesim.py --scalesim-python ... --suite full               # ResNet-18, 32x32, OS (minutes)
    python benchmarks/hw_scalesim.py --scalesim-python ... --suite reference \\
        --write-reference tests/data/scalesim_cycles.csv                                        # the committed table

The environment variable QSIM_SCALESIM_PYTHON can replace --scalesim-python. --raw-dir DIR keeps
SCALE-Sim's per-layer results (JSON lines) and reuses them on the next run, so the reference table can
be rewritten without re-simulating; speed-ups printed then use the stored SCALE-Sim times.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# SCALE-Sim's INI configuration. Compute cycles do not depend on the SRAM sizes or the bandwidth
# mode (SCALE-Sim assumes operands already in SRAM for compute); CALC mode is its default and gives
# zero stall cycles. In USER mode the DRAM words per cycle are IfmapSRAMBankBandwidth (ifmap),
# FilterSRAMBankBandwidth (filter) and Bandwidth (ofmap). Custom layouts and sparsity are off.
CONFIG_DEFAULTS = {"mode": "CALC", "ifmap_bw": 10, "filter_bw": 10, "ofmap_bw": 10}
SCALESIM_CONFIG = """[general]
run_name = run

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {sram_kib}
FilterSramSzkB: {sram_kib}
OfmapSramSzkB: {sram_kib}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: {ofmap_bw}
Dataflow: {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {ifmap_bw}
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {filter_bw}
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: {mode}
UseRamulatorTrace: False
"""

TOPOLOGY_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
GEMM_HEADER = "Layer name, M, N, K,\n"


def _csv_floats(line: str) -> list[float]:
    return [float(x) for x in line.strip().rstrip(",").split(",")[1:]]


def worker(args) -> int:
    """Runs SCALE-Sim one layer at a time (so each layer is timed) and prints one JSON line per layer."""
    import contextlib
    import io

    from scalesim.scale_sim import scalesim

    rows = [line for line in Path(args.topology).read_text().splitlines()[1:] if line.strip()]
    for row in rows:
        name = row.split(",")[0].strip()
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "scale.cfg").write_text(SCALESIM_CONFIG.format(
                rows=args.rows, cols=args.cols, dataflow=args.dataflow, sram_kib=args.sram_kib, mode=args.mode,
                ifmap_bw=args.ifmap_bw, filter_bw=args.filter_bw, ofmap_bw=args.ofmap_bw))
            header = GEMM_HEADER if args.gemm else TOPOLOGY_HEADER
            (tmp / "topology.csv").write_text(header + row.rstrip(",") + ",\n")
            (tmp / "layout.csv").write_text("Layer name,\n")
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                sim = scalesim(save_disk_space=True, verbose=False, config=str(tmp / "scale.cfg"),
                               topology=str(tmp / "topology.csv"), layout=str(tmp / "layout.csv"),
                               input_type_gemm=args.gemm)
                sim.run_scale(top_path=str(tmp))
            seconds = time.perf_counter() - start
            compute = (tmp / "run" / "COMPUTE_REPORT.csv").read_text().splitlines()[1]
            detail = (tmp / "run" / "DETAILED_ACCESS_REPORT.csv").read_text().splitlines()[1]
        _, total, stall, util, mapping, compute_util = _csv_floats(compute)
        d = _csv_floats(detail)
        print(json.dumps({
            "layer": name, "scalesim_cycles": int(total), "scalesim_stall_cycles": int(stall),
            "scalesim_util_pct": util, "scalesim_mapping_eff_pct": mapping,
            "scalesim_compute_util_pct": compute_util,
            "scalesim_ifmap_sram_reads": int(d[2]), "scalesim_filter_sram_reads": int(d[5]),
            "scalesim_ofmap_sram_writes": int(d[8]), "scalesim_ifmap_dram_reads": int(d[11]),
            "scalesim_filter_dram_reads": int(d[14]), "scalesim_ofmap_dram_writes": int(d[17]),
            "scalesim_seconds": seconds,
        }), flush=True)
    return 0


# --- the driver (runs in the project's environment) ------------------------------------------------

ALL = ("os", "ws", "is")
SUITES = {
    # name: [(array size, topology name, dataflows)]; --dataflows overrides the dataflows
    "quick": [(8, "gemms", ALL), (32, "gemms", ALL), (128, "gemms", ALL)],
    "full": [(32, "resnet18_224", ("os",))],  # the run HW_NOTES timed: ResNet-18, 32x32, OS
    "reference": [(8, "resnet18_32", ALL), (8, "gemms", ALL), (32, "resnet18_224", ALL), (32, "gemms", ALL),
                  (128, "resnet18_224", ALL), (128, "gemms", ALL)],
}
GEMMS = [(128, 128, 128), (100, 70, 30), (196, 384, 192), (1, 512, 1000)]  # (M, K, N)


def topologies():
    """name -> (Workload, is_gemm): ResNet-18's convolutions (224x224 and 32x32 inputs) and four GEMMs."""
    import torch

    import dataclasses

    import qsim.hw as hw
    from qsim.hw.extract import workload
    from qsim.hw.models import resnet18

    out = {}
    for size in (224, 32):
        wl = workload(resnet18(), torch.randn(1, 3, size, size), name=f"resnet18_{size}")
        out[f"resnet18_{size}"] = (dataclasses.replace(wl.select("conv"), name=f"resnet18_{size}"), False)
    out["gemms"] = (hw.Workload("gemms", tuple(hw.Layer.gemm(f"gemm_{m}x{k}x{n}", m, k, n) for m, k, n in GEMMS)), True)
    return out


def run_scalesim(python: str, workload, gemm: bool, size: int, dataflow: str, raw_dir, **config):
    """Per-layer SCALE-Sim results (dicts), from raw_dir if this run was saved there, else by running it.

    `config` sets the worker's sram_kib, mode ("USER" or "CALC") and ifmap_bw / filter_bw / ofmap_bw."""
    import qsim.hw as hw

    tag = "".join(f"_{key}{value}" for key, value in sorted(config.items()))
    raw = Path(raw_dir) / f"out_{size}_{dataflow}_{workload.name}{tag}.jsonl" if raw_dir else None
    if raw is not None and raw.exists():
        return [json.loads(line) for line in raw.read_text().splitlines() if line.strip()], True
    with tempfile.TemporaryDirectory() as tmp:
        topo = hw.write_topology(workload, Path(tmp) / "topology.csv", gemm=gemm)
        cmd = [python, __file__, "--worker", "--topology", str(topo), "--rows", str(size), "--cols", str(size),
               "--dataflow", dataflow] + (["--gemm"] if gemm else [])
        cmd += [arg for key, value in config.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"SCALE-Sim failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(done.stdout)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], False


def installed_versions(python: str) -> list[str]:
    """[scalesim version, numpy version] in the environment of `python`, for the reference tables' headers."""
    return subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('scalesim'), "
                           "m.version('numpy'))"], capture_output=True, text=True, check=True).stdout.split()


def time_qsim(workload, accel, repeats: int = 5) -> tuple[float, object]:
    """Best-of-`repeats` seconds for simulate(workload, accel), and its report."""
    import qsim.hw as hw

    best, report = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        report = hw.simulate(workload, accel)
        best = min(best, time.perf_counter() - start)
    return best, report


def driver(argv) -> int:
    parser = argparse.ArgumentParser(description="Compare qsim.hw with SCALE-Sim v3 on the same layers.")
    parser.add_argument("--scalesim-python", default=os.environ.get("QSIM_SCALESIM_PYTHON"),
                        help="python of the environment where scalesim is installed (or QSIM_SCALESIM_PYTHON)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--dataflows", help="comma-separated subset of os,ws,is (default: the suite's)")
    parser.add_argument("--raw-dir", help="save SCALE-Sim's per-layer JSON lines here, and reuse those found")
    parser.add_argument("--write-reference", type=Path, help="write the table the tests check (CSV)")
    args = parser.parse_args(argv)
    if not args.scalesim_python:
        parser.error("give --scalesim-python or set QSIM_SCALESIM_PYTHON (see the module docstring)")

    import pandas as pd

    import qsim.hw as hw

    tops = topologies()
    rows, lines = [], []
    print(f"{'array':>7} {'df':>3} {'topology':>13} {'layers':>6} {'cycles equal':>12} {'SCALE-Sim cycles':>16} "
          f"{'SCALE-Sim s':>11} {'qsim ms':>8} {'speed-up':>9}")
    for size, topo_name, dataflows in SUITES[args.suite]:
        wl, gemm = tops[topo_name]
        for dataflow in args.dataflows.split(",") if args.dataflows else dataflows:
            accel = hw.load_accelerator("systolic_32x32", rows=size, cols=size, dataflow=dataflow)
            results, reused = run_scalesim(args.scalesim_python, wl, gemm, size, dataflow, args.raw_dir)
            seconds, report = time_qsim(wl, accel)
            frame = report.frame
            equal = 0
            by_name = {res["layer"]: res for res in results}
            missing = [layer.name for layer in wl if layer.name not in by_name]
            if missing:
                raise RuntimeError(f"SCALE-Sim gave no result for {missing} ({size}x{size} {dataflow})")
            results = [by_name[layer.name] for layer in wl]
            for layer, res in zip(wl, results):
                ours = int(frame.loc[layer.name, "compute_cycles"]) - 1  # SCALE-Sim prints the last cycle's index
                equal += ours == res["scalesim_cycles"]
                rows.append({"array_rows": size, "array_cols": size, "dataflow": dataflow, "topology": topo_name,
                             "layer": layer.name, "H": (layer.P - 1) * layer.stride[0] + layer.R if not gemm else "",
                             "W": (layer.Q - 1) * layer.stride[1] + layer.S if not gemm else "",
                             "R": layer.R if not gemm else "", "S": layer.S if not gemm else "",
                             "C": layer.C if not gemm else "", "K": layer.K if not gemm else "",
                             "stride": layer.stride[0] if not gemm else "",
                             "M": layer.gemm_m if gemm else "", "N": layer.gemm_n if gemm else "",
                             "Kgemm": layer.gemm_k if gemm else "",
                             "qsim_cycles_minus_1": ours, **res})
            ss_seconds = sum(r["scalesim_seconds"] for r in results)
            ss_cycles = sum(r["scalesim_cycles"] for r in results)
            line = (f"{size:>3}x{size:<3} {dataflow:>3} {topo_name:>13} {len(results):>6} {equal:>5}/{len(results):<6} "
                    f"{ss_cycles:>16,} {ss_seconds:>11.1f} {seconds * 1e3:>8.2f} {ss_seconds / seconds:>8,.0f}x"
                    + ("  (SCALE-Sim times from --raw-dir)" if reused else ""))
            print(line, flush=True)
            lines.append(line)
    table = pd.DataFrame(rows)
    agree = int((table["qsim_cycles_minus_1"] == table["scalesim_cycles"]).sum())
    print(f"\ncompute cycles equal (qsim - 1 == SCALE-Sim) on {agree}/{len(table)} layer runs")
    total_ss = table["scalesim_seconds"].sum()
    print(f"SCALE-Sim {total_ss:,.1f} s in all over {len(lines)} runs")
    if "resnet18_224" in set(table["topology"]):
        import torch
        from qsim.hw.extract import workload
        from qsim.hw.models import resnet18
        accel = hw.load_accelerator("systolic_32x32")
        with tempfile.TemporaryDirectory() as tmp:
            topo = hw.write_topology(tops["resnet18_224"][0], Path(tmp) / "r18.csv")
            start = time.perf_counter()
            report = hw.simulate(hw.read_topology(topo), accel)
            from_csv = time.perf_counter() - start
        model = resnet18()
        start = time.perf_counter()
        wl = workload(model, torch.randn(1, 3, 224, 224)).select("conv")
        hw.simulate(wl, accel)
        from_model = time.perf_counter() - start
        print(f"qsim on ResNet-18 (32x32 OS), {report.frame['compute_cycles'].sum() - len(wl):,} cycles in "
              f"SCALE-Sim's count: {from_csv * 1e3:.1f} ms from the topology CSV (read + simulate), "
              f"{from_model * 1e3:.0f} ms from the torch model (torch.fx trace + simulate)")
    if args.write_reference:
        versions = installed_versions(args.scalesim_python)
        header = [
            f"# SCALE-Sim v3 reference numbers: PyPI scalesim=={versions[0]} (numpy {versions[1]}), one layer per run.",
            "# Configuration: SCALESIM_CONFIG in benchmarks/hw_scalesim.py (square arrays, 64 KiB SRAMs, CALC",
            "# bandwidth mode, no sparsity, no custom layout; compute cycles do not depend on SRAM size).",
            "# Convolution rows give SCALE-Sim's topology fields (H, W, R, S, C, K, stride); GEMM rows M, N, Kgemm",
            "# (run with SCALE-Sim's -i gemm input). scalesim_* columns are SCALE-Sim's COMPUTE_REPORT.csv",
            "# (cycles, stall cycles, overall util %, mapping efficiency %, compute util %) and",
            "# DETAILED_ACCESS_REPORT.csv (SRAM reads/writes, in 1-byte words); scalesim_seconds is its wall time here.",
            "# Produced by: python benchmarks/hw_scalesim.py --scalesim-python PY --suite reference \\",
            "#     --write-reference tests/data/scalesim_cycles.csv",
            "# The SCALE-Sim configuration file of each run ({rows}, {cols}, {dataflow} from the row):",
        ] + ["#   " + line for line in SCALESIM_CONFIG.replace("{sram_kib}", "64").format(
            rows="{rows}", cols="{cols}", dataflow="{dataflow}", **CONFIG_DEFAULTS).splitlines() if line]
        columns = [c for c in table.columns if c != "qsim_cycles_minus_1"]
        args.write_reference.parent.mkdir(parents=True, exist_ok=True)
        args.write_reference.write_text("\n".join(header) + "\n" + table[columns].to_csv(index=False))
        print(f"reference table: {args.write_reference} ({len(table)} rows)")
    return 0 if agree == len(table) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--topology", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cols", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dataflow", help=argparse.SUPPRESS)
    parser.add_argument("--sram-kib", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--gemm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=CONFIG_DEFAULTS["mode"], help=argparse.SUPPRESS)
    for operand in ("ifmap", "filter", "ofmap"):
        parser.add_argument(f"--{operand}-bw", type=int, default=CONFIG_DEFAULTS[f"{operand}_bw"], help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.worker:
        return worker(args)
    return driver(rest)


if __name__ == "__main__":
    sys.exit(main())
