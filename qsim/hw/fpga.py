"""FPGA estimates for qsim.hw accelerators: LUT/FF/DSP/BRAM/URAM counts, fit, clock and throughput on a device.

Exports
    lane_resources(spec, target, dsp=True)           a MAC / dot-product lane (qsim.hw.rtl.MacSpec) on a device
                                                     or family: the counts yosys's `stat` is compared with
    lane_path(spec, target, dsp=True)                the cells on that lane's critical path, by kind: the
                                                     logic depth yosys's `ltp` is compared with
    map_buffer(width_bits, depth, device)            a buffer on the cheapest block RAM / UltraRAM shape
    estimate(accelerator, device, precision=...)     -> FpgaEstimate: resources, utilisation, fits, binding
                                                     resource, fmax; `.totals()` for a Report; a
                                                     channel-gating or OverQ accelerator adds its logic
                                                     (qsim.hw.fpga_extensions)
    largest_array(accelerator, device, precision)    the largest rows x cols that fits
    simulate(workload, accelerator, device)          the systolic Report at the estimated fmax, with estimates
    verilog(spec), MacSpec                           the RTL of what is estimated (qsim.hw.rtl)
    load_device(name), available_devices()           the device catalogue (qsim.hw.devices)

How (the rules, their sources and the fitted coefficients live in hw_models/fpga_xilinx.toml):
  * A multiplier goes to DSP slices when both operands have at least dsp_min_bits and the product at
    least dsp_min_product_bits (2 and 9: yosys's rule, measured), else into LUTs. An operand wider than
    its DSP port splits into chunks of port - 1 bits (the low chunks lose their sign bit); packing puts
    two narrow products that share an operand into one slice (Xilinx WP486: two INT8 products per
    DSP48E2) in accelerator estimates.
  * A LUT multiplier costs c2*w*a + c2log*w*a*log2(min(w, a)) + c1*(w+a) + c0 LUTs, coefficients fitted
    to yosys synth_xilinx -nodsp, and ceil((w+a)/4) carry blocks; an adder or accumulator of n bits one
    LUT per bit and ceil(n/4) carry blocks (CARRY4 counts; UltraScale+'s CARRY8 spans two); a signed
    accumulator's clear multiplexer one more LUT per bit; operand and accumulator bits are flip-flops
    (where yosys moves them into the DSP, they are not).
  * Buffers take the cheapest single shape of BRAM18, BRAM36 or URAM by bits of silicon used.
  * fmax: the slowest of the PE's critical path (LUT levels, nets and carry chains, delays per family
    scaled by speed grade) and the data-sheet FMAX of the DSP, block RAM and UltraRAM in use and of the
    global clock buffer.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from . import toml_spec
from .devices import Device, available_devices, load_device
from .rtl import MAX_BITS, MacSpec, verilog

__all__ = ["BufferMapping", "CostModel", "FpgaEstimate", "MacSpec", "available_devices", "estimate", "lane_path",
           "lane_resources", "largest_array", "load_cost_model", "load_device", "map_buffer", "simulate", "verilog"]

RESOURCES = ("luts", "ffs", "dsps", "bram36", "uram")
PRIMITIVE_BITS = {"bram18": 18 * 1024, "bram36": 36 * 1024, "uram": 288 * 1024}
YOSYS_FAMILIES = {"xc7": "7series", "xcup": "ultrascale_plus"}


# --- the cost model (rules and fitted coefficients, from TOML) -------------------------------------------
@dataclass(frozen=True)
class LutMultiplier:
    """LUTs = c2*w*a + c2log*w*a*log2(min(w, a)) + c1*(w+a) + c0, fitted to yosys with non-negative
    coefficients (so the estimate grows with both widths: the partial-product array is w*a bits and
    its adder tree about log2 of the narrower operand deep); the final adder along the w + a product
    bits takes ceil((w+a)/4) carry blocks."""

    c2: float
    c2log: float
    c1: float
    c0: float

    def luts(self, w: int, a: int) -> int:
        return round(self.c2 * w * a + self.c2log * w * a * math.log2(min(w, a)) + self.c1 * (w + a) + self.c0)


@dataclass(frozen=True)
class FamilyTiming:
    """Path delays (ns) at the speed grade whose DSP FMAX is ref_dsp_mhz; other grades scale by FMAX."""

    ref_dsp_mhz: float
    ff_ns: float
    lut_ns: float
    net_ns: float
    carry4_ns: float
    dsp_ns: float


@dataclass(frozen=True)
class FamilyRules:
    """Rules of one device family: when a product goes to a DSP slice, packing, what the slice absorbs,
    the LUT multiplier fit and the timing."""

    dsp_min_bits: int            # both operands at least this wide ...
    dsp_min_product_bits: int    # ... and w + a at least this wide, else the product is built in LUTs
    dsp_packing: int
    dsp_packing_max_bits: int
    dsp_absorbs_operand_registers: bool
    dsp_absorbs_adder_tree: bool
    lut_multiplier: LutMultiplier
    timing: FamilyTiming

    def uses_dsp(self, w: int, a: int) -> bool:
        return min(w, a) >= self.dsp_min_bits and w + a >= self.dsp_min_product_bits


@dataclass(frozen=True)
class CostModel:
    """The FPGA cost model: per-family rules and the float operand layout assumption."""

    name: str
    source: str
    ultrascale_plus: FamilyRules
    series7: FamilyRules
    float_exponent_bits: tuple[tuple[int, ...], ...]
    assumptions: tuple[str, ...] = ()

    def family(self, family: str) -> FamilyRules:
        return self.series7 if family == "7series" else self.ultrascale_plus

    def exponent_bits(self, bits: int) -> int:
        table = dict(self.float_exponent_bits)
        if bits not in table:
            raise ValueError(f"no floating-point layout for {bits}-bit operands; float_exponent_bits covers "
                             f"{sorted(table)} bits")
        return table[bits]


@functools.lru_cache(maxsize=None)
def load_cost_model(name_or_path="fpga_xilinx") -> CostModel:
    table, source = toml_spec.resolve(name_or_path)
    return toml_spec.build(CostModel, table, source)


# --- one lane --------------------------------------------------------------------------------------------
def _family_and_dsp(target):
    """(family, DSPSpec) of a Device, a device name, a family name or a yosys family name."""
    if isinstance(target, Device):
        return target.family, target.dsp
    family = YOSYS_FAMILIES.get(target, target)
    for name in available_devices():
        device = load_device(name)
        if family == device.family:
            return family, device.dsp
    return _family_and_dsp(load_device(target))  # a device name or alias; raises listing the known ones


def _width(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{name} must be a whole number of bits, got {value!r}")
    if not 1 <= value <= MAX_BITS:
        raise ValueError(f"{name} must be between 1 and {MAX_BITS} bits, got {value!r}")
    return int(value)


def _dsp_chunks(w_bits: int, a_bits: int, dsp, signed: bool) -> tuple[int, int]:
    """Chunks of the wider operand on the slice's wider port and of the narrower one on the other port."""
    def chunks(bits, port):
        return 1 if bits <= port - (not signed) else math.ceil(bits / (port - 1))
    return chunks(max(w_bits, a_bits), dsp.a_bits), chunks(min(w_bits, a_bits), dsp.b_bits)


