"""The CPU block kernels' FPU short paths (every mode on each block's shifted grid, and every mode on
NVFP4's scaled elements) give the bits of the generic integer path, which the
kernels take instead where the floating-point environment is not the default one (rounding downward,
subnormals flushed). Inputs: blocks spread over the whole exponent range, blocks whose maximum is
subnormal, all-zero blocks of either sign, blocks holding NaN or ±inf, tiny elements beside large ones,
elements at the block maximum; float32 and float64; 32, 24, 7 and 1 random bits."""
import numpy as np
import pytest
import torch

import qsim
from float_environment import flushing_subnormals, rounding_downward

SEED = 11
# Rows of 32 (BLOCK = 32 chunks of blocks), 97 (short last blocks) and 1024 (bfp8: one block per row).
POWER_OF_TWO = ["bfp8", "bfp8_32", "bfp<6,16>", "mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "mxint8", "mx<fp4_e2m1,48>"]


def nasty_blocks(dtype, rng, rows=700, width=32, low=-160, high=130) -> np.ndarray:
    """rows × width values (under the parallel threshold: rounded on the calling thread, whose floating-point
    environment the tests set), each row of blocks under its own power-of-two magnitude."""
    x = rng.standard_normal((rows, width)) * 2.0 ** rng.integers(low, high, size=(rows, 1))
    x[::5] *= 2.0 ** rng.integers(-30, 1, size=x[::5].shape)  # tiny elements beside large ones
    x[1::11] = 0.0
    x[2::13] = rng.choice([0.0, -0.0], size=x[2::13].shape)
    x[3::17, 5] = np.inf
    x[4::19, 9] = np.nan
    x[5::23, 3] = -np.inf
    x[6::29] = rng.integers(-(1 << 10), 1 << 10, size=x[6::29].shape) * 2.0**-149  # subnormal maxima
    x[7::31, :4] = x[7::31, 4:8]  # repeated block maxima (elements at the maximum)
    x[8::37] = -np.abs(x[8::37]) * 2.0 ** rng.integers(-2, 3, size=x[8::37].shape)
    # At the bottom of E8M0's range: grids shifted below float32's normals
    x[10::7] = rng.standard_normal(x[10::7].shape) * 2.0 ** rng.integers(-140, -110, size=(len(x[10::7]), 1))
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def layouts(x: np.ndarray):
    flat = torch.from_numpy(x).reshape(-1)
    yield flat.reshape(-1, 32)
    yield flat[: 97 * (flat.numel() // 97)].reshape(-1, 97)
    yield flat[: 1024 * (flat.numel() // 1024)].reshape(-1, 1024)


def assert_same_bits(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    width = torch.int32 if got.dtype == torch.float32 else torch.int64
    bad = (got.view(width) != expected.view(width)).nonzero()
    assert bad.numel() == 0, f"{what}: {bad.shape[0]} elements differ, first at {bad[:3].tolist()}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", qsim.ROUNDING_MODES)
@pytest.mark.parametrize("name", POWER_OF_TWO)
def test_power_of_two_blocks_round_as_the_integer_path_does(name, mode, dtype):
    """Rounding downward, the block kernels take the integer path (their scales and limits are exact
    either way): every bit must match the default environment's short path, for every random-bit count."""
    rng = np.random.default_rng(sum(map(ord, name)))
    x = nasty_blocks(dtype, rng, low=-160 if dtype == np.float32 else -1100, high=130 if dtype == np.float32 else 1000)
    for t in layouts(x):
        for rand_bits in ((32, 24, 7, 1) if mode == "stochastic" else (None,)):
            seed = SEED if mode == "stochastic" else None
            fast = qsim.quantize(t, name, rounding=mode, seed=seed, rand_bits=rand_bits)
            with rounding_downward():
                generic = qsim.quantize(t, name, rounding=mode, seed=seed, rand_bits=rand_bits)
            assert_same_bits(fast, generic, f"{name} {mode} {tuple(t.shape)} rand_bits={rand_bits}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp4", "bfp8"])
def test_stochastic_power_of_two_blocks_do_not_depend_on_flushing_subnormals(name, dtype):
    """With subnormals flushed the integer path is taken, and subnormal elements of blocks with normal limits
    still round as in the default environment."""
    rng = np.random.default_rng(7)
    x = nasty_blocks(dtype, rng, low=-90, high=100)
    x[::3, ::4] = rng.integers(1, 1 << 20, size=x[::3, ::4].shape) * 2.0**-149  # subnormal elements
    x[::3, 0] = 1.0  # in blocks with maximum 1
    for t in layouts(x):
        fast = qsim.quantize(t, name, rounding="stochastic", seed=SEED)
        with flushing_subnormals():
            generic = qsim.quantize(t, name, rounding="stochastic", seed=SEED)
        assert_same_bits(fast, generic, f"{name} {tuple(t.shape)}")
        assert (fast[t.abs() < 2.0**-126] != 0).any()  # the subnormal inputs did matter


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", qsim.ROUNDING_MODES)
def test_nvfp4_short_paths_round_as_the_integer_path_does(mode, dtype):
    """NVFP4 divides by its scales in either path, so the environments compared must divide alike: with
    subnormals flushed and no quotient subnormal (elements within 2^±40 of each other), only the element
    rounding differs, short path against integer path. NaN/inf blocks and zero blocks included."""
    rng = np.random.default_rng(13)
    x = nasty_blocks(dtype, rng, low=-40, high=40)
    x[::5] = rng.standard_normal(x[::5].shape) * 2.0 ** rng.integers(-40, 40, size=x[::5].shape)
    tiny = (np.abs(x) < 2.0**-50) & (x != 0)  # (no subnormal quotients here)
    x[tiny] = rng.standard_normal(np.count_nonzero(tiny)).astype(dtype)
    x[9::41, 1] = x[9::41, 0] * 6  # exactly on the e2m1 maximum's multiple
    for t in layouts(x):
        for rand_bits in ((32, 24, 7, 1) if mode == "stochastic" else (None,)):
            seed = SEED if mode == "stochastic" else None
            fast = qsim.quantize(t, "nvfp4", rounding=mode, seed=seed, rand_bits=rand_bits)
            with flushing_subnormals():
                generic = qsim.quantize(t, "nvfp4", rounding=mode, seed=seed, rand_bits=rand_bits)
            assert_same_bits(fast, generic, f"nvfp4 {mode} {tuple(t.shape)} rand_bits={rand_bits}")
