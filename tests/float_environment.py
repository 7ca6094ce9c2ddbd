"""Context managers that put the calling thread's floating-point environment out of its default, so
tests can check that the kernels' FPU short paths step aside there and the results stay the same.
Each skips the test where the platform gives no way to set it."""
import contextlib
import ctypes
import ctypes.util
import platform

import pytest
import torch


@contextlib.contextmanager
def rounding_downward():
    if platform.machine() not in ("x86_64", "AMD64") or not ctypes.util.find_library("m"):
        pytest.skip("FE_DOWNWARD's value is known here for x86-64 glibc only")
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    assert libm.fesetround(0x400) == 0  # FE_DOWNWARD
    try:
        yield
    finally:
        libm.fesetround(0)  # FE_TONEAREST


@contextlib.contextmanager
def flushing_subnormals():
    if not torch.set_flush_denormal(True):
        pytest.skip("no flush-to-zero control on this CPU")
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
