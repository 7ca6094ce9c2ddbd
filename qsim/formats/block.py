"""Formats whose elements share one scale per block: block floating point and OCP Microscaling (MX,
with NVFP4 as a variant). A block format composes (element grid, scale rule, block size, axis); the
kernel (csrc/qsim/block.h) finds each block's largest magnitude, derives the scale, and rounds every
element onto the element grid times the scale, in one pass.

A block holding NaN or ±inf has no scale: every element of it becomes NaN (OCP MX v1.0 §6.3; the
same rule for BFP, whose shared exponent would be meaningless)."""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

from qsim.formats.base import SPEC_INT, Format, check_bool, check_choice, check_int, check_options, spec_int
from qsim.formats.elementwise import _FIXED_EMIN, FloatingPoint, Grid, GridFormat

SCALE_RULES = ("floor", "ceil", "rceil", "even")
_E8M0 = "e8m0"
_E8M0_RANGE = (-127, 127)  # E8M0 encodes 2^-127 .. 2^127 (0xFF is NaN)
_FLOAT32_EXP_RANGE = (-149, 127)


def _check_block(block_size, dim, allow_none: bool) -> None:
    if block_size is not None or not allow_none:
        check_int(block_size, "block_size", 1, 2**31 - 1)
    if dim is not None or not allow_none:
        check_int(dim, "dim", -64, 63)


def _block_options(args: list[str], spec: str) -> tuple[int | None, int | None, list[str]]:
    """Pulls the block size (an int) and "dim=N" out of inline-spec arguments; returns the rest."""
    block, dim, rest = None, None, []
    for arg in args:
        if spec_int(arg):
            if block is not None:
                raise ValueError(f"fmt: {spec!r}: options {str(block)!r} and {arg!r} conflict (two block sizes)")
            block = int(arg)
        elif re.fullmatch("dim=" + SPEC_INT, arg):
            if dim is not None:
                raise ValueError(f"fmt: {spec!r}: options 'dim={dim}' and {arg!r} conflict (the same option twice)")
            dim = int(arg[4:])
        else:
            rest.append(arg)
    return block, dim, rest


class BlockFormat(Format):
    """Shared by the block formats: the element grid at scale 1 (element_grid), floor(log2) of the largest
    element (element_emax), and the exponents a power-of-two scale may take (scale_range)."""

    def element_grid(self) -> Grid:
        raise NotImplementedError

    def _scale_extremes(self) -> tuple[float, float]:
        """The smallest and largest scale."""
        low, high = self.scale_range
        return math.ldexp(1.0, low), math.ldexp(1.0, high)

    @property
    def max(self) -> float:
        """The largest value any block can hold (the largest element at the largest scale)."""
        return float(self.element_grid().max_pos) * self._scale_extremes()[1]

    @property
    def min_positive(self) -> float:
        """The smallest positive value any block can hold (the smallest element at the smallest scale)."""
        g = self.element_grid()
        return math.ldexp(1.0, g.emin - g.man if g.subnormals else g.emin) * self._scale_extremes()[0]


@dataclass(frozen=True)
class BlockFloatingPoint(BlockFormat):
    """Block floating point: each block shares the exponent E = floor(log2(max |x|)) of its largest
    magnitude, and each element is a `wl`-bit sign-magnitude fixed-point number relative to it, with
    wl - 2 fraction bits: values k · 2^(E - wl + 2), |k| ≤ 2^(wl-1) - 1 (QPyTorch's block_quantize and
    SWALP; QPyTorch rounds ties up on a value already rounded to float32, qsim rounds exactly).

    Blocks: `block_size` consecutive elements along `dim` (default: the last dim), or with
    block_size=None one exponent per index of `dim` (a slice), or per tensor when dim is None too.
    Slices need two dims: a tensor of fewer shares one exponent (SWALP's rule for biases and norms).
    bits_per_element counts the 8-bit shared exponent amortised over block_size (not counted for
    slices or whole tensors, whose length the format does not know)."""

    wl: int
    block_size: int | None = None
    dim: int | None = None

    KIND = "bfp"

    def __post_init__(self):
        check_int(self.wl, "wl", 2, 32)
        _check_block(self.block_size, self.dim, allow_none=True)

    @property
    def bits_per_element(self) -> float:
        return self.wl + (8 / self.block_size if self.block_size else 0.0)

    @functools.cached_property
    def spec(self) -> str:
        parts = [str(self.wl)] + ([str(self.block_size)] if self.block_size else [])
        return f"bfp<{','.join(parts + ([f'dim={self.dim}'] if self.dim is not None else []))}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "BlockFloatingPoint":
        """bfp<wl[,block_size][,dim=N]>"""
        if not args or not spec_int(args[0]):
            raise ValueError(f"fmt: {spec!r}: expected bfp<wl[,block_size][,dim=N]> with an integer wl")
        block, dim, rest = _block_options(args[1:], spec)
        if rest:
            raise ValueError(f"fmt: {spec!r}: unknown bfp options {rest}; expected a block size and/or dim=N")
        return cls(int(args[0]), block, dim)

    def element_grid(self) -> Grid:
        """The element grid at scale 2^0: sign-magnitude, wl - 2 fraction bits, symmetric limits."""
        top = Fraction((1 << (self.wl - 1)) - 1, 1 << (self.wl - 2))
        return Grid(man=_FIXED_EMIN + self.wl - 2, emin=_FIXED_EMIN, subnormals=True, overflow="saturate",
                    has_inf=False, neg_zero=False, max_pos=top, max_neg=top)

    @property
    def element_emax(self) -> int:
        return 0

    @property
    def scale_range(self) -> tuple[int, int]:
        """Shared exponents whose element quantum 2^(E - wl + 2) stays within float32."""
        return _FLOAT32_EXP_RANGE[0] + self.wl - 2, _FLOAT32_EXP_RANGE[1]


