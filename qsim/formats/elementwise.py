"""Elementwise formats: FixedPoint and FloatingPoint, each element rounded onto one grid of values.

A format derives every limit (largest finite value, smallest normal and subnormal, epsilon) from its
fields by decoding its own encodings, never from hand-written tables. The kernels see these formats
only through `grid()`, the plain description of the set of values (see csrc/qsim/params.h).
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qsim.formats.base import Format, cached, check_bool, check_choice, check_int, check_options, spec_int

# Fixed point needs a constant quantum; an exponent above any finite one gives it (see Grid).
_FIXED_EMIN = 4096
# The smallest quantum any grid may use: float32's smallest subnormal, so results fit a float32 tensor.
_MIN_QUANTUM_EXP = -149
# Formats up to this many bits can list all their values (exhaustive tests, docs).
_ENUMERABLE_BITS = 16


@dataclass(frozen=True)
class Grid:
    """The set of values of an elementwise format, as the kernels see it.

    A magnitude with floor(log2|x|) = e rounds to a multiple of 2^(max(e, emin) - man); without
    subnormals the grid below 2^emin is {0, 2^emin}. Magnitudes above max_pos (positive) or max_neg
    (negative) overflow according to `overflow`."""

    man: int
    emin: int
    subnormals: bool
    overflow: str  # "saturate" | "inf" | "nan" | "wrap"
    has_inf: bool
    neg_zero: bool
    max_pos: Fraction
    max_neg: Fraction
    wrap_bits: int = 0
    wrap_signed: bool = True


class GridFormat(Format):
    """An elementwise format: every element is rounded onto the same grid of values."""

    def grid(self) -> Grid:
        """The values this format holds, as the kernels see them (computed once per format)."""
        return self._cached_grid()

    @cached
    def _cached_grid(self) -> Grid:
        return self._build_grid()

    def _build_grid(self) -> Grid:
        raise NotImplementedError

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.grid().max_pos)

    @property
    def min_normal(self) -> float:
        """Smallest positive value with full precision (the smallest normal for floats)."""
        g = self.grid()
        return math.ldexp(1.0, g.emin) if g.emin < _FIXED_EMIN else self.min_positive

    @property
    def min_positive(self) -> float:
        """Smallest positive value (the smallest subnormal where there are subnormals)."""
        g = self.grid()
        return math.ldexp(1.0, g.emin - g.man if g.subnormals else g.emin)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value of the grid (the quantum for fixed point)."""
        g = self.grid()
        return math.ldexp(1.0, (g.emin if g.emin >= _FIXED_EMIN else 0) - g.man)

    def values(self) -> np.ndarray:
        """All finite values, sorted, as float64 (formats of at most 16 bits); -0 is listed as 0."""
        if self.bits_per_element > _ENUMERABLE_BITS:
            raise ValueError(f"values(): {self.name} has {self.bits_per_element:g} bits; only formats of "
                             f"at most {_ENUMERABLE_BITS} bits are enumerated")
        decoded = [self.decode(code) for code in range(1 << int(self.bits_per_element))]
        return np.unique(np.array([v for v in decoded if math.isfinite(v)], dtype=np.float64) + 0.0)

    def decode(self, code: int) -> float:
        """The value of one bit pattern (an int in [0, 2^bits))."""
        raise NotImplementedError



