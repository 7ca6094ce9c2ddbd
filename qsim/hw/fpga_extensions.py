"""FPGA cost of what channel gating (qsim.hw.gating) and OverQ (qsim.hw.overq) add to a systolic array, in the
LUT6 fabric of both Xilinx families that qsim.hw.fpga models; qsim.hw.fpga.estimate adds it to the base array.

Exports ASSUMPTIONS, comparator(bits), multiplexer(bits, ways), gate_unit(gating, acc_bits),
overq_pe(spec, w_bits, rules, on_dsp), overq_levels(spec) and overq_pe_resources(spec, w_bits, acc_bits,
target). The RTL of what is counted is qsim.hw.rtl_extensions; yosys's counts for it are in
tests/data/yosys_extensions.csv (python benchmarks/fpga_yosys.py --extensions).

Rules (LUT6: six inputs, so a LUT is a 4:1 multiplexer or compares three bit pairs):
  * an n-bit comparator a > b: the carry chain takes one position per three bit pairs, ceil(n/3) positions,
    and ceil(2n/3) LUTs (measured, yosys synth_xilinx on both families: 16, 24, 32 bits -> 11, 16, 22 LUTs,
    2, 2, 3 carry blocks);
  * a w-way multiplexer: ceil((w - 1)/3) LUTs per bit (each LUT6 is a 4:1 multiplexer and removes three
    ways), ceil(log4 w) LUT levels;
  * a select decoded from n inputs: ceil((n - 1)/5) LUTs per select bit (a LUT6 tree).
"""
from __future__ import annotations

import math

ASSUMPTIONS = (
    "FPGA channel gating: each gate comparator registers its partial sum, its channel's threshold and the gate "
    "bit; one tile's gate bits (tile_pixels x cols) sit in a block RAM; the thresholds' storage and the "
    "conditional pass's compaction control are not counted.",
    "FPGA OverQ: the PE's select decode (tag code and the run of shifted slots) is a reconstruction "
    "(qsim.hw.rtl_extensions); neighbouring PEs' weights and tags arrive as wires.",
)


def comparator(bits: int) -> dict:
    """LUTs, carry blocks and flip-flops of a gate comparator (rtl_extensions.comparator_verilog): the
    compare, and registers for the partial sum, the threshold and the gate bit."""
    positions = math.ceil(bits / 3)
    return {"luts": math.ceil(2 * bits / 3), "carry": math.ceil(positions / 4), "ffs": 2 * bits + 1, "dsps": 0}


def multiplexer(bits: int, ways: int) -> dict:
    """A `ways`-way multiplexer of `bits` bits in LUT6 4:1 multiplexers (a 1-way one is a wire)."""
    return {"luts": bits * math.ceil((ways - 1) / 3), "carry": 0, "ffs": 0, "dsps": 0}


def _levels(ways: int) -> int:
    return math.ceil(math.log(ways, 4)) if ways > 1 else 0


def gate_unit(gating, acc_bits: int) -> dict:
    """The channel-gating unit: `comparators` comparators at the accumulator width (qsim.hw.gating)."""
    one = comparator(acc_bits)
    return {k: gating.comparators * v for k, v in one.items()}


def overq_pe(spec, w_bits: int, rules, on_dsp: bool) -> dict:
    """What one OverQ PE (rtl_extensions.overq_pe_verilog) adds to the bits-wide lane:

    * the weight multiplexer: weight_mux_ways ways of w_bits;
    * the shifter: 1 + directions ways (left by bits; right too with precision) over the w_bits + 2*bits
      shifted product;
    * the select decode: ceil(log2 ways) bits from the tags of the weight_mux_ways - 1 slots that decide it;
    * tag_bits flip-flops with the activation, and, where the family's DSP absorbs operand registers (xc7),
      the weight register, which the multiplexer now separates from the slice (measured, yosys xc7: 42
      flip-flops against the plain lane's 32 + tags).
    """
    directions = 2 if spec.precision else 1
    select_bits = max(spec.weight_mux_ways - 1, 0).bit_length()
    decode_inputs = spec.tag_bits * (spec.weight_mux_ways - 1)
    decode = select_bits * math.ceil(max(decode_inputs - 1, 0) / 5)
    parts = (multiplexer(w_bits, spec.weight_mux_ways), multiplexer(w_bits + 2 * spec.bits, 1 + directions))
    ffs = spec.tag_bits + (w_bits if on_dsp and rules.dsp_absorbs_operand_registers else 0)
    return {"luts": sum(p["luts"] for p in parts) + decode, "carry": 0, "ffs": ffs, "dsps": 0}


def overq_levels(spec) -> int:
    """LUT levels OverQ adds to the PE's path: the select decode, the weight multiplexer, the shifter."""
    decode = 1 if spec.weight_mux_ways > 1 else 0
    return decode + _levels(spec.weight_mux_ways) + _levels(2 + spec.precision)


def overq_pe_resources(spec, w_bits: int, acc_bits: int, target="ultrascale_plus", dsp: bool = True) -> dict:
    """One whole OverQ PE on a device or family (as fpga.lane_resources; `dsp=False` is yosys's -nodsp):
    the signed w_bits x bits lane plus overq_pe. The counts compared with yosys on overq_pe_verilog."""
    from . import fpga
    lane = fpga.lane_resources(fpga.MacSpec(w_bits, spec.bits, acc_bits), target, dsp=dsp)
    target = target.family if isinstance(target, fpga.Device) else fpga.YOSYS_FAMILIES.get(target, target)
    if target not in ("7series", "ultrascale_plus"):
        target = fpga.load_device(target).family
    extra = overq_pe(spec, w_bits, fpga.load_cost_model().family(target), lane["dsps"] > 0)
    return {k: lane[k] + extra[k] for k in lane}
