"""Stochastic rounding bit for bit: with a fixed seed, every element's result is the one an exact reference
gives from the same random word. The reference knows the format only by its list of values
(tests/reference.py) and the random words only through the scalar Philox4x32-10 (checked against
Random123's known answers in test_stochastic.py): element i rounds away from zero iff
(word_i >> (32 - r)) < (floor(f·2^32) >> (32 - r)), f the exact fraction of the gap between |x|'s
neighbours that |x| lies above the lower one, r the number of random bits. Inputs: random bit patterns,
values spread over every binade, ties, exact grid values and their float neighbours, subnormals of the
format and of the tensor's dtype, the largest values, overflow and specials, in float32 and float64."""
from fractions import Fraction

import numpy as np
import pytest
import torch

import qsim
from float_environment import flushing_subnormals
from reference import GridReference

SEED = 0x5DEECE66D
N = 6000


def philox_words(seed: int, n: int) -> np.ndarray:
    from qsim import _C

    key = [seed & 0xFFFFFFFF, seed >> 32]
    return np.array([w for g in range((n + 3) // 4) for w in _C.philox4x32_10([g, 0, 0, 0], key)][:n], dtype=np.uint64)


def expected_value(x: float, word: int, shift: int, fmt, ref: GridReference, grid) -> float:
    """x stochastically rounded with this word: neighbours from the value list, overflow and specials as the
    format's grid says (stochastic rounding never rounds toward zero, so overflow is not clipped unless the
    format saturates)."""
    if np.isnan(x):
        return float("nan")
    if np.isinf(x) and grid.has_inf:
        return x
    top, bottom = ref.top, ref.bottom
    overflow = (top if x > 0 else bottom) if grid.overflow == "saturate" else (
        (float("inf") if x > 0 else -float("inf")) if grid.overflow == "inf" else float("nan"))
    if np.isinf(x):
        return overflow
    values = ref.values
    if x > top:  # the grid goes on one step of the top binade's spacing, and that step overflows
        lo, hi = top, top + (top - values[-2])
    elif x < bottom:
        lo, hi = bottom - (values[1] - bottom), bottom
    else:
        i = int(np.searchsorted(values, x, side="left"))
        if values[i] == x:
            return x
        lo, hi = values[i - 1], values[i]
    if not lo <= x <= hi:  # beyond the first step past the largest value: always overflow
        return overflow
    toward_zero, away = (lo, hi) if x > 0 else (hi, lo)
    fraction = (Fraction(x) - Fraction(toward_zero)) / (Fraction(away) - Fraction(toward_zero))
    r32 = int(fraction * 2**32)  # floor: fraction ≥ 0
    result = away if (word >> shift) < (r32 >> shift) else toward_zero
    if result > top or result < bottom:
        return overflow
    return result


def probes(ref: GridReference, rng: np.random.Generator, dtype) -> np.ndarray:
    values = ref.values
    some = values if len(values) <= 2000 else np.concatenate([values[:500], rng.choice(values, 1000), values[-500:]])
    finite_bits = {np.float32: np.uint32, np.float64: np.uint64}[dtype]
    width = np.dtype(finite_bits).itemsize * 8
    patterns = rng.integers(0, 2**width - 1, size=N // 6, dtype=finite_bits, endpoint=True).view(dtype)
    gaps = np.diff(values)
    i = rng.integers(0, len(gaps), size=N // 2)
    spread = values[i] + gaps[i] * rng.random(N // 2)  # random fractions, all 52 bits where dtype is float64
    ties = values[:-1] + gaps / 2
    tiny = np.finfo(dtype).smallest_subnormal * rng.integers(1, 2**20, size=200)
    top, bottom = ref.top, ref.bottom
    edges = [top, bottom, top + (top - values[-2]) * np.array([0.25, 0.5, 0.999, 1.0, 1.5, 1e3]),
             bottom - (values[1] - bottom) * np.array([0.25, 0.5, 0.999, 1.0, 1.5, 1e3]),
             [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).max, -np.finfo(dtype).max]]
    with np.errstate(over="ignore", invalid="ignore"):  # signalling NaNs widen; past float32's largest: inf
        x = np.concatenate([patterns.astype(np.float64), spread, ties[:N // 6], ties[-N // 6:], some, tiny, -tiny] +
                           [np.ravel(e) for e in edges]).astype(dtype)
    neighbours = np.concatenate([np.nextafter(some.astype(dtype), dtype(np.inf)),
                                 np.nextafter(some.astype(dtype), dtype(-np.inf))])
    return np.concatenate([x, neighbours])


PINNED = 2000


def pinned(ref: GridReference, words: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values whose fraction of a gap, scaled by 2^32, is the element's word (rounds toward zero) or one more
    (rounds away): they catch any error in the low bits of the fraction or in the comparison."""
    values = ref.values
    i = rng.integers(0, len(values) - 1, size=len(words))
    lo, gap = values[i], np.diff(values)[i]
    low = np.where(lo >= 0, lo, lo + gap)  # the neighbour toward zero
    step = np.where(lo >= 0, gap, -gap)
    return low + (words.astype(np.float64) + rng.integers(0, 2, size=len(words))) * 2.0**-32 * step


@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fp8_e5m2", "fp8_e4m3fnuz", "fp16", "fp6_e3m2", "fp4_e2m1",
                                  "int8", "fixed8_4", "int4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stochastic_results_are_those_of_the_exact_reference_for_the_same_random_words(name, dtype):
    fmt = qsim.formats.get(name)
    ref, grid = GridReference(fmt), fmt.grid()
    rng = np.random.default_rng(sum(map(ord, name)))
    x = probes(ref, rng, dtype)
    words = philox_words(SEED, len(x) + PINNED)
    if dtype == np.float64:  # fractions (w + 0 or 1)·2^-32 of a gap, w the element's own word: exact in float64
        x = np.concatenate([x, pinned(ref, words[len(x):], rng)])
    else:
        words = words[:len(x)]
    for rand_bits in (32, 24, 7, 1):
        shift = 32 - rand_bits
        got = qsim.quantize(torch.from_numpy(x), fmt, rounding="stochastic", seed=SEED, rand_bits=rand_bits).numpy()
        expected = np.array([expected_value(float(v), int(w), shift, fmt, ref, grid) for v, w in zip(x, words)])
        expected_sign = np.where(expected == 0, np.signbit(x) & grid.neg_zero, np.signbit(expected))
        same = (got == expected) | (np.isnan(got) & np.isnan(expected))
        same &= np.signbit(got) == np.where(np.isnan(expected), np.signbit(got), expected_sign)
        bad = np.flatnonzero(~same)
        assert bad.size == 0, (f"{name} {np.dtype(dtype).name} rand_bits={rand_bits}: x={x[bad[:5]].tolist()} "
                               f"words={words[bad[:5]].tolist()} got={got[bad[:5]].tolist()} "
                               f"expected={expected[bad[:5]].tolist()}")


@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fixed8_4"])
def test_stochastic_does_not_depend_on_flushing_subnormals(name):
    """With subnormals flushed (torch.set_flush_denormal), stochastic rounding still keeps subnormal inputs
    and results: the same bits as in the default environment."""
    rng = np.random.default_rng(5)
    tiny = (rng.integers(1, 1 << 23, size=4096) * 2.0**-149).astype(np.float32)
    x = np.concatenate([tiny, rng.standard_normal(4096).astype(np.float32)])
    x = torch.from_numpy(np.concatenate([x, -x]))  # below the parallel threshold: rounded on this thread
    expected = qsim.quantize(x, name, rounding="stochastic", seed=SEED)
    with flushing_subnormals():
        got = qsim.quantize(x, name, rounding="stochastic", seed=SEED)
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
    if name == "bf16":
        assert (expected[x.abs() < 2.0**-126] != 0).any()  # the subnormal inputs did matter