@dataclass(frozen=True)
class MX(BlockFormat):
    """OCP Microscaling (MX v1.0): blocks of `block_size` elements along `dim` share a scale X, and
    each element is element(x / X) with saturation (an element format given with another overflow
    rule, such as "fp8_e5m2" whose overflow is inf, is taken in its saturating variant).

    scale="e8m0": X = 2^E with E from the block's largest magnitude amax by `scale_rule`:
      "floor"  E = floor(log2 amax) - emax(element) (the OCP rule; the block maximum may clip),
      "ceil"   E = ceil(log2 amax) - emax(element),
      "rceil"  the smallest E with amax ≤ max(element)·2^E (NVIDIA's rule; never clips),
      "even"   floor's E of amax rounded half up to the element's precision in its top binade
               (torchao's EVEN: with e2m1 elements amax = 7.5 rounds to 8, so E = 3 - 2 = 1 where
               floor gives 0);
      E is clamped to E8M0's range [-127, 127]; an all-zero block uses 2^-127.
    scale=<a format>: S = that format's nearest rounding of amax / max(element) / s, raised to the
    format's smallest normal and saturating at its largest, with s = 1, or with tensor_scale=True a
    per-tensor fp32 factor s = amax(tensor) / (max(element) · max(scale)) so that the block scales span
    the scale format's range (NVFP4: e4m3 scales over blocks of 16 e2m1 elements). Each element becomes
    element(x · ((1 / s) / S)) · (s · S), all in the tensor's float arithmetic: torchao's NVFP4, after
    NVIDIA's kernels, bit for bit. Where s is not finite, or too small for 1 / s / S to stay within
    float32 (a tensor of zeros, NaN or inf, or of magnitudes below ~2^-110), s = 1."""

    element: GridFormat
    block_size: int = 32
    scale: object = _E8M0
    scale_rule: str = "floor"
    tensor_scale: bool = False
    dim: int = -1

    KIND = "mx"

    def __post_init__(self):
        from qsim.formats.registry import get

        object.__setattr__(self, "element", get(self.element))
        if not isinstance(self.element, GridFormat):
            raise TypeError(f"element: expected an elementwise format (FloatingPoint or FixedPoint); "
                            f"got {type(self.element).__name__}")
        if not self.element.max > 0:
            raise ValueError(f"element: {self.element.name} has no positive value to scale blocks to")
        # Elements saturate (OCP MX v1.0 §6.3) whatever their format's own overflow rule says.
        object.__setattr__(self, "element", dataclasses.replace(self.element, overflow="saturate"))
        if self.scale != _E8M0:
            object.__setattr__(self, "scale", get(self.scale))
            if not isinstance(self.scale, FloatingPoint):
                raise TypeError(f"scale: expected 'e8m0' or a FloatingPoint format; got {self.scale!r}")
        _check_block(self.block_size, self.dim, allow_none=False)
        check_choice(self.scale_rule, "scale_rule", SCALE_RULES)
        if self.scale != _E8M0 and self.scale_rule != "floor":
            raise ValueError("scale_rule: only applies to power-of-two (e8m0) scales; a scale format rounds "
                             "amax / max(element) to nearest")
        check_bool(self.tensor_scale, "tensor_scale")
        if self.tensor_scale and self.scale == _E8M0:
            raise ValueError("tensor_scale: needs a scale format (e.g. scale='fp8_e4m3' as in NVFP4)")

    @property
    def bits_per_element(self) -> float:
        scale_bits = 8 if self.scale == _E8M0 else self.scale.bits_per_element
        return self.element.bits_per_element + scale_bits / self.block_size

    @functools.cached_property
    def spec(self) -> str:
        parts = [self.element.name, str(self.block_size)]
        if self.scale != _E8M0:
            parts.append(f"scale={self.scale.name}")
        if self.scale_rule != "floor":
            parts.append(self.scale_rule)
        if self.tensor_scale:
            parts.append("tensor_scale")
        if self.dim != -1:
            parts.append(f"dim={self.dim}")
        return f"mx<{','.join(parts)}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "MX":
        """mx<ELEMENT[,block_size][,floor|ceil|rceil|even][,scale=FORMAT][,tensor_scale][,dim=N]>"""
        block, dim, rest = _block_options(args[1:], spec)
        check_options(spec, rest, (SCALE_RULES,))
        options = dict(element=args[0], block_size=32 if block is None else block, dim=-1 if dim is None else dim)
        for arg in rest:
            if arg in SCALE_RULES:
                options["scale_rule"] = arg
            elif arg.startswith("scale="):
                options["scale"] = arg[len("scale="):]
            elif arg == "tensor_scale":
                options["tensor_scale"] = True
            else:
                raise ValueError(f"fmt: {spec!r}: unknown mx option {arg!r}; expected a block size, "
                                 f"{'/'.join(SCALE_RULES)}, scale=FORMAT, tensor_scale or dim=N")
        return cls(**options)

    def element_grid(self) -> Grid:
        return self.element.grid()

    @property
    def element_emax(self) -> int:
        return math.floor(math.log2(self.element.max))

    @property
    def scale_range(self) -> tuple[int, int]:
        return _E8M0_RANGE

    def _scale_extremes(self) -> tuple[float, float]:
        if self.scale == _E8M0:
            return super()._scale_extremes()
        return self.scale.min_positive, self.scale.max  # times the tensor factor, when there is one
