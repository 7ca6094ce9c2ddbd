"""Posit: the tapered-precision format of the 2022 posit standard, with the exponent size a parameter.

    qsim.Posit(8, 2)            # posit8 of the standard; also "posit<8,2>" or the name "posit8"
    qsim.Posit(16, 1)           # softposit's pre-2022 posit16 layout ("posit16_es1")

The kernels (csrc/qsim/posit.h) need only (nbits, es); this module gives the value, its limits and
an independent decoder of bit patterns that the tests and `values()` use.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from qsim.formats.base import Format, check_int, spec_int

# Formats up to this many bits can list all their values (exhaustive tests, docs).
_ENUMERABLE_BITS = 16
# Every value must be a normal float32: the kernels build results from the scale and fraction bits.
_MAX_SCALE = 126
_MAX_ES = 5


@dataclass(frozen=True)
class Posit(Format):
    """posit<nbits, es> (Posit Standard 2022 fixes es = 2; other es are the pre-2022 layouts).

    Encoding: a sign bit, then the two's complement of the magnitude's pattern for negative values.
    A positive pattern after the sign bit is a regime (k+1 ones then a zero for k ≥ 0, -k zeros then
    a one for k < 0), es exponent bits, then fraction bits; bits cut off at the end read as 0:
        value = 2^(k·2^es + exponent) · (1 + fraction).
    0…0 is zero (there is no -0) and 10…0 is NaR (not a real), which NaN and ±inf inputs become.
    maxpos = 2^((nbits-2)·2^es) and minpos = 1/maxpos.

    Rounding (csrc/qsim/posit.h): "nearest" is the standard's round to nearest, ties to the even bit
    pattern, on the encoding, so where exponent bits are cut off the midpoint of two powers of two is
    their geometric mean; nonzero values never round to 0 and finite values never to NaR: they
    saturate to ±minpos and ±maxpos. "nearest_away" is the same with ties away from zero; "odd" sets
    the last bit of an inexact pattern (minpos below minpos). toward_zero, up and down are the exact
    directed roundings on the values, saturating at ±maxpos and giving 0 or ±minpos below minpos.
    "stochastic" rounds up with probability (x - lo) / (hi - lo) between the neighbouring values
    lo, hi (0 and minpos below minpos), so it is unbiased inside [-maxpos, maxpos].

    nbits in [2, 32], es in [0, 5], with (nbits-2)·2^es ≤ 126 so that every value is a float32 normal."""

    nbits: int
    es: int = 2

    KIND = "posit"

    def __post_init__(self):
        check_int(self.nbits, "nbits", 2, 32)
        check_int(self.es, "es", 0, _MAX_ES)
        if self.top_scale > _MAX_SCALE:
            raise ValueError(f"es: posit<{self.nbits},{self.es}> spans 2^±{self.top_scale}, beyond float32's "
                             f"normal range 2^±{_MAX_SCALE}; use fewer bits or a smaller es")

    @property
    def top_scale(self) -> int:
        """maxpos = 2^top_scale, minpos = 2^-top_scale."""
        return (self.nbits - 2) << self.es

    @property
    def bits_per_element(self) -> float:
        return float(self.nbits)

    @functools.cached_property
    def spec(self) -> str:
        return f"posit<{self.nbits},{self.es}>"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "Posit":
        """posit<nbits,es>"""
        if len(args) != 2 or not all(spec_int(a) for a in args):
            raise ValueError(f"fmt: {spec!r}: expected posit<nbits,es> with integers nbits and es, e.g. posit<8,2>")
        return cls(int(args[0]), int(args[1]))

    @property
    def max(self) -> float:
        """maxpos, the largest value."""
        return math.ldexp(1.0, self.top_scale)

    @property
    def min_positive(self) -> float:
        """minpos, the smallest positive value."""
        return math.ldexp(1.0, -self.top_scale)

    def decode(self, code: int) -> float:
        """The value of one bit pattern (an int in [0, 2^nbits)); NaR is NaN."""
        check_int(code, "code", 0, (1 << self.nbits) - 1)
        if code == 0:
            return 0.0
        if code == 1 << (self.nbits - 1):
            return math.nan
        negative = code >> (self.nbits - 1)
        if negative:
            code = (1 << self.nbits) - code
        body = format(code, f"0{self.nbits}b")[1:]  # the nbits-1 bits after the sign
        run = len(body) - len(body.lstrip(body[0]))
        k = run - 1 if body[0] == "1" else -run
        rest = body[run + 1:]
        exponent = int((rest[: self.es] + "0" * self.es)[: self.es] or "0", 2)
        fraction_bits = rest[self.es:]
        fraction = int(fraction_bits, 2) / (1 << len(fraction_bits)) if fraction_bits else 0.0
        value = math.ldexp(1.0 + fraction, k * (1 << self.es) + exponent)
        return -value if negative else value

    def values(self) -> np.ndarray:
        """All values (NaR excluded), sorted, as float64 (formats of at most 16 bits)."""
        if self.nbits > _ENUMERABLE_BITS:
            raise ValueError(f"values(): {self.name} has {self.nbits} bits; only formats of at most "
                             f"{_ENUMERABLE_BITS} bits are enumerated")
        decoded = [self.decode(code) for code in range(1 << self.nbits) if code != 1 << (self.nbits - 1)]
        return np.sort(np.array(decoded, dtype=np.float64))