@dataclass(frozen=True)
class FixedPoint(GridFormat):
    """Fixed point: an integer code of `wl` bits (the sign included when signed, two's complement)
    scaled by 2^-fl. Signed range [-2^(wl-1), 2^(wl-1)-1]·2^-fl; unsigned [0, 2^wl-1]·2^-fl.

    overflow="saturate" clips to the range; "wrap" keeps the code modulo 2^wl as integer hardware does.
    There is no NaN or inf encoding: NaN inputs stay NaN (so divergence stays visible), ±inf saturates
    (or becomes NaN under "wrap"), and zero is always +0."""

    wl: int
    fl: int
    signed: bool = True
    overflow: str = "saturate"

    KIND = "fixed"

    def __post_init__(self):
        check_int(self.wl, "wl", 1, 64)
        check_int(self.fl, "fl", -64, 126)
        check_bool(self.signed, "signed")
        if self.signed and self.wl <= self.fl:
            raise ValueError(f"wl: a signed fixed-point format needs wl > fl (one bit is the sign); "
                             f"got wl={self.wl}, fl={self.fl}")
        if not self.signed and self.wl < self.fl:
            raise ValueError(f"wl: an unsigned fixed-point format needs wl >= fl; got wl={self.wl}, fl={self.fl}")
        check_choice(self.overflow, "overflow", ("saturate", "wrap"))

    @property
    def bits_per_element(self) -> float:
        return float(self.wl)

    @functools.cached_property
    def spec(self) -> str:
        options = ("" if self.signed else ",unsigned") + ("" if self.overflow == "saturate" else f",{self.overflow}")
        return f"fixed<{self.wl},{self.fl}{options}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "FixedPoint":
        """fixed<wl,fl[,unsigned][,wrap]>"""
        if len(args) < 2 or not all(spec_int(a, signed=True) for a in args[:2]):
            raise ValueError(f"fmt: {spec!r}: expected fixed<wl,fl[,unsigned][,wrap]> with integer wl and fl")
        check_options(spec, args[2:], (("wrap", "saturate"),))
        options = set(args[2:])
        unknown = options - {"unsigned", "wrap", "saturate"}
        if unknown:
            raise ValueError(f"fmt: {spec!r}: unknown fixed-point options {sorted(unknown)}; "
                             f"expected 'unsigned', 'wrap' or 'saturate'")
        return cls(int(args[0]), int(args[1]), signed="unsigned" not in options,
                   overflow="wrap" if "wrap" in options else "saturate")

    def _build_grid(self) -> Grid:
        quantum = Fraction(2) ** -self.fl
        top = (1 << (self.wl - 1)) - 1 if self.signed else (1 << self.wl) - 1
        bottom = (1 << (self.wl - 1)) if self.signed else 0
        return Grid(man=_FIXED_EMIN + self.fl, emin=_FIXED_EMIN, subnormals=True, overflow=self.overflow,
                    has_inf=False, neg_zero=False, max_pos=top * quantum, max_neg=bottom * quantum,
                    wrap_bits=self.wl, wrap_signed=self.signed)

    def decode(self, code: int) -> float:
        if self.signed and code >= 1 << (self.wl - 1):
            code -= 1 << self.wl
        return math.ldexp(code, -self.fl)


_SPECIALS = ("ieee", "fn", "fnuz", "finite")


