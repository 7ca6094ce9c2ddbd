"""Back end of Posit formats: csrc/cpu/nonuniform.cpp on the CPU and csrc/cuda/nonuniform.cu on the
GPU, both rounding with csrc/qsim/posit.h, which needs only (nbits, es)."""
from __future__ import annotations

import torch

from qsim import _C, cuda
from qsim.formats import Posit

FORMATS = (Posit,)
# The CPU kernel of each dtype it takes (bfloat16/float16: loaded into float32, stored back in one pass).
CPU_KERNELS = {torch.float32: _C.posit_f32, torch.float64: _C.posit_f64, torch.bfloat16: _C.posit_bf16,
               torch.float16: _C.posit_f16}


def quantize(x: torch.Tensor, out: torch.Tensor, fmt: Posit, rounding: int, seed: int, rand_bits: int) -> None:
    if x.is_cuda:
        cuda.launch("cuda/nonuniform.cu", cuda.kernel_name("posit", rounding, x.dtype), x, out,
                    [("i32", fmt.nbits), ("i32", fmt.es), ("u64", seed), ("i32", 32 - rand_bits)])
    else:
        CPU_KERNELS[x.dtype](x.data_ptr(), out.data_ptr(), x.numel(), fmt.nbits, fmt.es, rounding, seed, rand_bits)
