"""Kernel back ends, one module per format family. Each module exposes FORMATS (the Format types it
serves) and quantize(x, out, fmt, rounding, seed, rand_bits), which writes the rounding of x into out:
both non-empty contiguous tensors of the same shape, dtype (float32, float64, or on the CPU any key of the
module's CPU_KERNELS) and device (CPU or CUDA). Random bits for element i (row-major index) depend
only on (seed, i), whichever device runs it."""
from __future__ import annotations

import functools

import torch

from qsim.formats import Format, parse

_FLOATS = (torch.float32, torch.float64)


@functools.cache
def _by_type() -> dict[type, object]:
    from qsim.backends import block, elementwise, logarithmic, overq, posit

    return {fmt_type: module for module in (elementwise, block, posit, logarithmic, overq)
            for fmt_type in module.FORMATS}


def supports(fmt: Format) -> bool:
    return type(fmt) in _by_type()


@functools.lru_cache(maxsize=1024)
def route(spec: str, device_type: str):
    """(format, back-end module, the tensor dtypes that module rounds as they are on `device_type`; others go
    through float32) for a format's canonical spec: parsed and looked up once, not on every call (layer hooks
    quantize thousands of small tensors a step)."""
    fmt = parse(spec)
    module = _by_type()[type(fmt)]
    return fmt, module, getattr(module, "CPU_KERNELS", _FLOATS) if device_type == "cpu" else _FLOATS