@dataclass(frozen=True)
class FloatingPoint(GridFormat):
    """Binary floating point with a sign bit, `exp` exponent bits and `man` trailing mantissa bits
    (the sign and the implicit leading bit are not counted in `man`).

    special names the encodings of special values (LLVM's names, as ml_dtypes uses them):
      "ieee"   the top exponent encodes ±inf (mantissa 0) and NaN; bias 2^(exp-1) - 1.
      "fn"     finite with NaN: no inf; the all-ones pattern (both signs) is NaN (e.g. e4m3fn).
      "fnuz"   finite, unsigned zero: no inf, no -0; the -0 pattern is the one NaN; bias 2^(exp-1).
      "finite" no inf and no NaN; every pattern is a number (OCP fp6 e2m3/e3m2, fp4 e2m1).
    overflow: what finite values beyond the largest finite one become: "saturate" (±max, like torch's
    float8_e4m3fn cast), "inf" (IEEE 754: ±inf, or ±max under modes that round toward zero; "ieee" only)
    or "nan" (like ml_dtypes' e4m3fn). The default is "inf" for "ieee" and "saturate" otherwise.
    ±inf inputs stay ±inf where the format has inf; otherwise, being exact rather than rounded, they take
    the overflow value whatever the rounding mode: ±max under "saturate", NaN under "nan" (docs/overflow.md).
    NaN inputs stay NaN, also for "finite" formats, which have no NaN pattern (ml_dtypes maps NaN to -0
    there; qsim keeps NaN so that a diverging run stays visible).
    subnormals=False flushes: the values between 0 and the smallest normal are rounded to either."""

    exp: int
    man: int
    subnormals: bool = True
    special: str = "ieee"
    overflow: str | None = None

    KIND = "float"

    def __post_init__(self):
        check_int(self.exp, "exp", 1, 8)
        check_int(self.man, "man", 0, 23)
        check_bool(self.subnormals, "subnormals")
        check_choice(self.special, "special", _SPECIALS)
        if self.overflow is None:
            object.__setattr__(self, "overflow", "inf" if self.special == "ieee" else "saturate")
        check_choice(self.overflow, "overflow", ("saturate", "inf", "nan"))
        if self.overflow == "inf" and self.special != "ieee":
            raise ValueError(f"overflow: 'inf' needs a format with infinities (special='ieee'); "
                             f"special={self.special!r} has none: use 'saturate' or 'nan'")
        if self.overflow == "nan" and self.special == "finite":
            raise ValueError("overflow: 'nan' needs a NaN encoding; special='finite' has none: use 'saturate'")
        if self._max_code() is None:
            raise ValueError(f"exp, man: float<e{self.exp}m{self.man}> with special={self.special!r} "
                             f"and subnormals={self.subnormals} has no nonzero finite value")
        if self._emin - self.man < _MIN_QUANTUM_EXP:
            raise ValueError(f"man: the smallest subnormal 2^{self._emin - self.man} is below float32's "
                             f"2^{_MIN_QUANTUM_EXP}; use fewer mantissa bits or special != 'fnuz'")

    @property
    def bias(self) -> int:
        return (1 << (self.exp - 1)) - (0 if self.special == "fnuz" else 1)

    @property
    def _emin(self) -> int:
        return 1 - self.bias

    @property
    def bits_per_element(self) -> float:
        return float(1 + self.exp + self.man)

    @functools.cached_property
    def spec(self) -> str:
        options = "" if self.special == "ieee" else f",{self.special}"
        if self.overflow != ("inf" if self.special == "ieee" else "saturate"):
            options += f",{self.overflow}"
        if not self.subnormals:
            options += ",nosub"
        return f"float<e{self.exp}m{self.man}{options}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "FloatingPoint":
        """float<eXmY[,fn|fnuz|finite][,saturate|inf|nan][,nosub]>"""
        shape = re.fullmatch(r"e([0-9]{1,6})m([0-9]{1,6})", args[0])
        if not shape:
            raise ValueError(f"fmt: {spec!r}: expected float<eXmY,...> such as float<e5m2>")
        options = args[1:]
        check_options(spec, options, (_SPECIALS, ("saturate", "inf", "nan")))
        unknown = set(options) - set(_SPECIALS) - {"saturate", "inf", "nan", "nosub"}
        if unknown:
            raise ValueError(f"fmt: {spec!r}: unknown float options {sorted(unknown)}; expected some of "
                             f"{', '.join(_SPECIALS)}, saturate, inf, nan, nosub")
        special = next((o for o in options if o in _SPECIALS), "ieee")
        overflow = next((o for o in options if o in ("saturate", "inf", "nan")), None)
        return cls(int(shape[1]), int(shape[2]), subnormals="nosub" not in options, special=special,
                   overflow=overflow)

    def _is_nan_code(self, code: int) -> bool:
        magnitude = code & ((1 << (self.exp + self.man)) - 1)
        top_exponent = magnitude >> self.man == (1 << self.exp) - 1
        if self.special == "ieee":
            return top_exponent and magnitude & ((1 << self.man) - 1) != 0
        if self.special == "fn":
            return magnitude == (1 << (self.exp + self.man)) - 1
        if self.special == "fnuz":
            return code == 1 << (self.exp + self.man)
        return False

    def _max_code(self) -> int | None:
        """The largest positive finite, representable code, or None if there is no nonzero one."""
        top = (1 << (self.exp + self.man)) - 1
        if self.special == "ieee":
            top -= 1 << self.man  # the whole top exponent field is inf and NaN
        for code in range(top, 0, -1):
            if self._is_nan_code(code) or math.isinf(self.decode(code)):
                continue
            if not self.subnormals and code >> self.man == 0:
                return None
            return code
        return None

    def decode(self, code: int) -> float:
        sign = -1.0 if code >> (self.exp + self.man) & 1 else 1.0
        if self._is_nan_code(code):
            return math.nan
        field = (code >> self.man) & ((1 << self.exp) - 1)
        mantissa = code & ((1 << self.man) - 1)
        if self.special == "ieee" and field == (1 << self.exp) - 1:
            return sign * math.inf
        if field == 0:
            if not self.subnormals and mantissa:
                return math.nan  # not a value of this format
            return sign * math.ldexp(mantissa, self._emin - self.man)
        return sign * math.ldexp((1 << self.man) | mantissa, field - self.bias - self.man)

    def _build_grid(self) -> Grid:
        largest = Fraction(self.decode(self._max_code()))
        return Grid(man=self.man, emin=self._emin, subnormals=self.subnormals, overflow=self.overflow,
                    has_inf=self.special == "ieee", neg_zero=self.special != "fnuz",
                    max_pos=largest, max_neg=largest)


