"""NVFP4's CPU kernel scales each 16-element block by its own largest magnitude: results equal NVFP4's
definition computed here with numpy's per-block maximum, with the maximum at every lane of every block,
of either sign, in tensors of 16 to 649 blocks (whole and partial chunks of blocks)."""
import numpy as np
import pytest
import torch

import qsim


def nvfp4_from_numpy_maxima(x: np.ndarray) -> np.ndarray:
    """S = e4m3(amax_block / 6 / s) · s with s = amax_tensor / (6 · 448) (float64, stored in float32),
    elements e2m1(x / S) · S in float32; the maxima from numpy."""
    s = float(np.abs(x).max()) / (6 * 448)
    blocks = x.reshape(-1, 16)
    wanted = (np.abs(blocks).max(1, keepdims=True).astype(np.float64) / 6 / s).astype(np.float32)
    e4m3 = qsim.quantize(torch.from_numpy(wanted), "fp8_e4m3").numpy()
    scale = (e4m3.astype(np.float64) * s).astype(np.float32)
    elements = qsim.quantize(torch.from_numpy(blocks / scale), "fp4_e2m1").numpy()
    return (elements * scale).reshape(x.shape)


@pytest.mark.parametrize("blocks", [16, 32, 20, 47, 16 * 40 + 9])
def test_nvfp4_block_maxima_at_every_lane_match_numpys(blocks):
    """Each block: magnitudes in [0.1, 1) and one element 2-8x larger (so a wrong maximum changes the
    block's scale), at lane (block + shift) % 16 for every shift: every lane of every block position in
    a group of 16 holds the maximum once; signs random, and in some blocks the maximum is negative."""
    rng = np.random.default_rng(blocks)
    for shift in range(16):
        x = rng.uniform(0.1, 1.0, size=(blocks, 16)) * rng.choice([-1.0, 1.0], size=(blocks, 16))
        lane = (np.arange(blocks) + shift) % 16
        x[np.arange(blocks), lane] = rng.uniform(2.0, 8.0, size=blocks) * rng.choice([-1.0, 1.0], size=blocks)
        x = x.astype(np.float32).reshape(-1, 16 * (blocks if blocks % 2 else 2))
        got = qsim.quantize(torch.from_numpy(x), "nvfp4").numpy()
        expected = nvfp4_from_numpy_maxima(x)
        assert np.array_equal(got.view(np.int32), expected.view(np.int32)), f"shift {shift}"
