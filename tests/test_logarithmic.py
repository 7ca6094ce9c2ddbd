"""Logarithmic (LNS) rounding against a reference built with mpmath at 256 bits (independent of the
decimal arithmetic the kernels' tables come from): every value, the floats on both sides of every
midpoint (log and linear rules), of the zero boundary, and points between, in every deterministic
mode, for float32 and float64. For lns8 the midpoint straddling is also proven with exact integers
(x^(2^(f+1)) against 2^(2k+1)). Then stochastic rounding: unbiased in the linear domain, probabilities
in multiples of 2^-r. Thread invariance is in test_stochastic.py, hypothesis properties in
test_properties.py, CUDA equality in test_cuda.py, each shared by every format family."""
import functools
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

import qsim
from qsim.formats import Logarithmic
from stochastic_checks import check_rand_bits_between, check_unbiased_between, draws

DIRECTED = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]
BITS = {np.float32: 24, np.float64: 53}  # significand bits, the implicit one included


def round_to_bits(value: mpmath.mpf, p: int, direction: str) -> float:
    """value (a 256-bit approximation) rounded to a p-bit significand: "nearest", "down" or "up"."""
    man, exp = value.man_exp
    e = int(man).bit_length() - 1 + int(exp)  # floor(log2 value)
    scaled = Fraction(int(man)) * Fraction(2) ** (int(exp) + p - 1 - e)
    integer = {"down": math.floor, "up": math.ceil, "nearest": round}[direction](scaled)
    return math.ldexp(integer, e - p + 1)


class LnsReference:
    """The format's values and rounding boundaries for one dtype, from mpmath at 256 bits.

    boundaries[i] lies between magnitude i-1 and magnitude i, where magnitude -1 is zero (so
    boundaries[0] is the zero boundary): the log midpoint 2^((k - 1/2)/2^f) or the linear one."""

    def __init__(self, fmt: Logarithmic, dtype):
        self.fmt, self.dtype, p = fmt, dtype, BITS[dtype]
        scale = 1 << fmt.frac_bits
        self.codes = np.arange(fmt.code_min, fmt.code_max + 1)
        with mpmath.workprec(256):
            exact = [mpmath.mpf(2) ** (mpmath.mpf(int(k)) / scale) for k in self.codes]
            if fmt.midpoint == "log":
                middles = [mpmath.mpf(2) ** (mpmath.mpf(2 * int(k) - 1) / (2 * scale)) for k in self.codes]
            else:
                middles = [exact[0] / 2] + [(a + b) / 2 for a, b in zip(exact[:-1], exact[1:])]
            self.values = np.array([round_to_bits(v, p, "nearest") for v in exact])
            self.below = np.array([round_to_bits(m, p, "down") for m in middles])
            self.above = np.array([round_to_bits(m, p, "up") for m in middles])
            self.middles = middles
        self.tie = self.below == self.above  # dyadic midpoints (frac_bits = 0, linear)

    def round(self, x: np.ndarray, mode: str) -> np.ndarray:
        a, negative = np.abs(x), x < 0
        top = len(self.values) - 1
        if mode in ("nearest", "nearest_away"):
            i = np.searchsorted(self.above, a, side="right")  # boundaries at or below a
            on_tie = (i > 0) & self.tie[np.maximum(i - 1, 0)] & (a == self.above[np.maximum(i - 1, 0)])
            if mode == "nearest":  # the even code: zero (code_min - 1) or magnitude index i-1 / i-2
                lower_code = np.where(i >= 2, self.codes[np.clip(i - 2, 0, top)], self.fmt.code_min - 1)
                i = np.where(on_tie & (lower_code % 2 == 0), i - 1, i)
            magnitude = np.where(i == 0, 0.0, self.values[np.clip(i - 1, 0, top)])
        else:
            j = np.searchsorted(self.values, a, side="right") - 1  # floor index; -1: below the smallest
            floor = np.where(j < 0, 0.0, self.values[np.clip(j, 0, top)])
            ceiling = self.values[np.clip(j + 1, 0, top)]
            inexact = floor != a
            away = {"toward_zero": np.zeros_like(inexact), "up": ~negative, "down": negative,
                    "odd": np.where(j < 0, True, self.codes[np.clip(j, 0, top)] % 2 == 0)}[mode]
            magnitude = np.where(inexact & away & (j < top), ceiling, floor)
        magnitude = np.where(a == 0, 0.0, magnitude)
        if not self.fmt.signed:
            magnitude = np.where(negative, 0.0, magnitude)
        return np.where(negative & (magnitude != 0), -magnitude, magnitude).astype(self.dtype)

    def probes(self) -> np.ndarray:
        v, lo, hi = self.values, self.below, self.above
        gaps = np.diff(v)
        points = [v, np.nextafter(v, 0), np.nextafter(v, np.inf), lo, hi, np.nextafter(lo, 0), np.nextafter(hi, np.inf),
                  v[:-1] + gaps / 4, v[:-1] + gaps / 2, v[:-1] + 3 * gaps / 4,
                  v[0] * np.array([0.0, 1e-3, 0.25, 0.5, 0.75]), v[-1] * np.array([1.001, 1.5, 4.0])]
        x = np.concatenate(points).astype(self.dtype)
        return np.concatenate([x, -x])


