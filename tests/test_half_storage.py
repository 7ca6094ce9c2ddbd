"""bfloat16 and float16 tensors: the CPU elementwise kernels load them into float32, round, and store
back nearest-even in one pass. Oracle: the same rounding of the tensor converted to float32 by torch,
converted back by torch, over every bit pattern of the dtype (NaN compared as NaN), every rounding mode
and formats coarser and finer than the dtype. A rounded half is a half again unless it overflows (to inf
when stored), so this covers every value the store meets from these formats."""
import pytest
import torch

import qsim

FORMATS = ["fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "fixed<8,4>", "fixed<8,4,wrap>", "float<e8m7>", "float<e5m10>",
           "float<e6m9>", "fp32", "bf16", "fp16", "float<e3m2,nosub>"]


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
