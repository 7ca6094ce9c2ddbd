"""docs/overflow.md's rule, for every format family × rounding mode × {finite overflow, +inf, -inf, NaN},
in float32 and float64: the expected values follow from the rule and the format's limits alone."""
import math

import pytest
import torch

import qsim

MODES = list(qsim.ROUNDING_MODES)
DTYPES = [torch.float32, torch.float64]
INPUTS = ["overflow", "-overflow", "inf", "-inf", "nan"]
ELEMENTWISE = ["fp16", "bf16", "fp8_e5m2", "fp8_e4m3", "fp8_e4m3_nan", "fp8_e4m3fnuz", "fp8_e5m2fnuz", "fp4_e2m1",
               "fp6_e3m2", "float<e5m2,saturate>", "float<e4m3,fn,nan,nosub>", "fixed8_4", "fixed<8,4,unsigned>",
               "fixed<8,4,wrap>"]


def rounds_toward_zero(mode: str, negative: bool) -> bool:
    """IEEE 754 §7.4: the modes whose overflow of this sign gives the largest finite value."""
    return mode in ("toward_zero", "odd") or (mode == "up" and negative) or (mode == "down" and not negative)


def elementwise_expected(fmt, mode: str, case: str) -> float:
    grid = fmt.grid()
    negative = case.startswith("-")
    largest = -float(grid.max_neg) if negative else float(grid.max_pos)
    if case == "nan":
        return math.nan
    if case.endswith("inf"):  # exact: encoded, not rounded
        if grid.has_inf:
            return -math.inf if negative else math.inf
        return largest if grid.overflow == "saturate" else math.nan
    if grid.overflow == "saturate" or rounds_toward_zero(mode, negative):
        return largest
    return (-math.inf if negative else math.inf) if grid.overflow == "inf" else math.nan


def value(case: str, top: float, dtype) -> float:
    """The input of a case: a finite value past the format's largest `top` (within the dtype), ±inf or NaN."""
    beyond = min(4 * top, torch.finfo(dtype).max)
    return {"overflow": beyond, "-overflow": -beyond, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}[case]


def same(got: torch.Tensor, expected: list[float]) -> bool:
    return all((math.isnan(e) and math.isnan(g)) or g == e for g, e in zip(got.tolist(), expected))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_overflow_inf_and_nan_follow_the_rule(name, mode, dtype):
    fmt = qsim.formats.get(name)
    cases = [c for c in INPUTS if not (fmt.grid().overflow == "wrap" and c.endswith("overflow"))]  # (wrap: modular)
    top = max(float(fmt.grid().max_pos), float(fmt.grid().max_neg))
    x = torch.tensor([value(c, top, dtype) for c in cases], dtype=dtype)
    expected = [elementwise_expected(fmt, mode, c) for c in cases]
    got = qsim.quantize(x, fmt, rounding=mode, seed=0 if mode == "stochastic" else None)
    assert same(got, expected), (name, mode, cases, got.tolist(), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["posit8", "posit16", "lns8", "lns16"])
def test_posit_and_logarithmic_saturate_finite_values_and_posits_make_inf_nar(name, mode, dtype):
    fmt = qsim.formats.get(name)
    x = torch.tensor([value(c, fmt.max, dtype) for c in INPUTS], dtype=dtype)
    top = float(torch.tensor(fmt.max, dtype=dtype))
    infinity = math.nan if isinstance(fmt, qsim.Posit) else top  # NaR / saturation
    expected = [top, -top, infinity, -infinity, math.nan]
    got = qsim.quantize(x, fmt, rounding=mode, seed=0 if mode == "stochastic" else None)
    assert got[:2].tolist() == expected[:2] or torch.allclose(got[:2].double(), torch.tensor(expected[:2]),
                                                               rtol=2**-23, atol=0)
    assert same(got[2:], expected[2:]), (name, mode, got.tolist())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["bfp8", "bfp<8,16>", "mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "mxfp4",
                                  "mx<fp8_e4m3,rceil>", "nvfp4"])
def test_a_block_holding_inf_or_nan_becomes_nan_and_the_others_are_untouched(name, mode, dtype):
    """Rows of one block each (the whole tensor for one exponent per tensor, as bfp8). NVFP4's per-tensor
    scale falls back to 1 for a tensor holding NaN or inf, so its clean blocks are only checked finite."""
    fmt = qsim.formats.get(name)
    x = torch.ones(4, fmt.block_size or 32, dtype=dtype)
    x[0, 3], x[1, 5], x[2, 7] = math.inf, -math.inf, math.nan
    seed = 0 if mode == "stochastic" else None
    got = qsim.quantize(x, fmt, rounding=mode, seed=seed)
    if fmt.block_size is None:
        assert got.isnan().all()
        return
    assert got[:3].isnan().all()
    assert torch.isfinite(got[3]).all()
    if not getattr(fmt, "tensor_scale", False):
        assert torch.equal(got[3], qsim.quantize(torch.ones_like(x), fmt, rounding=mode, seed=seed)[3])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp8_e5m2", "mxint8", "mxfp4", "mx<fp8_e4m3,ceil>", "bfp<8,32>"])
def test_blocks_beyond_the_largest_scale_saturate_in_every_mode(name, mode):
    """float64 values past the largest scale 2^127: elements saturate at ±(element max · 2^127)."""
    fmt = qsim.formats.get(name)
    x = torch.tensor([[1e300, 3.0] + [0.0] * 30, [-1e300, 3.0] + [0.0] * 30], dtype=torch.float64)
    got = qsim.quantize(x, fmt, rounding=mode, seed=0 if mode == "stochastic" else None)
    grid, E = fmt.element_grid(), fmt.scale_range[1]
    assert got[:, 0].tolist() == [float(grid.max_pos) * 2.0**E, -float(grid.max_neg) * 2.0**E]


@pytest.mark.parametrize("dtype", DTYPES)
def test_overq_saturates_positive_overflow_and_refuses_nan_and_negative_infinity(dtype):
    fmt = "overq<4,scale=0.1,dim=-1>"
    x = torch.tensor([[1e30, 0.0, math.inf, 0.0]], dtype=dtype)
    saturated = torch.tensor([[25.5, 0.0, 25.5, 0.0]], dtype=dtype)  # each claims a zero: 8-bit codes, 255·0.1
    assert torch.equal(qsim.quantize(x, fmt), saturated)
    for bad in (math.nan, -math.inf):
        with pytest.raises(ValueError, match="x: "):
            qsim.quantize(torch.tensor([[bad, 0.0]], dtype=dtype), fmt)
    with pytest.raises(ValueError, match="finite maximum"):
        qsim.quantize(x, "overq<4,scale=max,dim=-1>")
