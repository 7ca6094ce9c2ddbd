"""A slow-but-exact reference quantizer: the format's value list, found by decoding every encoding, and
neighbour search. It shares nothing with the kernels' bit manipulation, which is the point.

The arithmetic is exact in float64: every probe and every value has at most 30 significant bits and the
distances compared are between neighbours of the same sign, so each subtraction is exact (Sterbenz)."""
import math

import numpy as np


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
