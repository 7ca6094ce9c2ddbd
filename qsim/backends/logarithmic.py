"""Back end of Logarithmic formats: the threshold tables of csrc/qsim/lns.h, built once per (format,
dtype, threshold kind, device) from the exact arithmetic of qsim.formats.logarithmic, and the calls to
csrc/cpu/nonuniform.cpp (CPU) and csrc/cuda/nonuniform.cu (GPU)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from qsim import _C, cuda
from qsim.formats import Logarithmic, parse
from qsim.rounding import ROUNDING_MODES

FORMATS = (Logarithmic,)
_NEAREST = (ROUNDING_MODES.index("nearest"), ROUNDING_MODES.index("nearest_away"))
_LAYOUT = {torch.float32: (23, 127, np.uint32, torch.int32), torch.float64: (52, 1023, np.uint64, torch.int64)}


_HEADER = 8  # kLnsHeader: table words before the records
_MIN_BUCKET_BITS = 9  # float records keep the offset in 15 bits: 2^(23 - b) ≤ 2^14
_PERMUTED = 32  # kLnsPermuted: the most buckets of the permuted float32 records


def bucket_records(thresholds: list[int], mantissas: list[int], p: int, bucket_bits: int,
                   directed: bool) -> tuple[np.ndarray, ...]:
    """(off, lo, hi, base) over the 2^b buckets of the top b bits of a p-bit mantissa M: j = base +
    (M mod 2^(p-b) ≥ off) counts the thresholds ≤ M, lo = V(base) and hi = V(base + 1) (nearest
    tables) or V(base + 2) (directed tables, where V(base + 1) is the bucket's threshold; V(base + 1)
    when the bucket has none), with V(i) = mantissas[i] and 2^p past the binade. Each bucket must hold
    at most one threshold."""
    width = p - bucket_bits
    buckets = np.array(thresholds, dtype=np.uint64) >> np.uint64(width)
    if len(np.unique(buckets)) != len(buckets):
        raise AssertionError("two thresholds share a bucket; thresholds must be more than 2^-(f+1) apart")
    count = 1 << bucket_bits
    has = np.zeros(count, dtype=bool)
    has[buckets.astype(np.int64)] = True
    off = np.full(count, 1 << width, dtype=np.uint64)
    off[buckets.astype(np.int64)] = np.array(thresholds, dtype=np.uint64) - (buckets << np.uint64(width))
    starts = np.arange(count, dtype=np.uint64) << np.uint64(width)
    base = np.searchsorted(np.array(thresholds, dtype=np.uint64), starts, side="left").astype(np.int64)
    v = np.array(list(mantissas) + [1 << p] * 3, dtype=np.uint64)
    hi = v[base + 1 + (has if directed else 0)]
    return off, v[base], hi, base.astype(np.uint64)


def permuted_records(thresholds: list[int], mantissas: list[int], p: int, bucket_bits: int,
                     directed: bool) -> np.ndarray | None:
    """The float32 records of 2^(f+1) ≤ 32 buckets, for the CPU kernel's register permutes
    (csrc/cpu/nonuniform.cpp): three arrays of _PERMUTED words, lo, hi and off | (base & 1) << 31 (off
    needs up to 23 - b + 1 bits, more than the 15 of a packed record); None for more buckets."""
    if 1 << bucket_bits > _PERMUTED:
        return None
    off, lo, hi, base = bucket_records(thresholds, mantissas, p, bucket_bits, directed)
    words = np.zeros((3, _PERMUTED), dtype=np.uint32)
    words[:, :len(off)] = [lo, hi, off | ((base & np.uint64(1)) << np.uint64(31))]
    return words.reshape(-1)


@functools.lru_cache(maxsize=256)
def table(fmt: Logarithmic, dtype: torch.dtype, nearest: bool) -> np.ndarray:
    """The table of csrc/qsim/lns.h for `dtype`: the header (zero threshold, w_min, w_max, low, high,
    p - b, and for float32 formats with 2^(f+1) ≤ 32 the offset and width of the permuted records),
    then one record per bucket over the nearest-mode midpoints or (directed and stochastic modes) the
    values themselves, then those permuted records."""
    p, bias, np_dtype, _ = _LAYOUT[dtype]
    values = list(fmt.binade_values(p))
    scale = 1 << fmt.frac_bits

    def bits(code: int, mantissas) -> int:  # 2^floor(code/2^f)·(1 + mantissas[code mod 2^f]·2^-p)
        binade, j = divmod(code, scale)
        return ((binade + bias) << p) | mantissas[j]

    binade, zero_fraction, _ = fmt.zero_threshold(p)
    zero_bits = ((binade + bias) << p) | zero_fraction
    w_min, w_max = bits(fmt.code_min, values), bits(fmt.code_max, values)
    if nearest:
        midpoints = list(fmt.nearest_thresholds(p)[0])  # midpoints[j]: between codes j and j + 1 of a binade
        thresholds = midpoints
        low, high = bits(fmt.code_min - 1, midpoints) + 1, bits(fmt.code_max, midpoints)
    else:
        thresholds = values[1:]
        low, high = w_min, w_max
    bucket_bits = max(fmt.frac_bits + 1, _MIN_BUCKET_BITS)
    off, lo, hi, base = bucket_records(thresholds, values, p, bucket_bits, directed=not nearest)
    header = np.array([zero_bits, w_min, w_max, low, high, p - bucket_bits] + [0] * (_HEADER - 6), dtype=np.uint64)
    odd = (base & np.uint64(1)) << np.uint64(63)
    if dtype == torch.float32:
        records = lo | (hi << np.uint64(24)) | (off << np.uint64(48)) | odd
        permuted = permuted_records(thresholds, values, p, fmt.frac_bits + 1, directed=not nearest)
        if permuted is not None:  # header[6]: their offset in words, header[7]: their width
            header[6:8] = _HEADER + 2 * len(records), p - (fmt.frac_bits + 1)
            return np.concatenate([header.astype(np.uint32), records.view(np.uint32), permuted])
        return np.concatenate([header.astype(np.uint32), records.view(np.uint32)])
    records = np.stack([off | odd, lo, hi], axis=1).reshape(-1)
    return np.concatenate([header, records]).astype(np_dtype)


# The tables and parameters are cached by the format's spec and the device's name: strings hash once, a
# format or a torch.device field by field on every call.
@functools.lru_cache(maxsize=256)
def _device_table(spec: str, dtype: torch.dtype, nearest: bool, device: str) -> torch.Tensor:
    host = table(parse(spec), dtype, nearest)
    return torch.from_numpy(host.view(np.int32 if dtype == torch.float32 else np.int64)).to(device)


@functools.lru_cache(maxsize=256)
def _spec_params(spec: str) -> _C.LnsParams:
    fmt = parse(spec)
    exact_ties = fmt.nearest_thresholds(23)[1]
    return _C.LnsParams(fmt.frac_bits, fmt.code_min, fmt.code_max, int(fmt.signed), int(exact_ties))


@functools.lru_cache(maxsize=1024)
def _cpu_call(spec: str, dtype: torch.dtype, rounding: int) -> tuple:
    """(kernel, parameters, table) of a CPU call, looked up once per (spec, dtype, mode): naming the device
    (str(x.device)) and two more cache look-ups cost ~0.7 us, a seventh of a small tensor's call."""
    lookup = _device_table(spec, dtype, rounding in _NEAREST, "cpu")
    return _C.lns_f32 if dtype == torch.float32 else _C.lns_f64, _spec_params(spec), lookup


def quantize(x: torch.Tensor, out: torch.Tensor, fmt: Logarithmic, rounding: int, seed: int, rand_bits: int) -> None:
    if x.is_cuda:
        lookup = _device_table(fmt.spec, x.dtype, rounding in _NEAREST, str(x.device))
        exact_ties = fmt.nearest_thresholds(23)[1]
        cuda.launch("cuda/nonuniform.cu", cuda.kernel_name("lns", rounding, x.dtype), x, out,
                    [("i32", fmt.frac_bits), ("i32", fmt.code_min), ("i32", fmt.code_max), ("i32", int(fmt.signed)),
                     ("i32", int(exact_ties)), ("u64", lookup.data_ptr()), ("u64", seed), ("i32", 32 - rand_bits)])
    else:
        kernel, lns_params, lookup = _cpu_call(fmt.spec, x.dtype, rounding)
        kernel(x.data_ptr(), out.data_ptr(), x.numel(), lns_params, lookup.data_ptr(), rounding, seed, rand_bits)
