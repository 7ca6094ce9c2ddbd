"""DMGC signatures (Buckwild!, De Sa et al., ISCA 2017): the precisions of Dataset, Model, Gradient and
Communication of asynchronous SGD, and the rounding tables the compiled simulator uses.

Exports `parse_dmgc(signature, integer_bits=...)` -> `DMGC`, `Precision`, and `rounding_table(fmt)`.

    parse_dmgc("D8M8G16C8")                      # each width: signed fixed point, fraction bits from integer_bits
    parse_dmgc("D32M32G32C32")                   # 32 means float32 (full precision)
    parse_dmgc({"D": "fp8_e4m3", "M": "fixed<8,5>", "G": 32, "C": "bf16"})   # any qsim format per letter

Meaning on shared memory (the paper's C is the precision of what workers communicate): here C is the
precision of the update u = -step * g a worker adds to the shared model, w <- Q_M(w + Q_C(-step * Q_G(g))),
so C sets both the rounding of the update and the width of the values that travel to the model's cache
lines (the model lines themselves hold M-bit words).

A width b <= 16 is the signed fixed-point format fixed<b, b-1-integer_bits[letter]>: integer_bits
chooses the scale (defaults in INTEGER_BITS: data in [-2, 2), model, gradient and update in [-4, 4)).
Formats are rounded in the compiled loop by a table of the format's values (so only elementwise grid
formats of at most 16 bits, and float32; fixed point by arithmetic on its step), which the tests check
against qsim.quantize.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from qsim import formats
from qsim.formats import FixedPoint, GridFormat

LETTERS = ("D", "M", "G", "C")
FULL_WIDTH = 32
INTEGER_BITS = {"D": 1, "M": 2, "G": 2, "C": 2}


@dataclass(frozen=True)
class Precision:
    """One letter's number format; fmt None means float32."""

    letter: str
    fmt: object  # a qsim Format, or None for float32
    bits: int

    @property
    def label(self) -> str:
        return "fp32" if self.fmt is None else self.fmt.name


@dataclass(frozen=True)
class DMGC:
    d: Precision
    m: Precision
    g: Precision
    c: Precision

    @property
    def signature(self) -> str:
        """The paper's notation when every letter is a width, else letter=format pairs."""
        parts = [self.d, self.m, self.g, self.c]
        if all(p.fmt is None or p.fmt.name.startswith("fixed<") for p in parts):
            return "".join(f"{p.letter}{p.bits}" for p in parts)
        return " ".join(f"{p.letter}={p.label}" for p in parts)

    def __str__(self):
        return self.signature


def _precision(letter: str, value, integer_bits: dict) -> Precision:
    if isinstance(value, str) and re.fullmatch(r"\d+", value):
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        width = int(value)
        if width == FULL_WIDTH:
            return Precision(letter, None, FULL_WIDTH)
        if not 2 <= width <= 16:
            raise ValueError(f"DMGC {letter}{width}: unknown width {width}; expected 2..16 (fixed point) "
                             f"or 32 (float32)")
        fraction = width - 1 - integer_bits[letter]
        return Precision(letter, formats.get(f"fixed<{width},{fraction}>"), width)
    if not isinstance(value, (str, formats.Format)):
        raise ValueError(f"DMGC {letter}: expected a width or a qsim format, got {value!r}")
    fmt = formats.get(value)
    if fmt.name == "fp32" or getattr(fmt, "spec", "") == "float<e8m23>":
        return Precision(letter, None, FULL_WIDTH)
    # Grid formats round to the nearer value (ties to the even code); posits (in their tapered regimes)
    # and logarithmic formats round in the encoding, block formats share scales: a table of values
    # with linear-domain midpoints does not express those.
    if not isinstance(fmt, GridFormat) or fmt.bits_per_element > 16:
        raise ValueError(f"DMGC {letter}={fmt.name}: the simulator rounds elementwise grid formats "
                         f"(fixed point, floating point) of at most 16 bits, or fp32; {fmt.name} is not one")
    return Precision(letter, fmt, int(fmt.bits_per_element))


def parse_dmgc(signature, integer_bits: dict | None = None) -> DMGC:
    """A DMGC from "D8M8G16C8", a mapping letter -> width or format, or a DMGC (returned as is)."""
    if isinstance(signature, DMGC):
        return signature
    bits = dict(INTEGER_BITS)
    for letter, value in (integer_bits or {}).items():
        if letter not in LETTERS:
            raise ValueError(f"integer_bits: unknown DMGC letter {letter!r}; expected one of {LETTERS}")
        bits[letter] = int(value)
    if isinstance(signature, str):
        pairs = re.findall(r"([A-Za-z])(\d+)", signature)
        if not pairs or "".join(f"{a}{b}" for a, b in pairs) != signature.replace(" ", ""):
            raise ValueError(f"DMGC signature {signature!r}: expected letter-width pairs such as 'D8M8G16C8'")
        mapping = {}
        for letter, width in pairs:
            if letter not in LETTERS:
                raise ValueError(f"DMGC signature {signature!r}: unknown letter {letter!r}; expected D, M, G, C")
            if letter in mapping:
                raise ValueError(f"DMGC signature {signature!r}: letter {letter!r} appears twice")
            mapping[letter] = int(width)
    elif isinstance(signature, dict):
        mapping = dict(signature)
        unknown = sorted(set(mapping) - set(LETTERS))
        if unknown:
            raise ValueError(f"DMGC mapping: unknown letter(s) {unknown}; expected D, M, G, C")
    else:
        raise ValueError(f"DMGC: expected a signature string like 'D8M8G16C8' or a mapping, got {signature!r}")
    missing = [letter for letter in LETTERS if letter not in mapping]
    if missing:
        raise ValueError(f"DMGC {signature!r}: missing letter(s) {', '.join(missing)}")
    return DMGC(*(_precision(letter, mapping[letter], bits) for letter in LETTERS))


@functools.lru_cache(maxsize=64)
def _table(fmt) -> tuple[np.ndarray, np.ndarray]:
    values, parity = {}, {}
    for code in range(1 << int(fmt.bits_per_element)):
        v = fmt.decode(code) + 0.0
        if math.isfinite(v) and v not in values:
            values[v], parity[v] = v, code & 1
    keys = sorted(values)
    return np.array(keys, np.float64), np.array([parity[k] == 0 for k in keys], np.bool_)


def rounding_table(precision: Precision) -> tuple[np.ndarray, np.ndarray, float]:
    """(sorted finite values, whether each value's code is even, quantum) for the compiled rounding;
    empty for float32. Ties round to the even code, as IEEE round-to-nearest-even and qsim's "nearest"
    do. quantum is the step of a fixed-point format (its values are the multiples of it between the
    first and last value, so rounding is arithmetic rather than a search), 0 for other formats."""
    if precision.fmt is None:
        return np.zeros(0, np.float64), np.zeros(0, np.bool_), 0.0
    values, even = _table(precision.fmt)
    quantum = math.ldexp(1.0, -precision.fmt.fl) if isinstance(precision.fmt, FixedPoint) else 0.0
    return values, even, quantum
