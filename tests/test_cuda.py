"""The CUDA kernels give the CPU kernels' results bit for bit for every format family, stochastic rounding
included (same seed): on a real GPU when one is present, and always on the host-emulated GPU of
tests/emulated_gpu.py (the .cu sources compiled by g++), which checks the kernels' own indexing, random
words and argument lists anywhere. The CUDA sources are also compile-checked by nvcc in CI (.ci/run)."""
import contextlib

import numpy as np
import pytest
import torch

import qsim
from emulated_gpu import emulated_gpu

FORMATS = ["fp8_e4m3", "fp8_e4m3_nan", "fp8_e5m2", "fp8_e4m3fnuz", "bf16", "fp16", "tf32", "fp6_e2m3", "fp4_e2m1",
           "fixed<8,4>", "fixed<8,4,wrap>", "fixed<64,32,unsigned,wrap>", "fixed<12,6,unsigned>", "float<e3m2,nosub>", "float<e5m0>",
           "posit8", "posit16", "posit32", "posit8_es0", "posit<5,5>",
           "lns8", "lns16", "lns<5,10,linear>", "lns<2,0,linear>", "lns<3,1,unsigned>",
           "bfp8", "bfp8_dim0", "bfp<8,32>", "mxfp8_e4m3", "mxfp4", "mxint8", "mx<fp6_e2m3,32,rceil>", "mx<fp8_e4m3,ceil>",
           "mx<fp4_e2m1,32,even>", "nvfp4"]


class Gpu:
    """Moves tensors to the device and runs quantize there: a real GPU or the emulated one."""

    def __init__(self, kind: str):
        self.kind = kind

    def to(self, x: torch.Tensor) -> torch.Tensor:
        return x.cuda() if self.kind == "cuda" else x.clone()

    def quantize(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        with emulated_gpu() if self.kind == "emulated" else contextlib.nullcontext():
            return qsim.quantize(x, *args, **kwargs).cpu()


@pytest.fixture(params=["cuda", "emulated"])
def gpu(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return Gpu(request.param)


def inputs(dtype, size: int):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = rng.standard_normal(size).astype(np.float32) * 10
    x = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32), bits, normal])
    x = x[: len(x) - len(x) % 40]
    return torch.from_numpy(x).to(dtype).reshape(-1, 40)  # 2-D, rows holding whole and partial blocks


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", qsim.ROUNDING_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu_bit_for_bit(gpu, fmt, mode, dtype):
    x = inputs(dtype, 1 << 20 if gpu.kind == "cuda" else 1 << 16)
    cpu = qsim.quantize(x, fmt, rounding=mode, seed=1234)
    on_gpu = gpu.quantize(gpu.to(x), fmt, rounding=mode, seed=1234)
    view = torch.int32 if dtype == torch.float32 else torch.int64
    same = (cpu.view(view) == on_gpu.view(view)) | (cpu.isnan() & on_gpu.isnan())
    assert same.all(), f"{int((~same).sum())} differences, e.g. x={x[~same][:4].tolist()}"


def test_cuda_handles_odd_sizes_and_unaligned_views(gpu):
    x = torch.randn(4099, dtype=torch.float32)
    for start, stop in ((1, 4099), (3, 4002)):
        cpu = qsim.quantize(x[start:stop], "fp8_e5m2", rounding="stochastic", seed=9, rand_bits=8)
        on_gpu = gpu.quantize(gpu.to(x)[start:stop], "fp8_e5m2", rounding="stochastic", seed=9, rand_bits=8)
        assert torch.equal(cpu, on_gpu)
