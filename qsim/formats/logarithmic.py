"""Logarithmic: a logarithmic number system (LNS), values ±2^(k / 2^frac_bits) with a fixed-point
exponent, and the exact arithmetic its kernel tables come from.

    qsim.Logarithmic(4, 3)                       # "lns<4,3>", the registered "lns8"
    qsim.Logarithmic(5, 10, midpoint="linear")   # "lns<5,10,linear>"

The values 2^(k/2^f) are irrational for most k, so this module computes what the kernels compare
against (values rounded to a p-bit significand, midpoints rounded up to p bits) with certified
decimal arithmetic: every rounding direction is checked against a proven error bound.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import numpy as np

from qsim.formats.base import Format, cached, check_bool, check_choice, check_int, check_options, spec_int

_MIDPOINTS = ("log", "linear")
# Every value must be a float32 normal (|exponent| ≤ 2^(int_bits-1) ≤ 64), and the kernels' tables
# have 2^(frac_bits+1) entries.
_MAX_INT_BITS = 7
_MAX_FRAC_BITS = 12
_ENUMERABLE_BITS = 16

# Certified evaluation of 2^y, y in [0, 1], in decimal with D = _DIGITS significant digits. Every
# decimal operation is correctly rounded (relative error ≤ ε = 10^(1-D)/2); y = a/2^g with g ≤ 13 is
# exact. ln2 and the product y·ln2 add ε each, so exp's argument is off by ≤ ln2·(2ε + ε²), which
# moves exp's result by a relative 1.4ε·(1 + 1e-50); exp's own rounding adds ε: 2^y carries ≤ 2.5ε.
# A half sum of two such values adds 2ε (the sum and the halving), the product with 2^p one more:
# every quantity compared carries a relative error below 6ε = 3·10^(1-D), so for quantities below
# 2^55 (values ≤ 2 times 2^p, p ≤ 52) the absolute error is below _ERROR.
_DIGITS = 60
_ERROR = Decimal(2) ** 55 * Decimal(3) * Decimal(10) ** (1 - _DIGITS)


def _exp2(exponent: Fraction) -> Fraction | Decimal:
    """2^exponent for exponent in [0, 1]: a Fraction when exact (integral exponent), else a Decimal."""
    if exponent.denominator == 1:
        return Fraction(2) ** exponent.numerator
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        return (Decimal(exponent.numerator) / Decimal(exponent.denominator) * Decimal(2).ln()).exp()


def _half_sum(a: Fraction | Decimal, b: Fraction | Decimal) -> Fraction | Decimal:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return (a + b) / 2
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        as_decimal = [Decimal(v.numerator) / Decimal(v.denominator) if isinstance(v, Fraction) else v for v in (a, b)]
        return (as_decimal[0] + as_decimal[1]) / 2


def _scaled_integer(value: Fraction | Decimal, p: int, direction: str) -> tuple[int, bool]:
    """(c, exact): c = value·2^p rounded to an integer ("nearest" or "up"), exact = no rounding.

    Decimal values are irrational: they come from _exp2 with a non-integral exponent, or a half sum
    with one (α = 2^(1/2^f) has degree 2^f over Q, so 1, α, …, α^(2^f-1) are independent and no such
    sum is rational). c is certified: value·2^p must lie farther than _ERROR from every rounding
    boundary (integers for "up", half-integers for "nearest"); the differences are exact in decimal."""
    if isinstance(value, Fraction):
        scaled = value * (1 << p)
        c = math.ceil(scaled) if direction == "up" else round(scaled)
        return c, scaled == c
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        scaled = value * (1 << p)
        if direction == "up":
            c = int(scaled.to_integral_value(rounding=ROUND_CEILING))
            gaps = (Decimal(c) - scaled, scaled - Decimal(c - 1))
        else:
            c = int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))
            gaps = (scaled - (Decimal(c) - Decimal("0.5")), Decimal(c) + Decimal("0.5") - scaled)
        if min(gaps) <= _ERROR:
            raise ArithmeticError(f"cannot certify the rounding of {scaled} to an integer; raise _DIGITS")
    return c, False


@dataclass(frozen=True)
class Logarithmic(Format):
    """Logarithmic numbers ±2^(k / 2^frac_bits) and zero.

    Encoding (bits_per_element = signed + int_bits + frac_bits): a sign bit (if signed), then k as an
    (int_bits + frac_bits)-bit two's-complement integer: a fixed-point exponent k / 2^frac_bits with
    int_bits integer bits (its sign included) and frac_bits fraction bits. The most negative code,
    -2^(int_bits+frac_bits-1), encodes zero (one zero, returned as +0); the others give magnitudes
    from min_positive = 2^((1 - 2^(N-1)) / 2^f) to max = 2^((2^(N-1) - 1) / 2^f), N = int_bits + frac_bits.
    In a float32 or float64 tensor each value is held rounded to nearest in that dtype.

    Rounding of |x| (negative x by symmetry; unsigned formats give 0 for negative x):
      nearest, nearest_away: to the code whose value is nearest, with `midpoint` saying where the
        boundary between neighbours v_k < v_{k+1} lies:
          "log"    the log-domain midpoint 2^((k + 1/2) / 2^f) = sqrt(v_k·v_{k+1}): rounding the exact
                   fixed-point log2|x| to frac_bits bits, as an LNS adder's output stage does;
          "linear" the value midpoint (v_k + v_{k+1}) / 2: the nearest value as for other formats.
        Midpoints are irrational except for frac_bits = 0 with "linear" (1.5·2^k), where ties go to
        the even code (nearest) or away from zero (nearest_away).
      toward_zero, up, down, odd: the neighbouring values in the tensor's dtype; odd picks the odd code.
      stochastic: up with probability (|x| - lo) / (hi - lo), unbiased in the linear domain.
    Overflow: magnitudes above max (and ±inf) saturate to ±max in every mode. Underflow: below
    min_positive, |x| is rounded between 0 and min_positive by the same rules — the boundary is then
    the log midpoint 2^((code_min - 1/2)/2^f) (zero acts as the code below the smallest) or the linear
    one min_positive/2; directed modes give 0 or min_positive; stochastic gives min_positive with
    probability |x| / min_positive. NaN stays NaN.

    int_bits in [2, 7] (every value a float32 normal), frac_bits in [0, 12]."""

    int_bits: int
    frac_bits: int
    signed: bool = True
    midpoint: str = "log"

    KIND = "lns"

    def __post_init__(self):
        check_int(self.int_bits, "int_bits", 2, _MAX_INT_BITS)
        check_int(self.frac_bits, "frac_bits", 0, _MAX_FRAC_BITS)
        check_bool(self.signed, "signed")
        check_choice(self.midpoint, "midpoint", _MIDPOINTS)

    @property
    def code_bits(self) -> int:
        """Bits of the exponent code k (int_bits + frac_bits)."""
        return self.int_bits + self.frac_bits

    @property
    def code_min(self) -> int:
        """Code of the smallest magnitude; code_min - 1 encodes zero."""
        return 1 - (1 << (self.code_bits - 1))

    @property
    def code_max(self) -> int:
        return (1 << (self.code_bits - 1)) - 1

    @property
    def bits_per_element(self) -> float:
        return float(self.code_bits + self.signed)

    @functools.cached_property
    def spec(self) -> str:
        options = ("" if self.signed else ",unsigned") + ("" if self.midpoint == "log" else f",{self.midpoint}")
        return f"lns<{self.int_bits},{self.frac_bits}{options}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "Logarithmic":
        """lns<int_bits,frac_bits[,unsigned][,log|linear]>"""
        if len(args) < 2 or not all(spec_int(a) for a in args[:2]):
            raise ValueError(f"fmt: {spec!r}: expected lns<int_bits,frac_bits[,unsigned][,log|linear]>, e.g. lns<4,3>")
        check_options(spec, args[2:], (_MIDPOINTS,))
        options = set(args[2:])
        unknown = options - {"unsigned", *_MIDPOINTS}
        if unknown or len(options & set(_MIDPOINTS)) > 1:
            raise ValueError(f"fmt: {spec!r}: unknown or conflicting options {sorted(options)}; expected "
                             f"'unsigned' and at most one of {', '.join(_MIDPOINTS)}")
        return cls(int(args[0]), int(args[1]), signed="unsigned" not in options,
                   midpoint="linear" if "linear" in options else "log")

    # The exact arithmetic. Within one binade the values are 2^(j/2^f), j in [0, 2^f); code k is
    # 2^floor(k/2^f) · 2^((k mod 2^f)/2^f).

    @cached
    def binade_values(self, p: int) -> tuple[int, ...]:
        """W_j = RN(2^(j/2^f) · 2^p) - 2^p: the p fraction bits of each value of [1, 2) rounded to nearest."""
        scale = 1 << self.frac_bits
        values = tuple(_scaled_integer(_exp2(Fraction(j, scale)), p, "nearest")[0] - (1 << p) for j in range(scale))
        assert all(0 <= w < (1 << p) for w in values), "a value of [1, 2) rounded to 2"
        return values

    @cached
    def nearest_thresholds(self, p: int) -> tuple[tuple[int, ...], bool]:
        """(T_j, exact): T_j = RU(m_j · 2^p) - 2^p for the midpoint m_j between 2^(j/2^f) and
        2^((j+1)/2^f), j in [0, 2^f); a p-bit significand 1 + M·2^-p is at or above m_j iff M ≥ T_j
        (for irrational m_j no p-bit number lies in [m_j, RU(m_j)) ). exact: the midpoints are
        dyadic, so M = T_j is a tie."""
        scale = 1 << self.frac_bits
        thresholds, exact = [], False
        for j in range(scale):
            if self.midpoint == "log":
                middle = _exp2(Fraction(2 * j + 1, 2 * scale))
            else:
                middle = _half_sum(_exp2(Fraction(j, scale)), _exp2(Fraction(j + 1, scale)))
            c, is_exact = _scaled_integer(middle, p, "up")
            thresholds.append(c - (1 << p))
            exact |= is_exact
        return tuple(thresholds), exact

    @cached
    def zero_threshold(self, p: int) -> tuple[int, int, bool]:
        """(binade, T, exact): the boundary below which nearest rounding gives 0, as RU_p of it =
        2^binade · (1 + T·2^-p): the log midpoint 2^((code_min - 1/2)/2^f) or half the smallest value."""
        scale = 1 << self.frac_bits
        if self.midpoint == "log":
            exponent = Fraction(2 * self.code_min - 1, 2 * scale)
        else:
            exponent = Fraction(self.code_min, scale) - 1
        binade = math.floor(exponent)
        c, exact = _scaled_integer(_exp2(exponent - binade), p, "up")
        if c == 2 << p:
            binade, c = binade + 1, 1 << p
        return binade, c - (1 << p), exact

    def code_value(self, code: int) -> float:
        """The value of exponent code k (code_min ≤ k ≤ code_max) rounded to nearest float64."""
        binade, j = divmod(code, 1 << self.frac_bits)
        return math.ldexp(1.0 + math.ldexp(self.binade_values(52)[j], -52), binade)

    @property
    def max(self) -> float:
        return self.code_value(self.code_max)

    @property
    def min_positive(self) -> float:
        return self.code_value(self.code_min)

    def decode(self, code: int) -> float:
        """The value (rounded to nearest float64) of one bit pattern, an int in [0, 2^bits)."""
        check_int(code, "code", 0, (1 << int(self.bits_per_element)) - 1)
        negative = self.signed and code >> self.code_bits
        k = code & ((1 << self.code_bits) - 1)
        if k >> (self.code_bits - 1):
            k -= 1 << self.code_bits
        if k == self.code_min - 1:
            return 0.0
        value = self.code_value(k)
        return -value if negative else value

    def values(self) -> np.ndarray:
        """All values as float64 (rounded to nearest), sorted (formats of at most 16 bits)."""
        if self.bits_per_element > _ENUMERABLE_BITS:
            raise ValueError(f"values(): {self.name} has {self.bits_per_element:g} bits; only formats of at "
                             f"most {_ENUMERABLE_BITS} bits are enumerated")
        magnitudes = [self.code_value(k) for k in range(self.code_min, self.code_max + 1)]
        signed = [-m for m in reversed(magnitudes)] if self.signed else []
        return np.array(signed + [0.0] + magnitudes, dtype=np.float64)
