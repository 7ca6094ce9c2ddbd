"""Every format of at most 16 bits, every rounding mode except stochastic: every value, every midpoint
and the quarter points between neighbours, against an exact neighbour-search reference (tests/reference.py),
for float32 and float64 inputs. Then overflow, in every mode, against the rules of IEEE 754 §7.4.
Nearest rounding (which has a path of its own in the CPU kernel) is also checked on the whole input range:
random bit patterns, subnormals, ±0, ±inf, NaN, the ties just past the largest values, and random formats;
and it must not depend on the FPU's rounding mode or flush-to-zero setting."""
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import qsim
from float_environment import flushing_subnormals, rounding_downward
from reference import GridReference

DIRECTED = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]
SMALL_FORMATS = [name for name in qsim.formats.list() if isinstance(qsim.formats.get(name), qsim.formats.GridFormat)
                 and qsim.formats.get(name).bits_per_element <= 16] + [
    "fixed<8,4,unsigned>", "fixed<6,-2>", "fixed<8,8,unsigned>", "float<e3m2,nosub>", "float<e4m3,fnuz,nosub>",
    "float<e5m0>", "float<e1m3,finite>", "float<e8m0,fn>", "float<e2m0,finite>",
    # Grids reaching into float32's subnormals (exp-8 fnuz: emin = -127), and overflow variants.
    "float<e8m7,fnuz>", "float<e8m7,fnuz,nosub>", "float<e8m3,nosub>", "float<e4m3,nan>", "float<e5m2,saturate>",
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


def step_past(fmt, limit: float) -> float:
    """The grid step just past a largest value `limit`: the quantum of its binade (of the subnormals
    when it is one, as in float<e1m1>); fixed point: the constant quantum."""
    grid = fmt.grid()
    if grid.emin >= 4096 or limit == 0:
        return fmt.eps
    return math.ldexp(1.0, max(math.floor(math.log2(abs(limit))), grid.emin) - grid.man)


def nearest_everywhere(fmt, ref: GridReference, x: np.ndarray, dtype) -> np.ndarray:
    """Exact nearest-even rounding of any x (exact in float64), overflow and specials included, as `dtype`:
    in range by neighbour search; past the largest value of a sign, x rounds back to it below the midpoint
    to the next step of the unbounded grid (and at the midpoint when that value's significand is even),
    else overflows: to the limit (saturate), ±inf or NaN. NaN stays NaN; ±inf stays where the format has
    inf, else overflows. A zero result is -0 only for a negative x in a format with -0. A result beyond
    dtype's range (e8 "finite" grids reach 2^128) overflows too, with dtype's largest value as the limit."""
    grid = fmt.grid()
    inside = (x >= ref.bottom) & (x <= ref.top)
    result = np.full_like(x, np.nan)
    result[inside] = ref.round(x[inside], "nearest")
    for sign, limit, lsb in ((1.0, ref.top, ref.lsb[-1]), (-1.0, ref.bottom, ref.lsb[0])):
        beyond = ~np.isnan(x) & (sign * x > sign * limit)
        if grid.overflow == "saturate":
            over = limit
        else:
            over = sign * math.inf if grid.overflow == "inf" else math.nan
        tie = limit + sign * step_past(fmt, limit) / 2
        back = (sign * x < sign * tie) | ((x == tie) & (lsb == 0))
        result[beyond] = np.where(back[beyond], limit, over)
        if grid.has_inf:
            result[x == sign * math.inf] = sign * math.inf
    past_dtype = np.isfinite(result) & (np.abs(result) > np.finfo(dtype).max)
    if past_dtype.any():
        over = {"saturate": float(np.finfo(dtype).max), "inf": math.inf, "nan": math.nan}[grid.overflow]
        result[past_dtype] = np.sign(result[past_dtype]) * over
    zero_sign = grid.neg_zero & np.signbit(x) & (result == 0)
    return np.where(zero_sign, -0.0, np.where(result == 0, 0.0, result)).astype(dtype)


def whole_range_probes(fmt, ref: GridReference, dtype, rng) -> np.ndarray:
    """Random bit patterns (every exponent: subnormals, inf, NaN), log-uniform magnitudes around the
    format's range, ±0, ±inf, NaN, and the ties just past the largest values with their neighbours."""
    width = np.uint32 if dtype == np.float32 else np.uint64
    patterns = rng.integers(0, np.iinfo(width).max, size=20_000, dtype=width, endpoint=True).view(dtype)
    subnormals = (rng.integers(1, 1 << 23, size=2_000) * 2.0**-149).astype(dtype)
    widest = max(ref.top, -ref.bottom)
    low, high = math.log2(fmt.min_positive) - 3, math.log2(min(widest * 4, 3e38))
    spread = np.exp2(rng.uniform(low, high, size=20_000)) * rng.choice([-1.0, 1.0], size=20_000)
    edges = []
    for limit, direction in ((ref.top, 1.0), (ref.bottom, -1.0)):
        step = step_past(fmt, limit)
        for offset in (step / 4, step / 2, 3 * step / 4, step):
            with np.errstate(over="ignore"):  # past float32's range: inf, a probe as good as any
                edge = dtype(limit + direction * offset)
            edges += [edge, np.nextafter(edge, dtype(np.inf)), np.nextafter(edge, dtype(-np.inf))]
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 2.0**-149, -(2.0**-149)]
    return np.concatenate([patterns, subnormals, -subnormals, spread.astype(dtype), np.array(edges + special, dtype=dtype)])


