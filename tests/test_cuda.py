"""CUDA results equal CPU results bit for bit for every format family, stochastic rounding included
(same seed). Skipped without a GPU; the CUDA sources are compile-checked by nvcc in CI (.ci/run)."""
import numpy as np
import pytest
import torch

import qsim

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FORMATS = ["fp8_e4m3", "fp8_e4m3_nan", "fp8_e5m2", "fp8_e4m3fnuz", "bf16", "fp16", "tf32", "fp6_e2m3", "fp4_e2m1",
           "fixed<8,4>", "fixed<8,4,wrap>", "fixed<12,6,unsigned>", "float<e3m2,nosub>", "float<e5m0>",
           "posit8", "posit16", "posit32", "posit8_es0", "posit<5,5>",
           "lns8", "lns16", "lns<5,10,linear>", "lns<2,0,linear>", "lns<3,1,unsigned>",
           "bfp8", "bfp8_dim0", "bfp<8,32>", "mxfp8_e4m3", "mxfp4", "mxint8", "mx<fp6_e2m3,32,rceil>", "nvfp4"]


def inputs(dtype):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = rng.standard_normal(1 << 20).astype(np.float32) * 10
    x = np.concatenate([[0.0, -0.0, np.inf, -np.inf, np.nan], bits, normal]).astype(np.float32)
    x = x[: len(x) - len(x) % 40]
    return torch.from_numpy(x).to(dtype).reshape(-1, 40)  # 2-D, rows holding whole and partial blocks


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", qsim.ROUNDING_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu_bit_for_bit(fmt, mode, dtype):
    x = inputs(dtype)
    cpu = qsim.quantize(x, fmt, rounding=mode, seed=1234)
    gpu = qsim.quantize(x.cuda(), fmt, rounding=mode, seed=1234).cpu()
    view = torch.int32 if dtype == torch.float32 else torch.int64
    same = (cpu.view(view) == gpu.view(view)) | (cpu.isnan() & gpu.isnan())
    assert same.all(), f"{int((~same).sum())} differences, e.g. x={x[~same][:4].tolist()}"


def test_cuda_handles_odd_sizes_and_unaligned_views():
    x = torch.randn(4099, dtype=torch.float32)
    for view in (x[1:], x[3:4002]):
        cpu = qsim.quantize(view, "fp8_e5m2", rounding="stochastic", seed=9, rand_bits=8)
        gpu = qsim.quantize(view.cuda(), "fp8_e5m2", rounding="stochastic", seed=9, rand_bits=8).cpu()
        assert torch.equal(cpu, gpu)
