"""The CUDA backend: compiles csrc/cuda/quantize.cu (which includes the shared rounding header) with
NVRTC through CuPy on first use, and launches it on torch's current stream.

Compiling at first use keeps `pip install` free of a CUDA toolchain and of torch's ABI; the compiled
module is cached by CuPy on disk. Needs `cupy-cuda12x`/`cupy-cuda13x` matching the installed CUDA.
"""
from __future__ import annotations

import functools
from importlib import resources

import torch

from qsim.rounding import ROUNDING_MODES

_THREADS = 256


@functools.cache
def _module():
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("quantizing CUDA tensors needs CuPy: pip install cupy-cuda12x (or cupy-cuda13x) "
                           "matching your CUDA version") from err
    csrc = resources.files("qsim.data") / "csrc"
    source = (csrc / "cuda" / "quantize.cu").read_text()
    return cupy.RawModule(code=source, options=("-std=c++17", f"-I{csrc}"), name_expressions=None)


def kernel_name(rounding: int, dtype: torch.dtype) -> str:
    return f"quantize_{ROUNDING_MODES[rounding]}_{'f32' if dtype == torch.float32 else 'f64'}"


def quantize(x: torch.Tensor, out: torch.Tensor, params, rounding: int, seed: int, rand_bits: int) -> None:
    """out = q(x) for contiguous float32/float64 CUDA tensors on the same device."""
    import cupy

    kernel = _module().get_function(kernel_name(rounding, x.dtype))
    n = x.numel()
    blocks = max(1, min((n + 4 * _THREADS - 1) // (4 * _THREADS), 65535 * 8))
    with torch.cuda.device(x.device), cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream):
        kernel((blocks,), (_THREADS,), (
            cupy.from_dlpack(x.detach()), cupy.from_dlpack(out.detach()), cupy.int64(n),
            cupy.int32(params.man), cupy.int32(params.emin), cupy.int32(params.subnormals),
            cupy.int32(params.overflow), cupy.int32(params.has_inf), cupy.int32(params.neg_zero),
            cupy.int32(params.wrap_bits), cupy.int32(params.wrap_signed),
            cupy.float32(params.max_pos_f), cupy.float32(params.max_neg_f),
            cupy.float64(params.max_pos_d), cupy.float64(params.max_neg_d),
            cupy.uint64(seed), cupy.int32(32 - rand_bits),
        ))
