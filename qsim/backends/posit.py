"""Back end of Posit formats: csrc/cpu/nonuniform.cpp on the CPU and csrc/cuda/nonuniform.cu on the
GPU, both rounding with csrc/qsim/posit.h, which needs only (nbits, es)."""
from __future__ import annotations

import torch

from qsim import _C, cuda
from qsim.formats import Posit

FORMATS = (Posit,)
HALF_DTYPES = (torch.bfloat16, torch.float16)  # the CPU kernels load them into float32 and store them back
_CPU_KERNELS = {torch.float32: _C.posit_f32, torch.float64: _C.posit_f64, torch.bfloat16: _C.posit_bf16,
                torch.float16: _C.posit_f16}


def quantize(x: torch.Tensor, out: torch.Tensor, fmt: Posit, rounding: int, seed: int, rand_bits: int) -> None:
    if x.is_cuda:
        cuda.launch("cuda/nonuniform.cu", cuda.kernel_name("posit", rounding, x.dtype), x, out,
                    [("i32", fmt.nbits), ("i32", fmt.es), ("u64", seed), ("i32", 32 - rand_bits)])
    else:
        _CPU_KERNELS[x.dtype](x.data_ptr(), out.data_ptr(), x.numel(), fmt.nbits, fmt.es, rounding, seed, rand_bits)
