"""Hypothesis fuzzing of quantize: random formats (registered and generated), every rounding mode, shapes
with strided, transposed and expanded views, float32/float64, and values drawn from the edges (±0, ±inf,
NaN, the format's values and midpoints, just past its largest values, float subnormals, huge values),
against exact references that share nothing with the kernels: neighbour search over decoded values
(tests/reference.py) with docs/overflow.md's rule past the largest values, and exact block arithmetic."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import qsim
from reference import GridReference, block_round

DETERMINISTIC = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]
NAMED = [name for name in qsim.formats.list() if isinstance(qsim.formats.get(name), qsim.formats.GridFormat)
         and qsim.formats.get(name).bits_per_element <= 16 and qsim.formats.get(name).grid().overflow != "wrap"]
BLOCKS = ["mx<fp8_e4m3,4>", "mx<fp4_e2m1,4,ceil>", "mx<fp6_e3m2,3,rceil>", "mx<fixed<8,6>,4,even>", "mx<fp8_e5m2,2>",
          "bfp<8,4>", "bfp<6,5>"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def float_formats(draw):
    """A random FloatingPoint of up to 12 bits, any special encoding, overflow rule and subnormal choice."""
    special = draw(st.sampled_from(["ieee", "fn", "fnuz", "finite"]))
    overflow = draw(st.sampled_from({"ieee": ["inf", "saturate", "nan"], "fn": ["saturate", "nan"],
                                     "fnuz": ["saturate", "nan"], "finite": ["saturate"]}[special]))
    try:
        return qsim.FloatingPoint(draw(st.integers(1, 6)), draw(st.integers(0, 5)), draw(st.booleans()), special,
                                  overflow)
    except ValueError:
        assume(False)


@st.composite
def fixed_formats(draw):
    wl = draw(st.integers(2, 12))
    signed = draw(st.booleans())
    return qsim.FixedPoint(wl, draw(st.integers(-4, wl - 1 if signed else wl)), signed)


def edge_values(fmt, top: float) -> st.SearchStrategy:
    """Values a kernel gets wrong first: specials, the format's values and points between them, just past
    its largest values, float32 subnormals, huge and random values."""
    values = fmt.values() if isinstance(fmt, qsim.formats.GridFormat) else np.array([0.0, 1.0, top])
    between = (values[1:] + values[:-1]) / 2 if len(values) > 1 else values
    bound = float(min(4 * top, np.finfo(np.float32).max))
    return st.one_of(
        st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1e-45, 2.0**-126, 3e38, -3e38]),
        st.sampled_from(values.tolist()), st.sampled_from(between.tolist()),
        st.sampled_from(values.tolist()).map(lambda v: v * (1 + 2.0**-20)),
        st.sampled_from([top, -top]).map(lambda v: v * 1.0625),
        st.floats(-bound, bound, allow_nan=False, width=32),
        st.floats(allow_nan=True, allow_infinity=True, width=32))


@st.composite
def views(draw, values: st.SearchStrategy, dtype):
    """A tensor of edge values seen through a random view: contiguous, transposed, sliced with a step, or
    expanded along a new leading dim (stride 0)."""
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    base = torch.tensor(draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape))),
                        dtype=dtype).view(shape)
    kind = draw(st.sampled_from(["contiguous", "transposed", "stepped", "expanded"]))
    if kind == "transposed" and base.dim() > 1:
        return base.transpose(0, -1)
    if kind == "stepped":
        return base[..., ::2]
    if kind == "expanded":
        return base.expand(2, *shape)
    return base


def rounds_toward_zero(mode: str, negative: bool) -> bool:
    return mode in ("toward_zero", "odd") or (mode == "up" and negative) or (mode == "down" and not negative)


def grid_reference(fmt, x: np.ndarray, mode: str, dtype) -> np.ndarray:
    """Exact rounding of any x: neighbour search on the values extended by one grid step past each end (a
    rounding onto that step overflows), docs/overflow.md's rule for overflow, ±inf and NaN."""
    grid = fmt.grid()
    ref = GridReference(fmt)
    top, bottom = ref.top, ref.bottom
    step = lambda limit: math.ldexp(1.0, max(math.floor(math.log2(abs(limit))), grid.emin) - grid.man) \
        if grid.emin < 4096 and limit != 0 else fmt.eps
    past_top, past_bottom = top + step(top), bottom - step(bottom)
    ref.values = np.concatenate([[past_bottom], ref.values, [past_top]])
    ref.lsb = np.concatenate([[1 - ref.lsb[0]], ref.lsb, [1 - ref.lsb[-1]]])
    out = np.empty(len(x))
    for i, v in enumerate(x.astype(np.float64)):
        negative = math.copysign(1.0, v) < 0
        limit = bottom if negative else top
        if math.isnan(v):
            out[i] = math.nan
            continue
        if math.isinf(v):
            out[i] = v if grid.has_inf else limit if grid.overflow == "saturate" else math.nan
            continue
        r = float(ref.round(np.array([min(max(v, past_bottom), past_top)]), mode)[0])
        if r in (past_top, past_bottom):  # overflow (IEEE 754 §7.4)
            if grid.overflow == "saturate" or rounds_toward_zero(mode, negative):
                r = limit
            else:
                r = math.copysign(math.inf, v) if grid.overflow == "inf" else math.nan
        out[i] = r
    return out.astype(dtype)


