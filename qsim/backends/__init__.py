"""Kernel back ends, one module per format family. Each module exposes FORMATS (the Format types it
serves) and quantize(x, out, fmt, rounding, seed, rand_bits), which writes the rounding of x into out:
both contiguous tensors of the same shape, dtype (float32, float64, or on the CPU any key of the
module's CPU_KERNELS) and device (CPU or CUDA). Random bits for element i (row-major index) depend
only on (seed, i), whichever device runs it."""
from __future__ import annotations

import functools

import torch

from qsim.formats import Format

_FLOATS = (torch.float32, torch.float64)


@functools.cache
def _by_type() -> dict[type, object]:
    from qsim.backends import block, elementwise, logarithmic, posit
    from qsim.backends import overq

    return {fmt_type: module for module in (elementwise, block, posit, logarithmic, overq) for fmt_type in module.FORMATS}


def supports(fmt: Format) -> bool:
    return type(fmt) in _by_type()


def dtypes(fmt: Format, device: torch.device):
    """The tensor dtypes (a collection) the kernel of `fmt` rounds as they are on `device`; others go
    through float32."""
    return getattr(_by_type()[type(fmt)], "CPU_KERNELS", _FLOATS) if device.type == "cpu" else _FLOATS


def quantize(x, out, fmt: Format, rounding: int, seed: int, rand_bits: int) -> None:
    _by_type()[type(fmt)].quantize(x, out, fmt, rounding, seed, rand_bits)