FORMATS = ["lns8", "lns<4,3,linear>", "lns16", "lns<5,10,linear>", "lns<2,0>", "lns<2,0,linear>",
           "lns<3,1,unsigned>", "lns<7,2,linear>", "lns<2,12>"]


@functools.cache
def reference(name: str, dtype) -> LnsReference:
    return LnsReference(qsim.formats.get(name), dtype)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", DIRECTED)
def test_every_value_and_both_sides_of_every_midpoint_round_as_exact_arithmetic_says(name, dtype, mode):
    ref = reference(name, dtype)
    x = ref.probes()
    got = qsim.quantize(torch.from_numpy(x), name, rounding=mode).numpy()
    expected = ref.round(x, mode)
    bad = got != expected
    assert not bad.any(), f"{name} {mode}: x={x[bad][:4]} got={got[bad][:4]} expected={expected[bad][:4]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lns8_threshold_floats_straddle_the_log_midpoints_exactly(dtype):
    """The floats on either side of each log midpoint m_k = 2^((2k-1)/16) satisfy below^16 < 2^(2k-1) <
    above^16 in exact integer arithmetic, and the kernel sends them to codes k-1 and k: every float
    input is classified exactly."""
    ref = reference("lns8", dtype)
    fmt = ref.fmt
    power = 1 << (fmt.frac_bits + 1)
    for k, below, above in zip(ref.codes, ref.below, ref.above):
        target = Fraction(2) ** int(2 * k - 1)
        assert Fraction(float(below)) ** power < target < Fraction(float(above)) ** power
    got_below = qsim.quantize(torch.from_numpy(ref.below.astype(dtype)), fmt).numpy()
    got_above = qsim.quantize(torch.from_numpy(ref.above.astype(dtype)), fmt).numpy()
    assert np.array_equal(got_below, np.concatenate([[0.0], ref.values[:-1]]).astype(dtype))
    assert np.array_equal(got_above, ref.values.astype(dtype))


def test_frac_bits_zero_with_linear_midpoints_breaks_ties_to_the_even_code():
    """lns<2,0,linear> holds 0, 0.5, 1, 2 (codes -2 = zero, -1, 0, 1): 0.75 ties between codes -1 and 0
    and goes to 1 (code 0); 1.5 goes to 1 as well (code 0 is even); 0.25 goes to 0."""
    x = torch.tensor([0.25, 0.75, 1.5, -0.75])
    assert qsim.quantize(x, "lns<2,0,linear>").tolist() == [0.0, 1.0, 1.0, -1.0]
    assert qsim.quantize(x, "lns<2,0,linear>", rounding="nearest_away").tolist() == [0.5, 1.0, 2.0, -1.0]


def test_log_and_linear_midpoints_differ_where_they_should():
    """Between 1 and 2 (lns<3,0>): the log midpoint is sqrt(2) ≈ 1.414, the linear one 1.5."""
    x = torch.tensor([1.45], dtype=torch.float64)
    assert qsim.quantize(x, "lns<3,0>").item() == 2.0
    assert qsim.quantize(x, "lns<3,0,linear>").item() == 1.0


def test_overflow_saturates_and_nan_stays_nan():
    largest = float(reference("lns8", np.float32).values[-1])  # the largest value rounded to float32
    x = torch.tensor([math.inf, -math.inf, 1e30, -1e30, math.nan])
    for mode in qsim.ROUNDING_MODES:
        got = qsim.quantize(x, "lns8", rounding=mode, seed=0)
        assert got[:4].abs().eq(largest).all() and got[4].isnan()
        assert torch.equal(torch.sign(got[:4]), torch.tensor([1.0, -1.0, 1.0, -1.0]))