def same_bits_or_nan(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Equal values (±0 compared by value: signed zero is tested exhaustively in test_exhaustive), or both NaN."""
    return (got == expected) | (np.isnan(got) & np.isnan(expected))


@FUZZ
@given(data=st.data(), fmt=st.one_of(st.sampled_from(NAMED).map(qsim.formats.get), float_formats(), fixed_formats()),
       mode=st.sampled_from(DETERMINISTIC), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_elementwise_quantize_equals_the_exact_reference_on_any_view(data, fmt, mode, dtype):
    x = data.draw(views(edge_values(fmt, fmt.max), dtype))
    got = qsim.quantize(x, fmt, rounding=mode)
    assert got.shape == x.shape and got.dtype == x.dtype and got.is_contiguous()
    flat = x.contiguous().view(-1).numpy()
    expected = grid_reference(fmt, flat, mode, flat.dtype)
    ok = same_bits_or_nan(got.reshape(-1).numpy(), expected)
    assert ok.all(), (fmt.spec, mode, flat[~ok][:4], got.reshape(-1).numpy()[~ok][:4], expected[~ok][:4])


@FUZZ
@given(data=st.data(), fmt=st.one_of(st.sampled_from(NAMED).map(qsim.formats.get), float_formats(), fixed_formats()),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_stochastic_rounding_gives_one_of_the_two_neighbours(data, fmt, dtype):
    x = data.draw(views(edge_values(fmt, fmt.max), dtype))
    got = qsim.quantize(x, fmt, rounding="stochastic", seed=data.draw(st.integers(0, 2**63 - 1))).reshape(-1).numpy()
    flat = x.contiguous().view(-1).numpy()
    down, up = grid_reference(fmt, flat, "down", flat.dtype), grid_reference(fmt, flat, "up", flat.dtype)
    ok = same_bits_or_nan(got, down) | same_bits_or_nan(got, up)
    assert ok.all(), (fmt.spec, flat[~ok][:4], got[~ok][:4])


@FUZZ
@given(data=st.data(), name=st.sampled_from(BLOCKS), mode=st.sampled_from(DETERMINISTIC))
def test_block_quantize_equals_exact_block_arithmetic_on_any_view(data, name, mode):
    """Blocks run along the last dim of the logical tensor (a view's layout does not change them); a block
    holding NaN or ±inf becomes NaN."""
    fmt = qsim.formats.get(name)
    x = data.draw(views(edge_values(fmt.element if isinstance(fmt, qsim.MX) else fmt, 8.0), torch.float32))
    got = qsim.quantize(x, fmt, rounding=mode).reshape(-1, x.shape[-1]).numpy()
    rows = x.contiguous().reshape(-1, x.shape[-1]).numpy()
    for row, got_row in zip(rows, got):
        for start in range(0, len(row), fmt.block_size):
            block = row[start:start + fmt.block_size]
            expected = (np.full(len(block), np.nan, np.float32) if not np.isfinite(block).all()
                        else block_round(fmt, block, mode))
            ok = same_bits_or_nan(got_row[start:start + fmt.block_size], expected)
            assert ok.all(), (name, mode, block, got_row[start:start + fmt.block_size], expected)


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "mxfp4", "posit8", "lns8"])
@settings(max_examples=40, deadline=None)
@given(arguments=st.fixed_dictionaries({}, optional={
    "rounding": st.sampled_from([*qsim.ROUNDING_MODES, "Nearest", "", 3, None]),
    "seed": st.one_of(st.integers(-2, 2**64), st.floats(), st.just(torch.Generator()), st.text(max_size=2)),
    "rand_bits": st.one_of(st.integers(-1, 40), st.booleans(), st.floats(0, 40))}))
def test_any_argument_combination_gives_a_result_or_a_documented_error(fmt, arguments):
    """quantize's arguments in any combination: a result, or ValueError/TypeError naming the argument."""
    x = torch.randn(8)
    try:
        with np.errstate(all="ignore"):
            y = qsim.quantize(x, fmt, **arguments)
    except (ValueError, TypeError) as err:
        assert str(err).split(":")[0] in {"rounding", "seed", "rand_bits"}, err
    else:
        assert y.shape == x.shape