def dsp_slices(w_bits: int, a_bits: int, dsp, signed: bool = True) -> int:
    """DSP slices of one w x a multiply: the wider operand on the slice's wider port, split when too wide.

    A signed operand wider than the port splits into chunks of port-1 bits (all but the top chunk are
    unsigned and lose the sign bit), as yosys's mul2dsp does (measured: 24 x 24 takes 2 DSP48E2,
    32 x 32 takes 4); unsigned operands lose one bit per port.
    """
    big, small = _dsp_chunks(w_bits, a_bits, dsp, signed)
    return big * small


def _split_product_adders(w_bits: int, a_bits: int, dsp, rules: "FamilyRules", signed: bool) -> dict:
    """Fabric adders that sum the partial products of a multiply split over several slices.

    The partial product of chunks (i, j) sits at bit i*(a_port-1) + j*(b_port-1); each one after the
    lowest is added in the fabric over the product bits above its offset. Where the family's DSPs absorb
    adder trees (yosys on xc7: DSP48E1's 17-bit-shifted cascade), the chunks of the narrower operand add
    inside the slices and only the wider operand's chunks meet in the fabric. Measured (yosys, DSPs
    allowed): 24 x 24 on xcup 31 LUTs and 8 carries (model 31, 8); 32 x 32 on xcup 110 and 29 (model
    106, 28), on xc7 47 and 12 (model 40, 10).
    """
    big, small = _dsp_chunks(w_bits, a_bits, dsp, signed)
    a_shifts = [i * (dsp.a_bits - 1) for i in range(big)]
    b_shifts = [j * (dsp.b_bits - 1) for j in range(small)]
    offsets = a_shifts[1:] if rules.dsp_absorbs_adder_tree else sorted(x + y for x in a_shifts for y in b_shifts)[1:]
    widths = [w_bits + a_bits - o for o in offsets]
    return {"luts": sum(widths), "carry": sum(math.ceil(b / 4) for b in widths)}


