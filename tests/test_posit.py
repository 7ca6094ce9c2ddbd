"""Posit rounding against three oracles: SoftPosit (the reference library) for its posit8 (es = 0),
posit16 (es = 1) and posit32 (es = 2); an exact reference written from the standard's definitions
(values and the (nbits+1)-bit midpoints decoded with fractions) over every pattern, midpoint and
quarter point, in every deterministic mode; and the statistics of stochastic rounding."""
import math
from fractions import Fraction

import numpy as np
import pytest
import softposit
import torch

import qsim
from qsim.formats import Posit
from stochastic_checks import check_rand_bits_between, check_unbiased_between, draws

DIRECTED = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]


def pattern_value(pattern: int, nbits: int, es: int) -> Fraction:
    """The standard's decoding of a positive pattern (0 < pattern < 2^(nbits-1)), independent of qsim."""
    bits = [(pattern >> i) & 1 for i in range(nbits - 2, -1, -1)]
    run = 1
    while run < len(bits) and bits[run] == bits[0]:
        run += 1
    k = run - 1 if bits[0] else -run
    rest = bits[run + 1:]
    exponent_bits = (rest[:es] + [0] * es)[:es]
    exponent = sum(b << (es - 1 - i) for i, b in enumerate(exponent_bits))
    fraction = rest[es:]
    significand = Fraction(sum(b << (len(fraction) - 1 - i) for i, b in enumerate(fraction)) + (1 << len(fraction)),
                           1 << len(fraction))
    return significand * Fraction(2) ** (k * (1 << es) + exponent)


class PositReference:
    """Rounding of a posit<nbits, es> (nbits ≤ 16) from its sorted positive values and, for nearest, the
    standard's midpoints: the value of the (nbits+1)-bit pattern 2q+1 between patterns q and q+1."""

    def __init__(self, fmt: Posit):
        n, es = fmt.nbits, fmt.es
        self.fmt = fmt
        self.values = np.array([float(pattern_value(q, n, es)) for q in range(1, 1 << (n - 1))])
        self.mids = np.array([float(pattern_value(2 * q + 1, n + 1, es)) for q in range(1, (1 << (n - 1)) - 1)])
        self.minpos, self.maxpos = self.values[0], self.values[-1]

    def round(self, x: np.ndarray, mode: str) -> np.ndarray:
        a, negative = np.abs(x), x < 0
        i = np.clip(np.searchsorted(self.values, a, side="right") - 1, 0, len(self.values) - 1)
        lo = self.values[i]
        hi = self.values[np.minimum(i + 1, len(self.values) - 1)]
        mid = self.mids[np.minimum(i, len(self.mids) - 1)] if len(self.mids) else lo
        lo_pattern_even = (i + 1) % 2 == 0
        inside = (a >= self.minpos) & (a < self.maxpos)
        exact = inside & (a == lo)
        away_from_zero = {"toward_zero": np.zeros_like(a, bool), "up": ~negative, "down": negative}
        if mode in ("nearest", "nearest_away"):
            tie_up = np.ones_like(a, bool) if mode == "nearest_away" else ~lo_pattern_even
            magnitude = np.where((a > mid) | ((a == mid) & tie_up), hi, lo)
            under = np.full_like(a, self.minpos)
        elif mode == "odd":
            magnitude = np.where(lo_pattern_even, hi, lo)
            under = np.full_like(a, self.minpos)
        else:
            magnitude = np.where(away_from_zero[mode], hi, lo)
            under = np.where(away_from_zero[mode], self.minpos, 0.0)
        magnitude = np.where(exact, a, magnitude)
        magnitude = np.where(a < self.minpos, np.where(a == 0, 0.0, under), magnitude)
        magnitude = np.where(a >= self.maxpos, self.maxpos, magnitude)
        return np.where(negative & (magnitude != 0), -magnitude, magnitude)

    def probes(self) -> np.ndarray:
        """Every value and standard midpoint, their float64 neighbours, the value midpoints and quarter
        points, and values beyond minpos and maxpos; both signs."""
        v = self.values
        gaps = np.diff(v)
        points = [v, self.mids, np.nextafter(self.mids, 0), np.nextafter(self.mids, np.inf),
                  v[:-1] + gaps / 4, v[:-1] + gaps / 2, v[:-1] + 3 * gaps / 4,
                  self.minpos * np.array([0.0, 2.0**-30, 0.25, 0.5, 0.75, 0.999]),
                  self.maxpos * np.array([1.001, 1.5, 2.0, 2.0**30])]
        x = np.concatenate(points)
        return np.concatenate([x, -x])


