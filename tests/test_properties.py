"""Properties over random formats and inputs (hypothesis): idempotence, monotonicity of nearest rounding,
results on the format's grid, and error bounds in ulps."""
import math
from fractions import Fraction

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim

DETERMINISTIC = ["nearest", "nearest_away", "toward_zero", "up", "down", "odd"]

float_formats = st.builds(
    qsim.FloatingPoint,
    exp=st.integers(2, 8),
    man=st.integers(0, 12),
    subnormals=st.booleans(),
    special=st.sampled_from(["ieee", "fn", "finite"]),
)
fixed_formats = st.builds(
    lambda wl, fl, signed: qsim.FixedPoint(wl, min(fl, wl - 1 if signed else wl), signed=signed),
    wl=st.integers(2, 24), fl=st.integers(-4, 20), signed=st.booleans(),
)
formats = st.one_of(float_formats, fixed_formats)
inputs = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=64)


@settings(max_examples=150, deadline=None)
@given(fmt=formats, values=inputs, mode=st.sampled_from(DETERMINISTIC + ["stochastic"]))
def test_quantizing_twice_changes_nothing(fmt, values, mode):
    x = torch.tensor(values, dtype=torch.float32)
    once = qsim.quantize(x, fmt, rounding=mode, seed=1)
    assert torch.equal(qsim.quantize(once, fmt, rounding=mode, seed=2), once)


@settings(max_examples=150, deadline=None)
@given(fmt=formats, values=inputs, mode=st.sampled_from(DETERMINISTIC))
def test_deterministic_rounding_is_monotonic(fmt, values, mode):
    x = torch.tensor(sorted(values), dtype=torch.float64)
    q = qsim.quantize(x, fmt, rounding=mode)
    assert (q[1:] >= q[:-1]).all()


@settings(max_examples=100, deadline=None)
@given(fmt=formats.filter(lambda f: f.bits_per_element <= 14), values=inputs,
       mode=st.sampled_from(DETERMINISTIC + ["stochastic"]))
def test_results_are_values_of_the_format(fmt, values, mode):
    x = torch.tensor(values, dtype=torch.float64)
    q = qsim.quantize(x, fmt, rounding=mode, seed=0)
    finite = torch.isfinite(q)
    assert torch.isin(q[finite], torch.from_numpy(fmt.values())).all()


@settings(max_examples=150, deadline=None)
@given(fmt=formats, values=inputs, mode=st.sampled_from(DETERMINISTIC + ["stochastic"]))
def test_error_is_within_half_an_ulp_for_nearest_and_one_ulp_otherwise(fmt, values, mode):
    """In range, |q(x) - x| ≤ ulp/2 for the nearest modes and ≤ ulp for the others, where ulp is the
    grid step at x: 2^(max(floor(log2|x|), emin) - man), or 2^emin below the smallest normal without
    subnormals."""
    x = torch.tensor(values, dtype=torch.float64)
    grid = fmt.grid()
    in_range = (x <= float(grid.max_pos)) & (x >= -float(grid.max_neg))
    x = x[in_range]
    if x.numel() == 0:
        return
    q = qsim.quantize(x, fmt, rounding=mode, seed=0)
    e = torch.floor(torch.log2(x.abs().clamp_min(1e-300)))
    below = e < grid.emin
    step_exp = torch.where(below, torch.full_like(e, grid.emin - (grid.man if grid.subnormals else 0)),
                           e - grid.man)
    ulp = torch.exp2(step_exp)
    bound = ulp / 2 if mode.startswith("nearest") else ulp
    err = (q - x).abs()
    assert (err <= bound).all()


@settings(max_examples=60, deadline=None)
@given(wl=st.integers(2, 40), fl=st.integers(0, 30), values=st.lists(
    st.fractions(min_value=-2**12, max_value=2**12, max_denominator=2**36), min_size=1, max_size=32),
    mode=st.sampled_from(DETERMINISTIC))
def test_wide_fixed_point_matches_exact_rational_rounding(wl, fl, values, mode):
    """Fixed point of up to 40 bits against the Fraction definition of each rounding mode."""
    fl = min(fl, wl - 1)
    fmt = qsim.FixedPoint(wl, fl)
    x = np.array([float(v) for v in values])
    got = qsim.quantize(torch.from_numpy(x), fmt, rounding=mode).numpy()
    for xv, g in zip(x, got):
        scaled = Fraction(float(xv)) * 2**fl
        lo = math.floor(scaled)
        frac = scaled - lo
        if frac == 0:
            n = lo
        elif mode == "nearest":
            n = lo + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2 == 1))
        elif mode == "nearest_away":
            n = lo + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and scaled > 0))
        elif mode == "toward_zero":
            n = lo + (scaled < 0)
        elif mode == "up":
            n = lo + 1
        elif mode == "down":
            n = lo
        else:  # odd
            n = lo if lo % 2 else lo + 1
        n = max(min(n, 2 ** (wl - 1) - 1), -(2 ** (wl - 1)))
        assert Fraction(float(g)) == Fraction(n, 2**fl), (xv, mode)


# Posits and logarithmic numbers: their grids are not Grid descriptions, so they are checked by name.
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
ENUMERABLE_NONUNIFORM = ["posit8", "posit16_es1", "posit<10,3>", "lns8", "lns16", "lns<3,1,unsigned,linear>"]
NONUNIFORM = ["posit8", "posit16", "posit32", "lns8", "lns<4,3,linear>", "lns16"]


@settings(deadline=None, max_examples=400)
@given(x=st.lists(finite, min_size=1, max_size=50), name=st.sampled_from(ENUMERABLE_NONUNIFORM),
       mode=st.sampled_from(qsim.ROUNDING_MODES))
def test_posit_and_lns_results_are_values_and_rounding_is_idempotent(x, name, mode):
    fmt = qsim.formats.get(name)
    t = torch.tensor(x, dtype=torch.float64)
    q = qsim.quantize(t, fmt, rounding=mode, seed=3)
    assert np.isin(q.numpy(), fmt.values()).all()
    assert torch.equal(qsim.quantize(q, fmt, rounding=mode, seed=4), q)


@settings(deadline=None, max_examples=400)
@given(x=st.lists(finite, min_size=2, max_size=50), name=st.sampled_from(NONUNIFORM),
       mode=st.sampled_from(DETERMINISTIC))
def test_posit_and_lns_deterministic_rounding_is_monotonic(x, name, mode):
    t = torch.tensor(sorted(x), dtype=torch.float64)
    q = qsim.quantize(t, name, rounding=mode)
    assert (q[1:] >= q[:-1]).all()