def _adder(bits: int) -> tuple[int, int]:
    """(LUTs, carry blocks) of an n-bit adder on a carry chain: one LUT per bit, four bits per CARRY4."""
    return bits, math.ceil(bits / 4)


def _multiplier(w: int, a: int, dsp, rules: FamilyRules, signed: bool, packing: bool) -> dict:
    """One w x a multiplier: DSP slices (a fraction when WP486 packing shares a slice), else LUTs and carries."""
    if rules.uses_dsp(w, a):
        share = rules.dsp_packing if packing and max(w, a) <= rules.dsp_packing_max_bits else 1
        slices = dsp_slices(w, a, dsp, signed)
        return {"dsps": slices if share == 1 else slices / share, **_split_product_adders(w, a, dsp, rules, signed)}
    return {"luts": rules.lut_multiplier.luts(w, a), "carry": math.ceil((w + a) / 4)}


def _sum(*parts) -> dict:
    return {k: sum(p.get(k, 0) for p in parts) for k in ("luts", "carry", "ffs", "dsps")}


def accumulation(spec: MacSpec, rules: FamilyRules, on_dsp: bool) -> dict:
    """Everything of a lane but its multipliers, as yosys maps it:

    * the adder tree: lanes - 1 adders as wide as a partial sum (product + log2(lanes) bits; the rest is
      sign extension), one LUT per bit, and one final carry chain (yosys compresses all the products,
      from LUT multipliers too, into one sum); on a family whose DSPs absorb the tree (DSP48E1
      post-adders through the cascade) it costs nothing;
    * the accumulating adder: acc_bits LUTs and carries, plus the clear multiplexer, one more LUT per bit
      for signed lanes (unsigned, yosys merges it into the adder's LUTs);
    * flip-flops: the operand registers (absorbed into the DSP's input registers where the family does)
      and the accumulator.
    """
    acc, lanes = spec.acc_bits, spec.lanes
    tree_bits = spec.product_bits + (lanes - 1).bit_length()
    luts, carry = 0, 0
    if lanes > 1 and not (on_dsp and rules.dsp_absorbs_adder_tree):
        luts += (lanes - 1) * tree_bits
        carry += math.ceil(tree_bits / 4)
    add_luts, add_carry = _adder(acc)
    luts += add_luts + (acc if spec.signed else 0)
    carry += add_carry
    operands = 0 if on_dsp and rules.dsp_absorbs_operand_registers else lanes * (spec.w_bits + spec.a_bits)
    return {"luts": luts, "carry": carry, "ffs": operands + acc, "dsps": 0}


def lane_resources(spec: MacSpec, target="ultrascale_plus", dsp: bool = True, model: CostModel | None = None) -> dict:
    """LUTs, carry blocks, flip-flops and DSP slices of `spec`'s lane (rtl.verilog) on a device or family.

    `dsp=False` is yosys's -nodsp: every multiplier in LUTs. No DSP packing: a synthesis tool infers one
    product per slice from plain RTL.
    """
    if not isinstance(spec, MacSpec):
        raise TypeError(f"spec must be a MacSpec, got {type(spec).__name__}")
    family, dsp_spec = _family_and_dsp(target)
    rules = (model or load_cost_model()).family(family)
    if not dsp:
        rules = dataclasses.replace(rules, dsp_min_bits=MAX_BITS + 1)
    mult = _multiplier(spec.w_bits, spec.a_bits, dsp_spec, rules, spec.signed, packing=False)
    on_dsp = mult.get("dsps", 0) > 0
    if spec.lanes > 1 and not on_dsp:  # the products' final adders merge into the tree's one carry chain
        mult = {**mult, "carry": 0}
    return _sum(*([mult] * spec.lanes), accumulation(spec, rules, on_dsp))


