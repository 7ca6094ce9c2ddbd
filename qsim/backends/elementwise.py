"""Back end of the elementwise formats (FixedPoint, FloatingPoint): the grid of a format becomes the
C struct QuantParams (csrc/qsim/params.h), read by csrc/cpu/quantize.cpp and csrc/cuda/quantize.cu."""
from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import torch

from qsim import _C, cuda
from qsim.formats import FixedPoint, FloatingPoint, Grid, parse

FORMATS = (FixedPoint, FloatingPoint)
# The CPU kernel of each dtype it takes (bfloat16/float16: loaded into float32, stored back in one pass).
CPU_KERNELS = {torch.float32: _C.quantize_f32, torch.float64: _C.quantize_f64, torch.bfloat16: _C.quantize_bf16,
               torch.float16: _C.quantize_f16}
_OVERFLOW_CODES = {"saturate": 0, "inf": 1, "nan": 2, "wrap": 3}


def _toward_zero(value: Fraction, dtype) -> float:
    """The largest magnitude of `dtype` that is at most `value` (value ≥ 0)."""
    rounded = dtype(min(float(value), float(np.finfo(dtype).max)))
    while Fraction(float(rounded)) > value:
        rounded = np.nextafter(rounded, dtype(0))
    return float(rounded)


@functools.lru_cache(maxsize=1024)
def kernel_params(grid: Grid) -> _C.QuantParams:
    """The C struct for a grid, with the limits rounded toward zero into float32 and float64."""
    p = _C.QuantParams()
    p.man, p.emin, p.subnormals = grid.man, grid.emin, int(grid.subnormals)
    p.overflow = _OVERFLOW_CODES[grid.overflow]
    p.has_inf, p.neg_zero = int(grid.has_inf), int(grid.neg_zero)
    p.wrap_bits, p.wrap_signed = grid.wrap_bits, int(grid.wrap_signed)
    p.max_pos_f, p.max_neg_f = _toward_zero(grid.max_pos, np.float32), _toward_zero(grid.max_neg, np.float32)
    p.max_pos_d, p.max_neg_d = _toward_zero(grid.max_pos, np.float64), _toward_zero(grid.max_neg, np.float64)
    return p


def format_params(fmt) -> _C.QuantParams:
    """kernel_params of a format's grid, cached by the format's spec: a string hashes once, a format (or its
    grid) field by field on every call."""
    return _spec_params(fmt.spec)


@functools.lru_cache(maxsize=1024)
def _spec_params(spec: str) -> _C.QuantParams:
    return kernel_params(parse(spec).grid())


def params_as_args(p: _C.QuantParams) -> list:
    """QuantParams field by field, as csrc/cuda/quantize.cu's kernels take them."""
    return [("i32", p.man), ("i32", p.emin), ("i32", p.subnormals), ("i32", p.overflow), ("i32", p.has_inf),
            ("i32", p.neg_zero), ("i32", p.wrap_bits), ("i32", p.wrap_signed), ("f32", p.max_pos_f),
            ("f32", p.max_neg_f), ("f64", p.max_pos_d), ("f64", p.max_neg_d)]


def quantize(x: torch.Tensor, out: torch.Tensor, fmt, rounding: int, seed: int, rand_bits: int) -> None:
    params = format_params(fmt)
    if x.is_cuda:
        cuda.launch("cuda/quantize.cu", cuda.kernel_name("quantize", rounding, x.dtype), x, out,
                    params_as_args(params) + [("u64", seed), ("i32", 32 - rand_bits)])
    else:
        CPU_KERNELS[x.dtype](x.data_ptr(), out.data_ptr(), x.numel(), params, rounding, seed, rand_bits)