EXHAUSTIVE = ["posit8", "posit16", "posit8_es0", "posit16_es1", "posit<6,1>", "posit<10,3>", "posit<2,0>",
              "posit<3,2>", "posit<5,5>", "posit<12,2>"]


@pytest.fixture(scope="module", params=EXHAUSTIVE)
def case(request):
    fmt = qsim.formats.get(request.param)
    return fmt, PositReference(fmt)


@pytest.mark.parametrize("mode", DIRECTED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_pattern_and_midpoint_rounds_as_the_standard_says(case, mode, dtype):
    fmt, ref = case
    x = ref.probes().astype(dtype)
    got = qsim.quantize(torch.from_numpy(x), fmt, rounding=mode).numpy()
    expected = ref.round(x.astype(np.float64), mode).astype(dtype)
    bad = got != expected
    assert not bad.any(), f"{fmt} {mode}: x={x[bad][:4]} got={got[bad][:4]} expected={expected[bad][:4]}"


def test_decode_lists_the_standard_values(case):
    fmt, ref = case
    positive = fmt.values()[fmt.values() > 0]
    assert np.array_equal(positive, ref.values)
    assert (fmt.max, fmt.min_positive) == (ref.maxpos, ref.minpos)
    assert math.isnan(fmt.decode(1 << (fmt.nbits - 1))) and fmt.decode(0) == 0.0


@pytest.mark.parametrize("name,convert", [("posit8_es0", softposit.posit8), ("posit16_es1", softposit.posit16),
                                          ("posit32", softposit.posit32)])
def test_nearest_equals_softposit_bit_for_bit(name, convert):
    """Values, midpoints, their neighbours and random values of wide range, float64 and float32 inputs."""
    fmt = qsim.formats.get(name)
    rng = np.random.default_rng(0)
    randoms = np.concatenate([rng.standard_normal(20_000) * 10, np.exp2(np.clip(rng.uniform(-1.1, 1.1, 20_000) * fmt.top_scale, -126, 126))])
    x = randoms if fmt.nbits > 16 else np.concatenate([PositReference(fmt).probes(), randoms])
    for dtype in (np.float64, np.float32):
        xs = x.astype(dtype)
        expected = np.array([float(convert(float(v))) for v in xs]).astype(dtype)
        got = qsim.quantize(torch.from_numpy(xs), fmt).numpy()
        bad = got != expected
        assert not bad.any(), f"{name}: x={xs[bad][:4]} got={got[bad][:4]} softposit={expected[bad][:4]}"


def floor_pattern(a: Fraction, nbits: int, es: int) -> int:
    """The largest positive pattern whose value is at most a (minpos ≤ a), by bisection on exact values."""
    lo, hi = 1, (1 << (nbits - 1)) - 1
    while lo < hi:
        middle = (lo + hi + 1) // 2
        if pattern_value(middle, nbits, es) <= a:
            lo = middle
        else:
            hi = middle - 1
    return lo


@pytest.mark.parametrize("mode", DIRECTED)
def test_posit32_random_values_round_as_exact_arithmetic_says(mode):
    """posit<32,2> is too large to enumerate: exact neighbours by bisection for random float64 inputs."""
    rng = np.random.default_rng(1)
    x = np.exp2(rng.uniform(-118, 118, 300)) * rng.choice([-1.0, 1.0], 300)
    got = qsim.quantize(torch.from_numpy(x), "posit32", rounding=mode).numpy()
    for value, result in zip(x, got):
        a = Fraction(abs(value))
        q = floor_pattern(a, 32, 2)
        lo, hi = pattern_value(q, 32, 2), pattern_value(q + 1, 32, 2)
        mid = pattern_value(2 * q + 1, 33, 2)
        negative = value < 0
        if a == lo:
            magnitude = lo
        elif mode == "nearest":
            magnitude = lo if a < mid or (a == mid and q % 2 == 0) else hi
        elif mode == "nearest_away":
            magnitude = lo if a < mid else hi
        elif mode == "odd":
            magnitude = lo if q % 2 else hi
        else:
            magnitude = hi if {"toward_zero": False, "up": not negative, "down": negative}[mode] else lo
        assert result == (-float(magnitude) if negative else float(magnitude)), f"{mode}: x={value!r}"


@pytest.mark.parametrize("name", ["posit8", "posit16_es1", "posit<5,5>"])
@pytest.mark.parametrize("mode", qsim.ROUNDING_MODES)
def test_saturation_never_rounds_a_finite_value_to_nar_and_nearest_never_to_zero(name, mode):
    fmt = qsim.formats.get(name)
    x = torch.tensor([fmt.max * 3, 1e30, -1e30, fmt.min_positive / 3, -fmt.min_positive / 1e6, 1e-38],
                     dtype=torch.float64)
    got = qsim.quantize(x, fmt, rounding=mode, seed=0)
    assert torch.isfinite(got).all()
    assert got[:3].abs().eq(fmt.max).all()
    if mode in ("nearest", "nearest_away", "odd"):
        assert got[3:].abs().eq(fmt.min_positive).all()
    else:
        assert got[3:].abs().le(fmt.min_positive).all()


def test_nan_and_infinities_become_nar_and_zero_stays_positive_zero():
    x = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0])
    for mode in qsim.ROUNDING_MODES:
        got = qsim.quantize(x, "posit16", rounding=mode, seed=0)
        assert got[:3].isnan().all()
        assert got[3:].eq(0).all() and not torch.signbit(got[3:]).any(), "posits have a single (positive) zero"