def _lut_multiplier_path(w: int, a: int) -> tuple[int, int]:
    """(LUT levels, carry bits) on the path from a LUT multiplier's operands into an accumulator: a
    partial-product tree about log2 of the narrower operand deep plus one level, then one block (4 bits)
    of the product's final carry chain. Not the whole chain: each product bit enters the accumulator's
    chain at its own position, so the two chains overlap (yosys `ltp`, tests/data/yosys_paths.csv:
    4 x 4 into 32 bits crosses 2 product and 7 accumulator CARRY4s, 16 x 16 crosses 9 in all)."""
    return math.ceil(math.log2(max(2, min(w, a)))) + 1, 4


def path_cells(path, acc_bits: int, extra_levels: int = 0) -> dict:
    """Cells on a PE's register-to-register path, by kind (dsp, lut, carry4): the multiplier (a DSP slice,
    or LUT levels and the carry bits it adds before the accumulator's chain), the accumulating adder (one
    LUT level and an acc_bits carry chain), the clear multiplexer (one LUT level) and `extra_levels` of
    an extension."""
    levels, chain, uses_dsp = path
    return {"dsp": int(uses_dsp), "lut": levels + 2 + extra_levels,
            "carry4": math.ceil(chain / 4) + math.ceil(acc_bits / 4)}


def lane_path(spec: MacSpec, target="ultrascale_plus", dsp: bool = True, model: CostModel | None = None) -> dict:
    """The cells on the critical path of a one-lane `spec` (rtl.verilog) that the fmax model times, by
    kind; their sum is what yosys's `ltp` (longest topological path) is compared with."""
    if not isinstance(spec, MacSpec) or spec.lanes != 1:
        raise ValueError(f"spec must be a one-lane MacSpec (a PE), got {spec!r}")
    family, _ = _family_and_dsp(target)
    on_dsp = dsp and (model or load_cost_model()).family(family).uses_dsp(spec.w_bits, spec.a_bits)
    path = (0, 0, True) if on_dsp else (*_lut_multiplier_path(spec.w_bits, spec.a_bits), False)
    return path_cells(path, spec.acc_bits)


# --- buffers ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferMapping:
    """A width x depth buffer on `count` primitives of one (depth, width) shape."""

    name: str
    width_bits: int
    depth: int
    primitive: str  # "bram18", "bram36" or "uram"
    shape: tuple[int, int]
    count: int

    @property
    def bram36(self) -> float:
        """Block RAM used, in 36 Kb blocks (a BRAM18 is half of one)."""
        return {"bram18": 0.5, "bram36": 1.0}.get(self.primitive, 0.0) * self.count

    @property
    def uram(self) -> int:
        return self.count if self.primitive == "uram" else 0


