"""A slow-but-exact reference quantizer: the format's value list, found by decoding every encoding, and
neighbour search. It shares nothing with the kernels' bit manipulation, which is the point.

The arithmetic is exact in float64: every probe and every value has at most 30 significant bits and the
distances compared are between neighbours of the same sign, so each subtraction is exact (Sterbenz)."""
import math
from fractions import Fraction

import numpy as np

from qsim.formats import MX, BlockFloatingPoint


class GridReference:
    """Rounds float64 numbers lying between the format's smallest and largest finite values."""

    def __init__(self, fmt):
        self.fmt = fmt
        lsb = {}
        for code in range(1 << int(fmt.bits_per_element)):
            v = fmt.decode(code)
            if math.isfinite(v):
                lsb.setdefault(v + 0.0, code & 1)
        # Without subnormals the step from 0 to the smallest normal is one unit of a grid {0, 2^emin}:
        # there 0 is even and the smallest normal odd, whatever its encoding. Ties and round-to-odd look
        # at the parity of the neighbour toward zero, as a truncated significand does.
        self.flushes = not fmt.grid().subnormals
        if getattr(fmt, "man", None) == 0:
            # No mantissa bits: every nonzero significand is the implicit 1, an odd one (ml_dtypes' e8m0 agrees).
            lsb = {v: int(v != 0) for v in lsb}
        self.values = np.array(sorted(lsb))
        self.lsb = np.array([lsb[v] for v in self.values])
        self.top, self.bottom = self.values[-1], self.values[0]

    def round(self, x: np.ndarray, mode: str) -> np.ndarray:
        """x rounded with `mode` (bottom <= x <= top; overflow is tested separately)."""
        i = np.clip(np.searchsorted(self.values, x, side="left"), 1, len(self.values) - 1)
        exact = self.values[np.minimum(np.searchsorted(self.values, x), len(self.values) - 1)] == x
        lo, hi = self.values[i - 1], self.values[i]
        lo_odd, hi_odd = self.lsb[i - 1] == 1, self.lsb[i] == 1
        if self.flushes:
            lo_odd, hi_odd = (lo_odd & (lo != 0)) | (hi == 0), (hi_odd & (hi != 0)) | (lo == 0)
        below, above = x - lo, hi - x
        positive = x > 0
        toward_zero, away = np.where(positive, lo, hi), np.where(positive, hi, lo)
        toward_zero_odd = np.where(positive, lo_odd, hi_odd)
        if mode in ("nearest", "nearest_away"):
            tie = away if mode == "nearest_away" else np.where(toward_zero_odd, away, toward_zero)
            result = np.where(below < above, lo, np.where(above < below, hi, tie))
        else:
            odd = np.where(toward_zero_odd, toward_zero, away)
            result = {"toward_zero": toward_zero, "up": hi, "down": lo, "odd": odd}[mode]
        return np.where(exact, x, result)

    def probes(self, dtype=np.float64) -> np.ndarray:
        """Every value, every midpoint and the quarter points between neighbours, as `dtype`."""
        gaps = np.diff(self.values)
        points = [self.values] + [self.values[:-1] + gaps * q for q in (0.25, 0.5, 0.75)]
        return np.concatenate(points).astype(dtype)


def round_to_integer(v: Fraction, mode: str) -> int:
    """v rounded to an integer with `mode`, exactly."""
    low = math.floor(v)
    rest = v - low
    if rest == 0:
        return low
    toward_zero = low if v > 0 else low + 1
    away = low + 1 if v > 0 else low
    if mode == "nearest":
        return low + (rest > Fraction(1, 2) or (rest == Fraction(1, 2) and low % 2 == 1))
    if mode == "nearest_away":
        return low + 1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and v > 0) else low
    if mode == "odd":
        return toward_zero if toward_zero % 2 else away
    return {"toward_zero": toward_zero, "up": low + 1, "down": low}[mode]


def scale_exponent(fmt, amax: Fraction) -> int:
    """The block's scale exponent from its largest magnitude, by the format's rule (exact)."""
    if isinstance(fmt, BlockFloatingPoint):
        low, high = fmt.scale_range
        return min(max(math.floor(math.log2(amax)), low), high)
    e = math.floor(math.log2(amax))
    emax, element_max = fmt.element_emax, Fraction(fmt.element.max)
    rule = fmt.scale_rule
    if rule == "floor":
        E = e - emax
    elif rule == "ceil":
        E = e - emax + (amax != Fraction(2) ** e)
    elif rule == "rceil":
        E = e - emax - 2
        while amax > element_max * Fraction(2) ** E:
            E += 1
    else:  # even: the significand rounded half up to the element's fraction bits in its top binade
        grid = fmt.element_grid()
        bits = max(0, grid.man - max(0, grid.emin - emax))
        E = e - emax + (amax / Fraction(2) ** e >= 2 - Fraction(1, 2 ** (bits + 1)))
    low, high = fmt.scale_range
    return min(max(E, low), high)


def element_values(fmt) -> np.ndarray | None:
    """The element values of a block format at scale 1, sorted (None for BFP wider than 12 bits)."""
    if isinstance(fmt, BlockFloatingPoint):
        top = (1 << (fmt.wl - 1)) - 1
        return None if fmt.wl > 12 else np.arange(-top, top + 1) * 2.0 ** -(fmt.wl - 2)
    return GridReference(fmt.element).values


def block_round(fmt, x: np.ndarray, mode: str, dtype=np.float32) -> np.ndarray:
    """One block of a BFP or MX format with a power-of-two scale, exactly: every element rounded onto the
    (saturating) element grid scaled by 2^E, then limited to the largest value of that sign of the scaled
    grid that `dtype` holds."""
    held_max = Fraction(float(np.finfo(dtype).max))
    if not np.any(x):
        return np.zeros(len(x), dtype=dtype)
    E = scale_exponent(fmt, max(Fraction(float(v)) for v in np.abs(x)))
    values = element_values(fmt)
    if values is None:  # wide BFP: a fixed-point grid of quantum 2^(E - wl + 2), exact by integers
        top = (1 << (fmt.wl - 1)) - 1
        unit = Fraction(2) ** (E - fmt.wl + 2)
        rounded = [max(-top, min(top, round_to_integer(Fraction(float(v)) / unit, mode))) * unit for v in x]
        held_top = min(top, math.floor(held_max / unit))
        scaled_grid = [k * unit for k in (-top, top, -held_top, held_top)]
    else:
        scaled = np.clip(x.astype(np.float64) * 2.0**-E, values[0], values[-1])
        if isinstance(fmt, MX):
            rounded_elements = GridReference(fmt.element).round(scaled, mode)
        else:
            rounded_elements = [round_to_integer(Fraction(v) * 2 ** (fmt.wl - 2), mode) * 2.0 ** -(fmt.wl - 2)
                                for v in scaled]
        rounded = [Fraction(float(v)) * Fraction(2) ** E for v in rounded_elements]
        scaled_grid = [Fraction(float(v)) * Fraction(2) ** E for v in values]
    held = [v for v in scaled_grid if abs(v) <= held_max]
    return np.array([float(max(min(held), min(max(held), v))) for v in rounded], dtype=dtype)