# Stochastic rounding. Neighbours of three kinds in posit<8,2>: linear ones (fraction bits dropped),
# powers of two 4 and 16 apart (exponent bits dropped: the geometric kind), and [0, minpos].
def neighbours_with_ratio(fmt: Posit, ratio: float) -> tuple[float, float]:
    v = fmt.values()
    v = v[v > 0]
    i = int(np.argmax(v[1:] / v[:-1] == ratio))
    assert v[i + 1] / v[i] == ratio
    return float(v[i]), float(v[i + 1])


POSIT8 = Posit(8, 2)
INTERVALS = [(POSIT8, 1.0, 1.125), (POSIT8, -2.5, -2.25), (POSIT8, *neighbours_with_ratio(POSIT8, 4.0)),
             (POSIT8, *neighbours_with_ratio(POSIT8, 16.0)), (POSIT8, 0.0, POSIT8.min_positive),
             (Posit(5, 5), *neighbours_with_ratio(Posit(5, 5), 2.0**32))]


@pytest.mark.parametrize("fmt,lo,hi", INTERVALS)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.77])
def test_stochastic_rounding_is_unbiased_between_the_neighbouring_values(fmt, lo, hi, fraction):
    check_unbiased_between(fmt, lo, hi, fraction)


@pytest.mark.parametrize("rand_bits", [1, 2, 5])
@pytest.mark.parametrize("lo,hi", [(1.0, 1.125), neighbours_with_ratio(POSIT8, 16.0), (0.0, POSIT8.min_positive)])
def test_limited_random_bits_give_probabilities_in_multiples_of_two_to_minus_r(rand_bits, lo, hi):
    """P(up) = floor(f · 2^r) / 2^r with f the linear fraction, also between powers of two and below minpos."""
    check_rand_bits_between(POSIT8, lo, hi, rand_bits)


def test_stochastic_fraction_between_powers_of_two_is_exact_at_the_probability_boundaries():
    """With r random bits P(up) jumps at f = j / 2^r: x just below and at such f (exactly representable
    here) must give floor(f·2^r) / 2^r, which only an exact comparison gets right."""
    lo, hi = neighbours_with_ratio(POSIT8, 16.0)
    for j in (1, 2, 3):
        x = lo + j / 4 * (hi - lo)  # f = j/4 exactly (a dyadic x)
        at = (draws(x, POSIT8, rand_bits=2, n=4000) == hi).double().mean().item()
        below = (draws(float(np.nextafter(x, 0)), POSIT8, rand_bits=2, n=4000) == hi).double().mean().item()
        assert abs(below - (j - 1) / 4) < 0.05 and abs(at - j / 4) < 0.05