def test_limits_and_decoding():
    fmt = qsim.formats.get("lns8")
    assert (fmt.bits_per_element, fmt.code_min, fmt.code_max) == (8.0, -63, 63)
    with mpmath.workprec(256):
        assert (fmt.max, fmt.min_positive) == (float(mpmath.mpf(2) ** (mpmath.mpf(63) / 8)),
                                               float(mpmath.mpf(2) ** (mpmath.mpf(-63) / 8)))
    assert fmt.decode(0b0_0000000) == 1.0 and fmt.decode(0b1_0001000) == -2.0 and fmt.decode(0b0_1000000) == 0.0
    assert len(fmt.values()) == 2 * 127 + 1 and np.all(np.diff(fmt.values()) > 0)


# Stochastic rounding: neighbours inside a binade, across a binade boundary, [0, min_positive], and
# powers of two (frac_bits = 0).
def neighbours(name: str, i: int) -> tuple[float, float]:
    values = qsim.formats.get(name).values()
    return float(values[i]), float(values[i + 1])


LNS8_ZERO = int(np.flatnonzero(qsim.formats.get("lns8").values() == 0)[0])
INTERVALS = [("lns8", *neighbours("lns8", LNS8_ZERO + 70)),  # inside a binade
             ("lns8", *neighbours("lns8", LNS8_ZERO + 64 + 7)),  # from 2^(7/8) to 2: across a binade
             ("lns8", *neighbours("lns8", LNS8_ZERO)),  # [0, min_positive]
             ("lns8", *neighbours("lns8", LNS8_ZERO - 5)),  # negative
             ("lns<3,0>", 4.0, 8.0), ("lns16", *neighbours("lns16", 40_000))]


@pytest.mark.parametrize("name,lo,hi", INTERVALS)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.77])
def test_stochastic_rounding_is_unbiased_in_the_linear_domain(name, lo, hi, fraction):
    check_unbiased_between(name, lo, hi, fraction)


@pytest.mark.parametrize("rand_bits", [1, 2, 5])
@pytest.mark.parametrize("name,lo,hi", [INTERVALS[0], INTERVALS[2], INTERVALS[4]])
def test_limited_random_bits_give_probabilities_in_multiples_of_two_to_minus_r(rand_bits, name, lo, hi):
    check_rand_bits_between(name, lo, hi, rand_bits)


def test_stochastic_probability_jumps_exactly_at_multiples_of_two_to_minus_r():
    """Between 4 and 8 with 2 random bits, x = 5 (f = 1/4 exactly) goes up with probability 1/4 and the
    float just below it with probability 0."""
    at = (draws(5.0, "lns<3,0>", rand_bits=2, n=20_000) == 8.0).double().mean().item()
    below = (draws(float(np.nextafter(5.0, 0)), "lns<3,0>", rand_bits=2, n=20_000) == 8.0).double().mean().item()
    assert abs(at - 0.25) < 0.02 and below == 0.0


@pytest.mark.parametrize("name", ["lns8", "lns16", "lns<2,0,linear>", "lns<2,12>", "lns<7,2,linear>"])
@pytest.mark.parametrize("nearest", [True, False])
def test_float32_bucket_records_count_thresholds_and_hold_the_neighbouring_mantissas(name, nearest):
    """The kernel's bucket records against a search of the sorted thresholds: for mantissas M at, around
    and between the thresholds, base + (M mod 2^(23-b) ≥ off) is the number of thresholds ≤ M, lo is
    the mantissa of the value with code j = base (2^23 past the binade), and hi that of j = base + 1
    (nearest tables) or of the value above the bucket's threshold (directed tables)."""
    from qsim.backends import logarithmic as backend

    fmt = qsim.formats.get(name)
    table = backend.table(fmt, torch.float32, nearest)
    width = int(table[5])
    records = table[8:].view(np.uint64)
    values = np.array(fmt.binade_values(23) + (1 << 23,) * 2, dtype=np.int64)
    thresholds = np.array(fmt.nearest_thresholds(23)[0] if nearest else values[1:1 << fmt.frac_bits], dtype=np.int64)
    m = np.concatenate([thresholds - 1, thresholds, thresholds + 1, np.arange(0, 1 << 23, 997)])
    m = m[(m >= 0) & (m < 1 << 23)]
    r = records[m >> width]
    off, lo, hi = (r >> np.uint64(48)) & np.uint64(0x7FFF), r & np.uint64(0xFFFFFF), (r >> np.uint64(24)) & np.uint64(0xFFFFFF)
    base = np.searchsorted(thresholds, (m >> width) << width, side="left")
    j = base + ((m & ((1 << width) - 1)) >= off.astype(np.int64))
    assert np.array_equal(j, np.searchsorted(thresholds, m, side="right"))
    assert np.array_equal((r >> np.uint64(63)).astype(np.int64), base & 1)
    assert np.array_equal(lo.astype(np.int64), values[base])
    above = base + 1 + ((off.astype(np.int64) < (1 << width)) & (not nearest))
    assert np.array_equal(hi.astype(np.int64), values[above])


