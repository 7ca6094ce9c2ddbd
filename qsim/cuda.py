"""CUDA launching for every back end: a kernel file of csrc/ (which includes the same rounding headers
as the CPU code) is compiled with NVRTC through CuPy on first use and launched on torch's current
stream, one thread per group of four elements.

Compiling at first use keeps `pip install` free of a CUDA toolchain and of torch's ABI; CuPy caches
the compiled module on disk. Needs `cupy-cuda12x` or `cupy-cuda13x`, matching the installed CUDA.
"""
from __future__ import annotations

import functools
from importlib import resources

import torch

from qsim.rounding import ROUNDING_MODES

_THREADS = 256
_MAX_BLOCKS = 65535 * 8


@functools.cache
def require():
    """CuPy, once this torch is known to run CUDA: a CUDA tensor reaching qsim otherwise gets a RuntimeError
    that says what is missing, instead of an AssertionError from deep inside torch.cuda."""
    if not torch.cuda.is_available():
        build = ("this torch build has no CUDA support (torch.version.cuda is None): install a CUDA build of torch"
                 if torch.version.cuda is None else "torch sees no CUDA device")
        raise RuntimeError(f"x: a CUDA tensor, but {build}; or quantize x.cpu()")
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("quantizing CUDA tensors needs CuPy: pip install cupy-cuda12x (or cupy-cuda13x) "
                           "matching your CUDA version") from err
    return cupy


@functools.cache
def module(source: str):
    """The compiled module of csrc/<source>. Without fused multiply-adds: the CPU kernels round every
    product and sum of the rounding headers separately, and the GPU must too to give the same bits."""
    csrc = resources.files("qsim.data") / "csrc"
    code = (csrc / source).read_text()
    return require().RawModule(code=code, options=("-std=c++17", "--fmad=false", f"-I{csrc}"))


def kernel_name(prefix: str, rounding: int, dtype: torch.dtype) -> str:
    return f"{prefix}_{ROUNDING_MODES[rounding]}_{'f32' if dtype == torch.float32 else 'f64'}"


def launch(source: str, name: str, x: torch.Tensor, out: torch.Tensor, args: list, groups: int | None = None) -> None:
    """Runs kernel `name`(x, out, n, *args) over `groups` thread-groups (default: one per 4 elements).
    args are (type, value) pairs with type one of i32, i64, u64, f32, f64."""
    cupy = require()
    casts = {"i32": cupy.int32, "i64": cupy.int64, "u64": cupy.uint64, "f32": cupy.float32, "f64": cupy.float64}
    n = x.numel()
    groups = (n + 3) // 4 if groups is None else groups
    blocks = max(1, min((groups + _THREADS - 1) // _THREADS, _MAX_BLOCKS))
    kernel = module(source).get_function(name)
    with torch.cuda.device(x.device), cupy.cuda.ExternalStream(torch.cuda.current_stream(x.device).cuda_stream):
        kernel((blocks,), (_THREADS,), (cupy.from_dlpack(x.detach()), cupy.from_dlpack(out.detach()),
                                        cupy.int64(n), *[casts[kind](value) for kind, value in args]))
