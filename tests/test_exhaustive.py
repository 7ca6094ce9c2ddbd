"""Every format of at most 16 bits, every rounding mode except stochastic: every value, every midpoint
and the quarter points between neighbours, against an exact neighbour-search reference (tests/reference.py),
for float32 and float64 inputs. Then overflow, in every mode, against the rules of IEEE 754 §7.4."""
import math
import numpy as np
import pytest
import torch

import qsim
from reference import GridReference

DIRECTED = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]
SMALL_FORMATS = [name for name in qsim.formats.list() if isinstance(qsim.formats.get(name), qsim.formats.GridFormat)
                 and qsim.formats.get(name).bits_per_element <= 16] + [
    "fixed<8,4,unsigned>", "fixed<6,-2>", "fixed<8,8,unsigned>", "float<e3m2,nosub>", "float<e4m3,fnuz,nosub>",
    "float<e5m0>", "float<e1m3,finite>", "float<e8m0,fn>", "float<e2m0,finite>",
]


@pytest.fixture(scope="module", params=SMALL_FORMATS)
def case(request):
    fmt = qsim.formats.get(request.param)
    return fmt, GridReference(fmt)


@pytest.mark.parametrize("mode", DIRECTED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_value_and_midpoint_rounds_as_exact_arithmetic_says(case, mode, dtype):
    fmt, ref = case
    x = ref.probes(dtype)
    x = np.concatenate([x, -x])
    x = x[(x >= ref.bottom) & (x <= ref.top)]
    got = qsim.quantize(torch.from_numpy(x), fmt, rounding=mode).numpy()
    expected = ref.round(x.astype(np.float64), mode).astype(dtype)
    bad = got != expected
    assert not bad.any(), f"{fmt.name} {mode}: x={x[bad][:4]} got={got[bad][:4]} expected={expected[bad][:4]}"


def test_signed_zero_follows_the_format(case):
    """-0 and tiny negatives keep the sign in IEEE-like formats; fnuz floats and fixed point have no -0."""
    fmt, _ = case
    x = torch.tensor([-0.0, -fmt.min_positive / 4])
    got = qsim.quantize(x, fmt)
    keeps_sign = isinstance(fmt, qsim.FloatingPoint) and fmt.special != "fnuz"
    assert got.eq(0).all()
    assert torch.signbit(got).tolist() == [keeps_sign, keeps_sign]


@pytest.mark.parametrize("mode", DIRECTED)
def test_overflow_follows_ieee_7_4_or_saturates(case, mode):
    """Finite values beyond the largest one: saturate → ±max; inf/nan → ±inf/NaN unless the mode rounds
    that sign toward zero, which gives ±max."""
    fmt, ref = case
    grid = fmt.grid()
    if grid.overflow == "wrap":
        pytest.skip("wrap-around is tested in test_fixed_point_wraps_modulo_two_to_the_wl")
    for sign in (1.0, -1.0):
        limit = ref.top if sign > 0 else -ref.bottom
        if limit == 0:
            continue
        x = torch.tensor([sign * limit * 4, sign * limit * 1.5], dtype=torch.float64)
        got = qsim.quantize(x, fmt, rounding=mode)
        toward_zero = mode in ("toward_zero", "odd") or (mode == "up" and sign < 0) or (mode == "down" and sign > 0)
        if grid.overflow == "saturate" or toward_zero:
            assert got.tolist() == [sign * limit] * 2
        elif grid.overflow == "inf":
            assert got.tolist() == [sign * math.inf] * 2
        else:
            assert got.isnan().all()


def test_infinities_follow_the_format(case):
    fmt, ref = case
    got = qsim.quantize(torch.tensor([math.inf, -math.inf, math.nan]), fmt)
    grid = fmt.grid()
    assert math.isnan(got[2])
    if grid.has_inf:
        assert got[:2].tolist() == [math.inf, -math.inf]
    elif grid.overflow == "saturate":
        assert got[:2].tolist() == [ref.top, ref.bottom]
    else:
        assert got[:2].isnan().all()


@pytest.mark.parametrize("name", ["fixed<8,4,wrap>", "fixed<6,2,unsigned,wrap>", "fixed<16,3,wrap>"])
@pytest.mark.parametrize("mode", DIRECTED)
def test_fixed_point_wraps_modulo_two_to_the_wl(name, mode):
    """Wrap: round as if unbounded, then keep the integer code modulo 2^wl (two's complement if signed)."""
    fmt = qsim.formats.get(name)
    unbounded = qsim.FixedPoint(40, fmt.fl)
    ref = GridReference(qsim.FixedPoint(min(fmt.wl + 3, 16), fmt.fl, signed=True))
    x = torch.from_numpy(ref.probes())
    x = torch.cat([x, -x])
    rounded = qsim.quantize(x, unbounded, rounding=mode)
    codes = (rounded * 2.0**fmt.fl).round().to(torch.int64) % (1 << fmt.wl)
    if fmt.signed:
        codes = torch.where(codes >= 1 << (fmt.wl - 1), codes - (1 << fmt.wl), codes)
    assert torch.equal(qsim.quantize(x, fmt, rounding=mode), codes.double() * 2.0**-fmt.fl)