def map_buffer(width_bits: int, depth: int, device: Device, name: str = "buffer") -> BufferMapping:
    """The cheapest mapping of a buffer onto one primitive shape: fewest bits of silicon, then fewest primitives.

    Each shape (d, w) needs ceil(width/w) x ceil(depth/d) primitives. 1000 x 36 bits: one BRAM36 as 1K x 36
    (two BRAM18 as 512 x 36 use the same bits but more primitives).
    """
    for value, field in ((width_bits, "width_bits"), (depth, "depth")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {field} must be a positive integer, got {value!r}")
    shapes = [("bram18", s) for s in device.memory.bram18_shapes] + [("bram36", s) for s in device.memory.bram36_shapes]
    if device.uram:
        shapes += [("uram", s) for s in device.memory.uram_shapes]
    best = None
    for order, (primitive, (d, w)) in enumerate(shapes):
        count = math.ceil(width_bits / w) * math.ceil(depth / d)
        key = (count * PRIMITIVE_BITS[primitive], count, order)
        if best is None or key < best[0]:
            best = (key, BufferMapping(name, width_bits, depth, primitive, (d, w), count))
    return best[1]


# --- an accelerator on a device --------------------------------------------------------------------------
@dataclass(frozen=True)
class FpgaEstimate:
    """Resources of an accelerator on a device at given operand widths, whether it fits, and its clock."""

    accelerator: str
    device: Device
    rows: int
    cols: int
    w_bits: int
    a_bits: int
    arith: str
    pe: dict          # one PE: luts, carry, ffs, dsps (DSPs may be fractional when packed)
    buffers: tuple[BufferMapping, ...]
    resources: dict   # luts, ffs, dsps, bram36, uram for the whole array and its buffers
    fmax_mhz: float
    critical_path: str
    extras: dict = dataclasses.field(default_factory=dict)  # what an extension adds: per PE or whole

    @property
    def utilization(self) -> dict:
        capacity = self.device.capacity()
        return {r: (self.resources[r] / capacity[r] if capacity[r] else (math.inf if self.resources[r] else 0.0))
                for r in RESOURCES}

    @property
    def binding(self) -> str:
        """The resource with the highest utilisation: the one that limits the array."""
        util = self.utilization
        return max(RESOURCES, key=lambda r: util[r])

    @property
    def fits(self) -> bool:
        return all(u <= 1.0 for u in self.utilization.values())

    def totals(self, report_totals: dict | None = None) -> dict:
        """Flat figures for a Report's totals; with the Report's own totals, GOPS at fmax too."""
        out = {f"fpga_{r}": self.resources[r] for r in RESOURCES}
        out.update({f"fpga_{r}_util": u for r, u in self.utilization.items()})
        out.update({"fpga_device": self.device.name, "fpga_fits": self.fits, "fpga_binding": self.binding,
                    "fpga_fmax_mhz": self.fmax_mhz})
        if report_totals is not None:  # two operations (multiply, add) per MAC
            out["fpga_gops"] = 2 * report_totals["macs"] * report_totals["inferences_per_s"] / 1e9
        return out

    def summary(self, report_totals: dict | None = None) -> str:
        util = self.utilization
        used = ", ".join(f"{r} {self.resources[r]:,.1f} ({util[r]:.1%})" if r == "bram36"
                         else f"{r} {self.resources[r]:,.0f} ({util[r]:.1%})" for r in RESOURCES)
        text = (f"FPGA {self.device.name} ({self.device.part}), {self.rows}x{self.cols} at w{self.w_bits}a{self.a_bits} "
                f"{self.arith}: {used}; {'fits' if self.fits else 'does not fit'} (binding: {self.binding}); "
                f"fmax {self.fmax_mhz:.0f} MHz ({self.critical_path})")
        if report_totals is not None:
            text += f", {self.totals(report_totals)['fpga_gops']:,.1f} GOPS"
        return text


def operand_widths(precision=None, workload=None) -> tuple[int, int, str]:
    """(weight bits, activation bits, arith) the hardware must support: the widest layer of a workload,
    or one precision value as qsim.hw.precision reads it (8, (4, 8), "fp8_e4m3", "w4a4")."""
    from .precision import bits_of
    if workload is not None and precision is not None:
        raise ValueError("give precision= or workload=, not both")
    if workload is not None:
        layers = tuple(workload)
        if not layers:
            raise ValueError("workload has no layers")
        w, a = max(l.weight_bits for l in layers), max(l.act_bits for l in layers)
        arith = "float" if any(l.arith == "float" for l in layers) else "int"
    else:
        if isinstance(precision, str) and precision.lower().startswith("w") and "a" in precision.lower():
            wa = precision.lower()[1:].split("a")  # "w4a8": 4-bit weights, 8-bit activations
            if len(wa) != 2 or not all(p.isdigit() for p in wa):
                raise ValueError(f"precision {precision!r}: expected wWaA such as 'w4a8'")
            precision = (int(wa[0]), int(wa[1]))
        w, a, arith = bits_of(8 if precision is None else precision)
    return _width(math.ceil(w), "weight bits"), _width(math.ceil(a), "activation bits"), arith


def _pe(accel, w: int, a: int, arith: str, family: str, dsp, model: CostModel, packing: bool):
    """(resources of one PE, its critical path as (LUT levels, carry bits along them, uses a DSP)).

    A fixed-width integer PE is exactly the lane of qsim.hw.rtl that the yosys table checks (accumulation()
    included); floating-point and precision-scalable PEs add their own parts and a signed accumulator."""
    rules, pe = model.family(family), accel.pe
    acc = pe.accumulator_bits
    if arith == "float":
        # Significands (hidden bit included) multiply as unsigned integers; the exponents add; the product
        # is shifted to its place in a fixed-point accumulator (a Kulisch-style FP MAC, as FPGA FP8 MACs do).
        ew, ea = model.exponent_bits(w), model.exponent_bits(a)
        mw, ma = w - ew, a - ea  # trailing significand + hidden bit = bits - sign - exponent + 1
        mult = _multiplier(mw, ma, dsp, rules, False, packing)
        exp_luts, exp_carry = _adder(max(ew, ea) + 1)
        shift_levels = math.ceil(math.log2(2 ** ew + 2 ** ea) / 2)  # 4:1 multiplexers per LUT6 level
        core = _sum(mult, {"luts": exp_luts + acc * shift_levels, "carry": exp_carry})
        levels = _lut_multiplier_path(mw, ma)[0] + shift_levels
        chain = mw + ma  # the alignment shifter sits between the product and the accumulator: no overlap
    elif pe.scaling == "none":
        mw, ma = min(w, pe.native_bits), min(a, pe.native_bits)
        core = _multiplier(mw, ma, dsp, rules, True, packing)
        levels, chain = _lut_multiplier_path(mw, ma)
    else:
        # Precision-scalable PE (Bit Fusion's bricks): native/min_bits slices per operand, each pair
        # multiplied by a min x min brick ("quadratic") or each weight slice by a whole activation
        # ("linear"), the shifted brick products summed by an adder tree at 2 x native bits.
        n, b = pe.native_bits // pe.min_bits, pe.min_bits
        bricks, brick = (n * n, (b, b)) if pe.scaling == "quadratic" else (n, (b, pe.native_bits))
        one = _multiplier(*brick, dsp, rules, True, packing)
        tree_luts, tree_carry = _adder(2 * pe.native_bits)
        core = _sum(*([one] * bricks), {"luts": (bricks - 1) * tree_luts, "carry": (bricks - 1) * tree_carry})
        levels = _lut_multiplier_path(*brick)[0] + math.ceil(math.log2(bricks))
        chain = 2 * pe.native_bits
    uses_dsp = core.get("dsps", 0) > 0
    if arith == "int" and pe.scaling == "none":
        tail = accumulation(MacSpec(mw, ma, acc), rules, uses_dsp)
    else:
        acc_luts, acc_carry = _adder(acc)
        operands = w + a if arith == "float" else 2 * pe.native_bits
        tail = {"luts": acc_luts + acc, "carry": acc_carry, "ffs": operands + acc}
    resources = _sum(core, tail)
    return resources, (0 if uses_dsp else levels, 0 if uses_dsp else chain, uses_dsp)


def _fmax(device: Device, model: CostModel, path, acc_bits: int, buffers, extra_levels: int = 0) -> tuple[float, str]:
    """The clock: the PE's register-to-register path, capped by the data-sheet FMAX of the primitives used
    and of the global clock buffer that distributes it.

    Path: clock-to-out and setup, then the cells of path_cells (the multiplier, the accumulating adder, the
    clear multiplexer and `extra_levels` LUT levels of an extension such as OverQ's multiplexers), each with
    its delay. Delays are given at a reference grade and scale with the DSP FMAX.
    """
    t = model.family(device.family).timing
    cells = path_cells(path, acc_bits, extra_levels)
    ns = (t.ff_ns + cells["dsp"] * (t.dsp_ns + t.net_ns) + cells["lut"] * (t.lut_ns + t.net_ns)
          + cells["carry4"] * t.carry4_ns)
    ns *= t.ref_dsp_mhz / device.grade.dsp_mhz
    uses_dsp = path[2]
    limits = [(1000.0 / ns, "PE logic path"), (device.grade.bufg_mhz, "global clock buffer FMAX")]
    if uses_dsp:
        limits.append((device.grade.dsp_mhz, "DSP FMAX"))
    if any(b.bram36 for b in buffers):
        limits.append((device.grade.bram_mhz, "block RAM FMAX"))
    if any(b.uram for b in buffers):
        limits.append((device.grade.uram_mhz, "UltraRAM FMAX"))
    return min(limits)


def _resolve(accelerator):
    """(base Accelerator, extension): extension None, a gating.GatingSpec or an overq.OverQSpec.

    Takes an Accelerator, a gating.GatedAccelerator, an overq.OverQSpec (on its base accelerator, weight
    stationary), what overq.load_overq returns, or a hw_models name or path of any of them."""
    from . import gating, overq, toml_spec
    from .spec import Accelerator, load_accelerator
    if isinstance(accelerator, (str, bytes)) or hasattr(accelerator, "__fspath__"):
        table, _ = toml_spec.resolve(accelerator)
        if "gating" in table:
            accelerator = gating.load(accelerator)
        elif "cascade" in table and "array" not in table:
            accelerator = overq.load_overq(accelerator)
        else:
            return load_accelerator(accelerator), None
    if isinstance(accelerator, overq.OverQSpec):
        accelerator = (accelerator, load_accelerator(accelerator.accelerator, dataflow="ws"))
    if isinstance(accelerator, tuple) and len(accelerator) == 2 and isinstance(accelerator[0], overq.OverQSpec) \
            and isinstance(accelerator[1], Accelerator):
        return accelerator[1], accelerator[0]
    if isinstance(accelerator, gating.GatedAccelerator):
        return accelerator.accelerator, accelerator.gating
    if isinstance(accelerator, Accelerator):
        return accelerator, None
    raise TypeError(f"accelerator must be an Accelerator, a GatedAccelerator, an OverQSpec, (OverQSpec, Accelerator) "
                    f"or a hw_models name, got {type(accelerator).__name__}")


def extension_kind(accelerator) -> str:
    """"channel-gating", "OverQ" or "" (a plain array) for any accelerator argument estimate() takes."""
    from .gating import GatingSpec
    from .overq import OverQSpec
    _, extension = _resolve(accelerator)
    return {GatingSpec: "channel-gating", OverQSpec: "OverQ"}.get(type(extension), "")


def estimate(accelerator, device="zcu102", precision=None, workload=None, packing: bool = True,
             model: CostModel | None = None) -> FpgaEstimate:
    """Resources, fit and fmax of `accelerator` on `device` at the widths of `precision` or of `workload`'s
    widest layer (default int8). `accelerator`: an Accelerator, a channel-gating or OverQ one, or a
    hw_models name (see _resolve).

    Each PE is a lane of qsim.hw.rtl (input registers, multiplier, accumulator) at the PE's widths; the
    three operand SRAMs are buffers with one port as wide as the array edge they feed (ifmap rows x a bits,
    filter cols x w bits, ofmap cols x accumulator bits) and as deep as their capacity allows.
    `packing` lets two narrow products sharing an operand use one DSP slice where the family allows it.
    An OverQ PE is the lane at `bits`-wide activations plus its multiplexers and tags (the ifmap buffer
    holds the tags too); channel gating adds its gate comparators and a buffer of one tile's gate bits.
    """
    accel, extension = _resolve(accelerator)
    return _estimate(accel, extension, device, precision, workload, packing, model)


def _estimate(accel, extension, device, precision, workload, packing, model) -> FpgaEstimate:
    from . import fpga_extensions as ext
    from .overq import OverQSpec
    device = device if isinstance(device, Device) else load_device(device)
    model = model or load_cost_model()
    w, a, arith = operand_widths(precision, workload)
    overq = extension if isinstance(extension, OverQSpec) else None
    if overq is not None:
        if arith != "int":
            raise ValueError(f"{overq.name}: OverQ PEs multiply integer codes; got {arith} operands")
        a = overq.bits  # activations arrive as OverQ codes of `bits` (qsim.hw.overq.OverQArray)
    pe, path = _pe(accel, w, a, arith, device.family, device.dsp, model, packing)
    rows, cols, acc = accel.array.rows, accel.array.cols, accel.pe.accumulator_bits
    extras, extra_levels, tag_bits = {}, 0, 0
    if overq is not None:
        extras["overq_pe"] = ext.overq_pe(overq, min(w, accel.pe.native_bits), model.family(device.family), path[2])
        pe = _sum(pe, extras["overq_pe"])
        extra_levels, tag_bits = ext.overq_levels(overq), overq.tag_bits
    mem = accel.memory
    buffers = []
    for name, kib, width in (("ifmap", mem.ifmap_sram_kib, rows * (a + tag_bits)),
                             ("filter", mem.filter_sram_kib, cols * w), ("ofmap", mem.ofmap_sram_kib, cols * acc)):
        depth = max(1, math.ceil(kib * 1024 * 8 / width))
        buffers.append(map_buffer(width, depth, device, name))
    pes = rows * cols
    resources = {"luts": pes * pe["luts"], "ffs": pes * pe["ffs"], "dsps": math.ceil(pes * pe["dsps"])}
    if overq is None and extension is not None:  # channel gating: the gate unit and one tile's gate bits
        extras["gate_unit"] = ext.gate_unit(extension, acc)
        resources = {k: v + extras["gate_unit"][k] for k, v in resources.items()}
        buffers.append(map_buffer(cols, extension.tile_pixels, device, "gate_bits"))
    resources.update(bram36=sum(b.bram36 for b in buffers), uram=sum(b.uram for b in buffers))
    fmax, why = _fmax(device, model, path, acc, buffers, extra_levels)
    name = overq.name if overq is not None else accel.name
    return FpgaEstimate(name, device, rows, cols, w, a, arith, pe, tuple(buffers), resources, fmax, why, extras)


def largest_array(accelerator, device="zcu102", precision=None, square: bool = True, **kwargs) -> FpgaEstimate | None:
    """The largest array of `accelerator`'s PEs that fits on `device` (None if not even 1 x 1 fits).

    Square arrays by default (rows = cols, as the packaged descriptions); square=False keeps the rows
    and searches the columns. Resources grow monotonically with the array, so a bisection is exact.
    """
    accel, extension = _resolve(accelerator)
    kwargs = {"workload": None, "packing": True, "model": None, **kwargs}

    def at(n):
        shape = {"rows": n, "cols": n} if square else {"cols": n}
        return _estimate(accel.with_changes(**shape), extension, device, precision, **kwargs)
    if not at(1).fits:
        return None
    lo, hi = 1, 2
    while at(hi).fits:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid).fits else (lo, mid)
    return at(lo)