def stochastic_expected(ref: LnsReference, x: np.ndarray, words: np.ndarray, rand_bits: int) -> np.ndarray:
    """Stochastic LNS rounding from the exact fractions: |x| between its neighbours lo < hi of the value
    list (0 and the smallest magnitude below it) goes to hi iff (ρ+1)·2^(32-r) ≤ (|x| - lo)/(hi - lo)·2^32,
    ρ = word >> (32 - r); at or above the largest magnitude it saturates; NaN stays; zero is +0."""
    values, shift, out = ref.values, 32 - rand_bits, []
    for v, word in zip(x.tolist(), words.tolist()):
        a = abs(v)
        if math.isnan(v):
            out.append(v)
            continue
        if a >= values[-1]:
            result = float(values[-1])
        else:
            j = int(np.searchsorted(values, a, side="right")) - 1
            lo, hi = (0.0 if j < 0 else float(values[j])), float(values[j + 1])
            fraction = (Fraction(a) - Fraction(lo)) / (Fraction(hi) - Fraction(lo))
            result = hi if ((word >> shift) + 1) << shift <= fraction * 2**32 else lo
        if result == 0.0 or (v < 0 and not ref.fmt.signed):
            out.append(0.0)
        else:
            out.append(-result if v < 0 else result)
    return np.array(out, dtype=ref.dtype)


