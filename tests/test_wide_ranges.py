"""Formats whose values reach past what the tensor's dtype holds stay finite and in range: block formats
whose scaled grid passes float32's largest value (MX with any scale rule, MXINT8, wide BFP) and wide
wrap-around fixed point (codes of up to 64 bits). The rule (docs/overflow.md): a result is the format's
value; where the dtype cannot hold it, the format's value nearest to it toward zero that the dtype holds.
Oracles: exact arithmetic with fractions and the element formats' decoded value lists."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

import qsim
from reference import block_round, round_to_integer

DETERMINISTIC = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]
FLOAT32_MAX = Fraction(float(np.finfo(np.float32).max))
PRECISION = {torch.float32: 24, torch.float64: 53}


def truncated(v: Fraction, bits: int) -> Fraction:
    """v with its significand cut toward zero to `bits` bits."""
    if v == 0:
        return v
    shift = math.floor(math.log2(abs(v))) - (bits - 1)
    while abs(v) >= Fraction(2) ** (shift + bits):  # (log2 of a Fraction through float may be one off)
        shift += 1
    while abs(v) < Fraction(2) ** (shift + bits - 1):
        shift -= 1
    unit = Fraction(2) ** shift
    return math.trunc(v / unit) * unit


# ---- Wrap-around fixed point with wide codes ----------------------------------------------------------

WIDE_WRAPS = ["fixed<63,32,unsigned,wrap>", "fixed<64,32,unsigned,wrap>", "fixed<64,0,wrap>", "fixed<63,32,wrap>",
              "fixed<32,0,unsigned,wrap>", "fixed<25,-3,unsigned,wrap>", "fixed<54,10,unsigned,wrap>",
              "fixed<64,-10,unsigned,wrap>", "fixed<64,60,unsigned,wrap>"]


def wrap_oracle(x: float, fmt, mode: str, dtype) -> float:
    """round, keep the code modulo 2^wl (two's complement if signed), the value truncated to the dtype's
    precision toward zero and limited to the format's largest magnitude of that sign the dtype holds."""
    if math.isnan(x) or math.isinf(x):
        return math.nan
    code = round_to_integer(Fraction(x) * Fraction(2) ** fmt.fl, mode) % (1 << fmt.wl)
    if fmt.signed and code >> (fmt.wl - 1):
        code -= 1 << fmt.wl
    value = truncated(code * Fraction(2) ** -fmt.fl, PRECISION[dtype])
    grid = fmt.grid()
    limit = truncated(grid.max_pos if value >= 0 else grid.max_neg, PRECISION[dtype])
    if dtype == torch.float32:
        limit = min(limit, FLOAT32_MAX)
    return float(max(min(value, limit), -limit))


def wrap_probes(fmt, dtype) -> torch.Tensor:
    """Values around every power of two the code can hold, zero, ±1 quantum, the limits, huge values."""
    rng = np.random.default_rng(fmt.wl * 1000 + fmt.fl)
    quantum = 2.0 ** -fmt.fl
    top = float(fmt.grid().max_pos)
    base = [0.0, quantum, quantum / 3, 1.5 * quantum, top, top * 2, 1e30, 3.0e38]
    for e in range(-fmt.fl - 2, fmt.wl - fmt.fl + 3):
        base += [2.0**e, 2.0**e * (1 + 2.0**-23), 2.0**e * (1 - 2.0**-24), 2.0**e * 1.75]
    base += list(rng.uniform(0, top, 40)) + list(2.0 ** rng.uniform(-fmt.fl, fmt.wl - fmt.fl, 40))
    x = torch.tensor(base, dtype=torch.float64)
    x = torch.cat([x, -x]).to(dtype)
    return x[torch.isfinite(x)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", WIDE_WRAPS)
def test_wide_wrap_around_equals_exact_modular_arithmetic_and_stays_in_range(spec, dtype):
    fmt = qsim.formats.get(spec)
    x = wrap_probes(fmt, dtype)
    grid = fmt.grid()
    for mode in DETERMINISTIC:
        got = qsim.quantize(x, fmt, rounding=mode)
        expected = [wrap_oracle(v, fmt, mode, dtype) for v in x.tolist()]
        assert got.tolist() == expected, (spec, mode)
    got = qsim.quantize(x, fmt, rounding="stochastic", seed=3).double()
    assert torch.isfinite(got).all()
    assert (got <= float(grid.max_pos)).all() and (got >= -float(grid.max_neg)).all()


def test_wrap_around_turns_inf_and_nan_into_nan():
    x = torch.tensor([math.inf, -math.inf, math.nan])
    assert qsim.quantize(x, "fixed<64,32,unsigned,wrap>").isnan().all()


# ---- Block formats near float32's largest value -------------------------------------------------------

NEAR_MAX_BLOCKS = ["mxint8", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp4", "mx<fp8_e4m3,ceil>",
                   "mx<fp8_e4m3,rceil>", "mx<fp8_e4m3,even>", "mx<fp8_e5m2,ceil>", "mx<fixed<8,6>,ceil>",
                   "mx<fixed<8,6>,rceil>", "mx<fp4_e2m1,even>", "bfp8", "bfp<32>"]


def near_max_blocks(seed: int) -> np.ndarray:
    """Blocks of 32 whose largest magnitude lies in float32's top binade (or just below a power of two)."""
    rng = np.random.default_rng(seed)
    largest = float(np.finfo(np.float32).max)
    rows = []
    for amax in (largest, 3.3e38, 2.0**127 * 1.97, 2.0**127 * 1.5, 2.0**127, 2.0**126 * 1.99):
        row = rng.uniform(-amax, amax, 32)
        row[:6] = [amax, -amax, amax * 0.999, -amax * 0.97, amax * 0.5, amax * 1e-3]
        rows.append(rng.permutation(row))
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("spec", NEAR_MAX_BLOCKS)
def test_blocks_near_float32_max_stay_finite_and_equal_exact_arithmetic(spec):
    fmt = qsim.formats.get(spec)
    x = near_max_blocks(len(spec))
    if fmt.block_size is None:  # one exponent per tensor: each row on its own
        rows = [qsim.quantize(torch.from_numpy(row), fmt, rounding=m).numpy() for row in x for m in DETERMINISTIC]
    else:
        rows = [qsim.quantize(torch.from_numpy(x), fmt, rounding=m).numpy()[i] for i in range(len(x))
                for m in DETERMINISTIC]
    expected = [block_round(fmt, row, m) for row in x for m in DETERMINISTIC]
    for got, want, (i, mode) in zip(rows, expected, [(i, m) for i in range(len(x)) for m in DETERMINISTIC]):
        assert np.isfinite(got).all(), (spec, mode, i)
        assert np.array_equal(got, want), (spec, mode, i, got[got != want][:4], want[got != want][:4])
    stochastic = qsim.quantize(torch.from_numpy(x), fmt, rounding="stochastic", seed=1)
    assert torch.isfinite(stochastic).all()


@pytest.mark.parametrize("spec", ["mxfp8_e4m3", "mx<fp8_e4m3,ceil>", "mxint8", "bfp<32>"])
def test_blocks_near_float64_max_scale_within_the_format(spec):
    """float64 tensors beyond float32's range: the scale saturates at the format's largest, elements saturate."""
    x = torch.tensor([1e300, -1e300] + [1.0] * 30, dtype=torch.float64)
    got = qsim.quantize(x, spec)
    fmt = qsim.formats.get(spec)
    grid = fmt.element_grid()
    assert torch.isfinite(got).all()
    assert got.abs().max().item() <= float(max(grid.max_pos, grid.max_neg)) * 2.0 ** fmt.scale_range[1]