def assert_same_bits(got: np.ndarray, expected: np.ndarray, x: np.ndarray, what: str):
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN mismatch at x={x[np.isnan(got) != nan][:4]}"
    width = np.uint32 if got.dtype == np.float32 else np.uint64
    bad = got[~nan].view(width) != expected[~nan].view(width)
    assert not bad.any(), f"{what}: x={x[~nan][bad][:4]} got={got[~nan][bad][:4]} expected={expected[~nan][bad][:4]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_over_the_whole_input_range_matches_exact_rounding(case, dtype):
    """Nearest-even on random bit patterns, subnormal inputs, specials and the ties past the largest
    values, bit for bit (signed zeros included) against exact arithmetic."""
    fmt, ref = case
    if fmt.grid().overflow == "wrap":
        pytest.skip("wrap-around is tested in test_fixed_point_wraps_modulo_two_to_the_wl")
    x = whole_range_probes(fmt, ref, dtype, np.random.default_rng(7))
    with np.errstate(invalid="ignore", over="ignore"):
        expected = nearest_everywhere(fmt, ref, x.astype(np.float64), dtype)
    got = qsim.quantize(torch.from_numpy(x), fmt).numpy()
    assert_same_bits(got, expected, x, f"{fmt.name} {np.dtype(dtype).name}")


@st.composite
def random_grid_formats(draw):
    """Floating point of up to 12 bits with every special/overflow/subnormal variant, or saturating
    fixed point, as long as the combination is a valid format."""
    if draw(st.booleans()):
        exp = draw(st.integers(1, 8))
        kwargs = dict(exp=exp, man=draw(st.integers(0, 11 - exp)), subnormals=draw(st.booleans()),
                      special=draw(st.sampled_from(["ieee", "fn", "fnuz", "finite"])),
                      overflow=draw(st.sampled_from([None, "saturate", "inf", "nan"])))
        make = qsim.FloatingPoint
    else:
        wl = draw(st.integers(1, 12))
        signed = draw(st.booleans())
        kwargs = dict(wl=wl, fl=draw(st.integers(-20, wl - 1 if signed else wl)), signed=signed)
        make = qsim.FixedPoint
    try:
        return make(**kwargs)
    except ValueError:
        assume(False)


@settings(max_examples=40, deadline=None)
@given(fmt=random_grid_formats(), seed=st.integers(0, 2**32 - 1))
def test_nearest_on_random_formats_matches_exact_rounding(fmt, seed):
    """Random FloatingPoint(exp, man, subnormals, special, overflow) and FixedPoint grids: nearest-even of
    float32 and float64 inputs over the whole range, bit for bit against exact arithmetic."""
    ref = GridReference(fmt)
    rng = np.random.default_rng(seed)
    for dtype in (np.float32, np.float64):
        with np.errstate(invalid="ignore", over="ignore"):
            x = np.concatenate([whole_range_probes(fmt, ref, dtype, rng)[::8], ref.probes(dtype)])
            expected = nearest_everywhere(fmt, ref, x.astype(np.float64), dtype)
        got = qsim.quantize(torch.from_numpy(x), fmt).numpy()
        assert_same_bits(got, expected, x, f"{fmt.name} {np.dtype(dtype).name}")


@pytest.mark.parametrize("environment", ["flush_denormal", "round_down"])
@pytest.mark.parametrize("name", ["bf16", "fp8_e4m3", "fixed8_4", "float<e8m7,fnuz>"])
def test_nearest_does_not_depend_on_the_fpu_environment(environment, name):
    """With subnormals flushed (torch.set_flush_denormal) or the FPU rounding downward, nearest still
    rounds to nearest-even and keeps subnormal inputs: the same bits as in the default environment."""
    fmt = qsim.formats.get(name)
    ref = GridReference(fmt)
    rng = np.random.default_rng(3)
    probes = ref.probes(np.float32)
    probes = rng.choice(probes, size=min(len(probes), 12_000), replace=False)
    x = np.concatenate([probes, (rng.integers(1, 1 << 23, size=4096) * 2.0**-149).astype(np.float32)])
    x = torch.from_numpy(np.concatenate([x, -x]))  # below the parallel threshold: rounded on this thread
    expected = qsim.quantize(x, fmt)
    with flushing_subnormals() if environment == "flush_denormal" else rounding_downward():
        got = qsim.quantize(x, fmt)
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
    if name in ("bf16", "float<e8m7,fnuz>"):
        assert (expected[x.abs() < 2.0**-126] != 0).any()  # the subnormal inputs did matter
