"""Back end of Logarithmic formats: the threshold tables of csrc/qsim/lns.h, built once per (format,
dtype, threshold kind, device) from the exact arithmetic of qsim.formats.logarithmic, and the calls to
csrc/cpu/nonuniform.cpp (CPU) and csrc/cuda/nonuniform.cu (GPU)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from qsim import _C, cuda
from qsim.formats import Logarithmic
from qsim.rounding import ROUNDING_MODES

FORMATS = (Logarithmic,)
_NEAREST = (ROUNDING_MODES.index("nearest"), ROUNDING_MODES.index("nearest_away"))
_LAYOUT = {torch.float32: (23, 127, np.uint32, torch.int32), torch.float64: (52, 1023, np.uint64, torch.int64)}


def bucket_table(thresholds: list[int], p: int, frac_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(thr, base) over the 2^(f+1) buckets of the top f+1 bits of a p-bit mantissa M: j = base[B] +
    (M ≥ thr[B]) counts the thresholds ≤ M. Each bucket must hold at most one threshold."""
    width = p - frac_bits - 1
    buckets = np.array(thresholds, dtype=np.uint64) >> np.uint64(width)
    if len(np.unique(buckets)) != len(buckets):
        raise AssertionError("two thresholds share a bucket; thresholds must be more than 2^-(f+1) apart")
    count = 2 << frac_bits
    thr = np.full(count, 1 << p, dtype=np.uint64)
    thr[buckets.astype(np.int64)] = thresholds
    starts = np.arange(count, dtype=np.uint64) << np.uint64(width)
    base = np.searchsorted(np.array(thresholds, dtype=np.uint64), starts, side="left").astype(np.uint64)
    return thr, base


@functools.lru_cache(maxsize=256)
def table(fmt: Logarithmic, dtype: torch.dtype, nearest: bool) -> np.ndarray:
    """The table of csrc/qsim/lns.h for `dtype`: zero threshold, values, then the bucket table of the
    nearest-mode midpoints or (directed and stochastic modes) of the values themselves."""
    p, bias, np_dtype, _ = _LAYOUT[dtype]
    values = list(fmt.binade_values(p))
    binade, zero_fraction, _ = fmt.zero_threshold(p)
    zero_bits = ((binade + bias) << p) | zero_fraction
    thresholds = list(fmt.nearest_thresholds(p)[0]) if nearest else values[1:]
    thr, base = bucket_table(thresholds, p, fmt.frac_bits)
    return np.concatenate([np.array([zero_bits] + values, dtype=np.uint64), thr, base]).astype(np_dtype)


@functools.lru_cache(maxsize=256)
def _device_table(fmt: Logarithmic, dtype: torch.dtype, nearest: bool, device: torch.device) -> torch.Tensor:
    host = table(fmt, dtype, nearest)
    return torch.from_numpy(host.view(np.int32 if dtype == torch.float32 else np.int64)).to(device)


@functools.lru_cache(maxsize=256)
def params(fmt: Logarithmic) -> _C.LnsParams:
    exact_ties = fmt.nearest_thresholds(23)[1]
    return _C.LnsParams(fmt.frac_bits, fmt.code_min, fmt.code_max, int(fmt.signed), int(exact_ties))


def quantize(x: torch.Tensor, out: torch.Tensor, fmt: Logarithmic, rounding: int, seed: int, rand_bits: int) -> None:
    nearest = rounding in _NEAREST
    lookup = _device_table(fmt, x.dtype, nearest, x.device)
    if x.is_cuda:
        exact_ties = fmt.nearest_thresholds(23)[1]
        cuda.launch("cuda/nonuniform.cu", cuda.kernel_name("lns", rounding, x.dtype), x, out,
                    [("i32", fmt.frac_bits), ("i32", fmt.code_min), ("i32", fmt.code_max), ("i32", int(fmt.signed)),
                     ("i32", int(exact_ties)), ("u64", lookup.data_ptr()), ("u64", seed), ("i32", 32 - rand_bits)])
    else:
        kernel = _C.lns_f32 if x.dtype == torch.float32 else _C.lns_f64
        kernel(x.data_ptr(), out.data_ptr(), x.numel(), params(fmt), lookup.data_ptr(), rounding, seed, rand_bits)
