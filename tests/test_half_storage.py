"""bfloat16 and float16 tensors: the CPU elementwise, posit and block kernels load them into float32,
round, and store back nearest-even in one pass. Oracle: the same rounding of the tensor converted to float32 by torch,
converted back by torch, over every bit pattern of the dtype (NaN compared as NaN), every rounding mode
and formats coarser and finer than the dtype. A rounded half is a half again unless it overflows (to inf
when stored), so this covers every value the store meets from these formats."""
import pytest
import torch

import qsim

FORMATS = ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "fixed<8,4>", "fixed<8,4,wrap>", "float<e8m7>", "float<e5m10>",
           "float<e6m9>", "fp32", "bf16", "fp16", "float<e3m2,nosub>", "posit8", "posit16", "posit8_es0"]


def every_pattern(dtype) -> torch.Tensor:
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)


def assert_same(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    both_nan = got.isnan() & expected.isnan()
    same = (got.view(torch.int16) == expected.view(torch.int16)) | both_nan
    bad = (~same).nonzero()
    assert bad.numel() == 0, f"{what}: {bad.numel()} differ, first inputs {bad[:3].flatten().tolist()}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", FORMATS)
def test_half_tensors_round_as_their_float32_copies_do(name, dtype):
    x = every_pattern(dtype)
    for mode in qsim.ROUNDING_MODES:
        for rand_bits in ((None, 5) if mode == "stochastic" else (None,)):
            kw = dict(rounding=mode, seed=7, rand_bits=rand_bits)
            expected = qsim.quantize(x.float(), name, **kw).to(dtype)
            assert_same(qsim.quantize(x, name, **kw), expected, f"{name} {mode} rand_bits={rand_bits}")


BLOCK_FORMATS = ["mxfp8_e4m3", "mxfp4", "mxint8", "nvfp4", "bfp8", "bfp8_dim0", "bfp<8,32>", "mx<fp4_e2m1,48>",
                 "mx<fp6_e3m2,32,rceil>", "mx<fp4_e2m1,16,scale=fp8_e4m3>"]


def wide_blocks(dtype) -> torch.Tensor:
    """Rows of different magnitudes (blocks of every scale), a NaN, an inf, zero blocks of either sign."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 96, generator=g) * torch.exp(torch.randn(300, 1, generator=g) * 4)
    x[5, 3], x[7, 40], x[9], x[11, :16] = float("nan"), float("inf"), 0.0, -0.0
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", BLOCK_FORMATS)
def test_half_tensors_in_blocks_round_as_their_float32_copies_do(name, dtype):
    for x in (wide_blocks(dtype), every_pattern(dtype).reshape(-1, 64)):
        for mode in qsim.ROUNDING_MODES:
            kw = dict(rounding=mode, seed=3)
            expected = qsim.quantize(x.float(), name, **kw).to(dtype)
            assert_same(qsim.quantize(x, name, **kw), expected, f"{name} {mode}")