def stochastic_probes(ref: LnsReference, words: np.ndarray, rand_bits: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs for the words: pinned next to where each word's decision flips (lo + (ρ+1)·2^(32-r)·2^-32·(hi - lo)
    and its float neighbours, in random gaps and in [0, smallest]), random bit patterns, subnormals, values
    from the smallest magnitude down by up to 2^-40 (beyond 2^-32 of it nothing rounds up), specials."""
    dtype, values, n = ref.dtype, ref.values, len(words)
    shift = 32 - rand_bits
    gaps = np.concatenate([[values[0]], np.diff(values)])
    i = rng.integers(0, len(gaps), size=n)
    lows = np.where(i == 0, 0.0, values[np.maximum(i - 1, 0)])
    flips = lows + ((words >> shift) + 1).astype(np.float64) * 2.0 ** shift / 2**32 * gaps[i]
    pinned = flips.astype(dtype)
    pinned[1::3] = np.nextafter(pinned[1::3], 0)
    pinned[2::3] = np.nextafter(pinned[2::3], np.inf)
    width = {np.float32: 32, np.float64: 64}[dtype]
    bits = {np.float32: np.uint32, np.float64: np.uint64}[dtype]
    patterns = rng.integers(0, 2**width - 1, size=n // 4, dtype=bits, endpoint=True).view(dtype)
    tiny = np.finfo(dtype).smallest_subnormal * rng.integers(1, 2**22, size=n // 8)
    small = values[0] * 2.0 ** -rng.uniform(0, 40, size=n // 8)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).max, np.finfo(dtype).tiny, values[-1], values[0]]
    x = np.concatenate([pinned, patterns, tiny.astype(dtype), small.astype(dtype), np.array(specials, dtype=dtype)])
    x = np.where(rng.random(len(x)) < 0.3, -x, x).astype(dtype)
    return x[:n]


@pytest.mark.parametrize("name", ["lns8", "lns16", "lns<4,4>", "lns<2,12>", "lns<3,1,unsigned>", "lns<2,0,linear>"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rand_bits", [32, 23, 5, 1])
def test_stochastic_results_are_those_of_the_exact_fractions_for_the_same_random_words(name, dtype, rand_bits):
    """Element for element against stochastic_expected with the kernel's Philox words, on inputs pinned at
    each word's flipping point and all the edge cases: the float32 kernel (permuted records for 2^(f+1) ≤
    32 buckets, gathered ones beyond) and the float64 one round exactly."""
    from test_stochastic_bits import philox_words

    ref, seed, n = reference(name, dtype), 0x2545F4914F6CDD1D, 3000
    words = philox_words(seed, n)
    x = stochastic_probes(ref, words, rand_bits, np.random.default_rng(rand_bits))
    got = qsim.quantize(torch.from_numpy(x), name, rounding="stochastic", seed=seed, rand_bits=rand_bits).numpy()
    expected = stochastic_expected(ref, x, words, rand_bits)
    bits = {np.float32: np.uint32, np.float64: np.uint64}[dtype]
    bad = got.view(bits) != expected.view(bits)
    assert not bad.any(), f"x={x[bad][:4]} words={words[bad][:4]} got={got[bad][:4]} expected={expected[bad][:4]}"


@pytest.mark.parametrize("name", ["lns8", "lns<2,0,linear>", "lns<4,4>", "lns<3,1,unsigned>", "lns<7,2,linear>"])
@pytest.mark.parametrize("nearest", [True, False])
def test_float32_permuted_records_count_thresholds_and_hold_the_neighbouring_mantissas(name, nearest):
    """The permuted records (2^(f+1) ≤ 32 buckets of width 2^-(f+1), for the CPU's register permutes)
    against a search of the sorted thresholds, as the packed records above: j = base + (M mod 2^width ≥
    off), lo = V(base), hi = V(base + 1) or, in directed tables with a threshold in the bucket, V(base + 2)."""
    from qsim.backends import logarithmic as backend

    fmt = qsim.formats.get(name)
    table = backend.table(fmt, torch.float32, nearest)
    start, width = int(table[6]), int(table[7])
    assert start > 0 and width == 23 - (fmt.frac_bits + 1)
    lo_words, hi_words, off_odd = table[start:start + 96].astype(np.int64).reshape(3, 32)
    values = np.array(fmt.binade_values(23) + (1 << 23,) * 2, dtype=np.int64)
    thresholds = np.array(fmt.nearest_thresholds(23)[0] if nearest else values[1:1 << fmt.frac_bits], dtype=np.int64)
    m = np.concatenate([thresholds - 1, thresholds, thresholds + 1, np.arange(0, 1 << 23, 997)])
    m = m[(m >= 0) & (m < 1 << 23)]
    bucket = m >> width
    off, odd = off_odd[bucket] & 0x7FFFFFFF, off_odd[bucket] >> 31
    base = np.searchsorted(thresholds, bucket << width, side="left")
    assert np.array_equal(base + ((m & ((1 << width) - 1)) >= off), np.searchsorted(thresholds, m, side="right"))
    assert np.array_equal(odd, base & 1)
    assert np.array_equal(lo_words[bucket], values[base])
    assert np.array_equal(hi_words[bucket], values[base + 1 + ((off < (1 << width)) & (not nearest))])


def test_lns16_has_no_permuted_records_and_float64_tables_none_at_all():
    from qsim.backends import logarithmic as backend

    assert backend.table(qsim.formats.get("lns16"), torch.float32, False)[6] == 0
    assert backend.table(qsim.formats.get("lns8"), torch.float64, False)[6] == 0


@pytest.mark.parametrize("name", ["lns8", "lns16", "lns<4,4>", "lns<2,0,linear>", "lns<3,1,unsigned>"])
@pytest.mark.parametrize("mode", DIRECTED)
def test_float32_bit_patterns_and_subnormals_round_as_exact_arithmetic_says(name, mode):
    """Random float32 bit patterns (every binade, subnormals of float32 included) and the specials, in
    every deterministic mode, against the exact reference; NaN stays NaN."""
    ref, rng = reference(name, np.float32), np.random.default_rng(7)
    patterns = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    subnormals = (np.finfo(np.float32).smallest_subnormal * rng.integers(1, 2**23, size=2000)).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float32).max, np.finfo(np.float32).tiny],
                        dtype=np.float32)
    x = np.concatenate([patterns, subnormals, -subnormals, specials])
    got = qsim.quantize(torch.from_numpy(x), name, rounding=mode).numpy()
    nan = np.isnan(x)
    assert np.isnan(got[nan]).all()
    expected = ref.round(x[~nan], mode)
    bad = got[~nan].view(np.uint32) != expected.view(np.uint32)
    assert not bad.any(), f"x={x[~nan][bad][:4]} got={got[~nan][bad][:4]} expected={expected[bad][:4]}"


@pytest.mark.parametrize("name", ["lns8", "lns16"])
def test_stochastic_on_a_large_tensor_uses_each_elements_own_word(name):
    """Past the size where the kernel splits the work between threads (and with a ragged end), element i
    still rounds with word i: sampled elements, the last ones included, against stochastic_expected."""
    from test_stochastic_bits import philox_words

    ref, seed, n = reference(name, np.float32), 77, 100_003
    x = (np.random.default_rng(3).standard_normal(n) * 3).astype(np.float32)
    got = qsim.quantize(torch.from_numpy(x), name, rounding="stochastic", seed=seed).numpy()
    words = philox_words(seed, n)
    i = np.concatenate([np.random.default_rng(4).choice(n, 1500, replace=False), np.arange(n - 40, n)])
    assert np.array_equal(got[i].view(np.uint32), stochastic_expected(ref, x[i], words[i], 32).view(np.uint32))
