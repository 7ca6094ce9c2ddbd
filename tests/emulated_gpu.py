"""A GPU emulated on the host, so that the CUDA kernels' own code runs on a machine without one.

csrc/cuda/*.cu are compiled by g++ with tests/cuda_host.h and called through ctypes in place of CuPy,
thread by thread over a small grid. Inside `emulated_gpu()`, CPU tensors take the CUDA branch of every
back end (Tensor.is_cuda reads True) and qsim.cuda.launch runs the host build of the kernel it names with
the arguments the back end built. That checks, against the CPU kernels, the kernels' thread indexing,
grid striding, float4 groups, random words per element and argument lists; only a real GPU checks the
device intrinsics and NVRTC (tests/test_cuda.py runs there too when one is present)."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import pathlib
import subprocess
import tempfile
from unittest import mock

import torch

import qsim.cuda

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKS, THREADS = 3, 5  # a grid smaller than the work, so every thread strides
_ARGUMENT_TYPES = {"i32": ctypes.c_int32, "i64": ctypes.c_int64, "u64": ctypes.c_uint64, "f32": ctypes.c_float,
                   "f64": ctypes.c_double}
_BUILD = tempfile.TemporaryDirectory(prefix="qsim-emulated-gpu-")  # removed at exit


@functools.cache
def host_build(source: str) -> ctypes.CDLL:
    """csrc/<source> compiled for the host as a shared library."""
    library = pathlib.Path(_BUILD.name) / (pathlib.Path(source).stem + ".so")
    subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC", "-fno-strict-aliasing", "-include",
                    str(ROOT / "tests" / "cuda_host.h"), f"-I{ROOT / 'csrc'}", "-x", "c++", str(ROOT / "csrc" / source),
                    "-o", str(library)], check=True, capture_output=True)
    return ctypes.CDLL(str(library))


def _launch(source: str, name: str, x: torch.Tensor, out: torch.Tensor, args: list, groups: int | None = None) -> None:
    """qsim.cuda.launch's contract, run by the host build on every thread of a BLOCKS x THREADS grid."""
    library = host_build(source)
    kernel = getattr(library, name)
    kernel.restype = None
    values = [ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(out.data_ptr()), ctypes.c_int64(x.numel()),
              *[_ARGUMENT_TYPES[kind](value) for kind, value in args]]
    for block in range(BLOCKS):
        for thread in range(THREADS):
            library.qsim_emulated_thread(BLOCKS, THREADS, block, thread)
            kernel(*values)


@contextlib.contextmanager
def emulated_gpu():
    """CPU tensors quantized inside this block run the CUDA kernels' code (see the module docstring)."""
    with mock.patch.object(torch.Tensor, "is_cuda", property(lambda self: True)), \
            mock.patch.object(qsim.cuda, "launch", _launch), mock.patch.object(qsim.cuda, "require", lambda: None):
        yield