def simulate(workload, accelerator, device="zcu102", packing: bool = True, node_nm: float | None = None):
    """The systolic-array Report at the estimated fmax of `accelerator` on `device`, with the estimate
    attached (`report.fpga`; its figures in `report.totals()`); with `node_nm`, the ASIC area too.
    A channel-gating or OverQ accelerator runs its own array model (qsim.hw.gating, qsim.hw.overq)."""
    from . import gating, overq
    from .systolic import simulate as run
    accel, extension = _resolve(accelerator)
    fpga = _estimate(accel, extension, device, None, workload, packing, None)
    clocked = accel.with_changes(clock_mhz=fpga.fmax_mhz)
    if isinstance(extension, overq.OverQSpec):
        report = overq.OverQArray(clocked, extension).run(workload)
    elif extension is not None:
        report = gating.simulate(workload, gating.GatedAccelerator(clocked, extension))
    else:
        report = run(workload, clocked)
    from .fpga_extensions import ASSUMPTIONS as EXTENSION_ASSUMPTIONS
    extra = EXTENSION_ASSUMPTIONS[isinstance(extension, overq.OverQSpec):][:1] if extension is not None else ()
    report = dataclasses.replace(report, fpga=fpga,
                                 assumptions=report.assumptions + load_cost_model().assumptions + extra)
    if node_nm is not None:
        from .area import attach
        report = attach(report, workload, node_nm, extension=extension_kind(accelerator))
    return report
