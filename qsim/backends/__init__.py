"""Kernel back ends, one module per format family. Each module exposes FORMATS (the Format types it
serves) and quantize(x, out, fmt, rounding, seed, rand_bits), which writes the rounding of x into out:
both contiguous tensors of the same shape, dtype (float32 or float64) and device (CPU or CUDA).
Random bits for element i (row-major index) depend only on (seed, i), whichever device runs it."""
from __future__ import annotations

import functools

import torch

from qsim import _C
from qsim.formats import Format

# Fresh CPU outputs from this size on ask for huge pages. A 4 KiB page faults in at ~0.6 µs, ~4x the time
# to round its 1024 floats, so faults are most of the time of quantizing into a new tensor; one fault per
# 2 MiB makes that time the kernel's (2^24 float32: 13 ms -> 4 ms). Smaller buffers are mostly recycled
# by the allocator, already faulted in.
_HUGE_PAGE_MIN_BYTES = 4 << 20


@functools.cache
def _by_type() -> dict[type, object]:
    from qsim.backends import block, elementwise, logarithmic, posit

    return {fmt_type: module for module in (elementwise, block, posit, logarithmic) for fmt_type in module.FORMATS}


def supports(fmt: Format) -> bool:
    return type(fmt) in _by_type()


def quantize(x, out, fmt: Format, rounding: int, seed: int, rand_bits: int) -> None:
    _by_type()[type(fmt)].quantize(x, out, fmt, rounding, seed, rand_bits)


def empty_output(like: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous tensor of like's shape, dtype and device for a kernel to fill, large
    CPU ones backed by transparent huge pages where the system has them (as torch's own allocator does
    for every tensor under THP_MEM_ALLOC_ENABLE=1)."""
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    if out.device.type == "cpu" and out.nbytes >= _HUGE_PAGE_MIN_BYTES:
        _C.advise_huge_pages(out.data_ptr(), out.nbytes)
    return out
