"""Nearest rounding is bit-exact against independent implementations: torch's casts and ml_dtypes.

Each format is checked on over a million float32 inputs: random bit patterns over the whole float32
range, every value of the format, the midpoints (ties) between neighbours and the float32 values just
beside each midpoint, values just past the largest finite one, ±0, ±inf and NaN."""
import ml_dtypes
import numpy as np
import pytest
import torch

import qsim
from reference import GridReference

RNG = np.random.default_rng(1234)


def probe_values(fmt) -> np.ndarray:
    """float32 inputs that exercise every rounding decision of `fmt`."""
    values = fmt.values().astype(np.float32)
    mids = ((fmt.values()[1:] + fmt.values()[:-1]) / 2).astype(np.float32)
    beside = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    top = fmt.max
    past = np.minimum([top * 1.01, top * 1.0625, top * 1.125, top * 1.5, top * 2], 3.4e38).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.17549435e-38], dtype=np.float32)
    random_bits = RNG.integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    scaled = (RNG.standard_normal(100_000) * min(fmt.max, 1e38) / 4).astype(np.float32)
    return np.concatenate([values, -values, mids, -mids, beside, -beside, past, -past, special, random_bits, scaled])


def assert_same_floats(got: np.ndarray, expected: np.ndarray, inputs: np.ndarray):
    """Bitwise equality of float32 arrays, NaNs compared by NaN-ness."""
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan), f"NaN mismatch at inputs {inputs[np.isnan(got) != nan][:5]}"
    diff = got[~nan].view(np.uint32) != expected[~nan].view(np.uint32)
    assert not diff.any(), (
        f"{diff.sum()} mismatches, e.g. x={inputs[~nan][diff][:5]} got={got[~nan][diff][:5]} "
        f"expected={expected[~nan][diff][:5]}"
    )


TORCH_CASTS = [
    ("fp16", torch.float16),
    ("bf16", torch.bfloat16),
    ("fp8_e4m3", torch.float8_e4m3fn),  # torch saturates e4m3fn to ±448
    ("fp8_e5m2", torch.float8_e5m2),
]


@pytest.mark.parametrize("name,dtype", TORCH_CASTS)
def test_nearest_matches_torch_cast_bit_for_bit(name, dtype):
    fmt = qsim.formats.get(name)
    x = probe_values(fmt)
    expected = torch.from_numpy(x).to(dtype).float().numpy()
    got = qsim.quantize(torch.from_numpy(x), name).numpy()
    assert_same_floats(got, expected, x)


ML_DTYPES = [
    ("fp8_e4m3_nan", ml_dtypes.float8_e4m3fn),  # ml_dtypes turns e4m3fn overflow into NaN
    ("fp8_e5m2", ml_dtypes.float8_e5m2),
    ("fp8_e4m3fnuz", ml_dtypes.float8_e4m3fnuz),
    ("fp8_e5m2fnuz", ml_dtypes.float8_e5m2fnuz),
    ("float<e4m3>", ml_dtypes.float8_e4m3),  # IEEE-style e4m3 with inf
    ("float<e3m4>", ml_dtypes.float8_e3m4),
    ("fp6_e2m3", ml_dtypes.float6_e2m3fn),
    ("fp6_e3m2", ml_dtypes.float6_e3m2fn),
    ("fp4_e2m1", ml_dtypes.float4_e2m1fn),
    ("bf16", ml_dtypes.bfloat16),
]


@pytest.mark.parametrize("name,dtype", ML_DTYPES)
def test_nearest_matches_ml_dtypes_bit_for_bit(name, dtype):
    fmt = qsim.formats.get(name)
    x = probe_values(fmt)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = x.astype(dtype).astype(np.float32)
    got = qsim.quantize(torch.from_numpy(x), name).numpy()
    if fmt.special == "finite":
        # These formats have no NaN pattern: ml_dtypes maps NaN to -0, qsim keeps NaN (documented).
        keep = ~np.isnan(x)
        assert np.isnan(got[~keep]).all()
        x, got, expected = x[keep], got[keep], expected[keep]
    assert_same_floats(got, expected, x)


@pytest.mark.parametrize("name", ["fp8_e4m3_nan", "fp8_e5m2", "fp6_e3m2", "fp16", "fixed<8,3>"])
def test_float64_inputs_round_once_not_through_float32(name):
    """float64 inputs are rounded directly: a value beside a tie by less than a float32 ulp is not a tie.
    (ml_dtypes converts float64 through float32 and gets these wrong, so the oracle is exact arithmetic.)"""
    fmt = qsim.formats.get(name)
    ref = GridReference(fmt)
    grid = fmt.values()
    mids = (grid[1:] + grid[:-1]) / 2
    x = np.concatenate([mids * (1 + 2.0**-40), mids * (1 - 2.0**-40), mids])
    x = x[np.abs(x) <= fmt.max]
    expected = ref.round(x, "nearest")
    got = qsim.quantize(torch.from_numpy(x), name).numpy()
    assert np.array_equal(got, expected)
    assert np.array_equal(qsim.quantize(torch.from_numpy(x), "fp16").numpy(), x.astype(np.float16).astype(np.float64))


def test_e4m3fn_overflow_is_a_choice_saturate_or_nan():
    x = torch.tensor([470.0, 1e4, float("inf"), -1e4])
    assert qsim.quantize(x, "fp8_e4m3").tolist() == [448.0, 448.0, 448.0, -448.0]
    assert qsim.quantize(x, "fp8_e4m3_nan").isnan().all()
