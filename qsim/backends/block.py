"""Back end of the block formats (BlockFloatingPoint, MX): lays the tensor out as rows whose blocks
are contiguous (moving the block axis last, or first for one exponent per slice), fills the C struct
BlockParams (csrc/qsim/block.h) and runs csrc/cpu/block.cpp or csrc/cuda/block.cu. Random bits are
keyed by the element's index in that layout."""
from __future__ import annotations

import functools
import math

import torch

from qsim import _C, cuda
from qsim.backends.elementwise import kernel_params, params_as_args
from qsim.formats import parse
from qsim.formats.block import MX, SCALE_RULES, BlockFloatingPoint

FORMATS = (BlockFloatingPoint, MX)
# The CPU kernel of each dtype it takes (bfloat16/float16: loaded into float32, stored back in one pass).
CPU_KERNELS = {torch.float32: _C.quantize_blocks_f32, torch.float64: _C.quantize_blocks_f64,
               torch.bfloat16: _C.quantize_blocks_bf16, torch.float16: _C.quantize_blocks_f16}
# With a per-tensor factor (NVFP4): the maximum, the factor and the blocks in one call.
SCALED_CPU_KERNELS = {torch.float32: _C.quantize_scaled_blocks_f32, torch.float64: _C.quantize_scaled_blocks_f64,
                      torch.bfloat16: _C.quantize_scaled_blocks_bf16, torch.float16: _C.quantize_scaled_blocks_f16}
_SCALE_FORMAT = 4  # kScaleFormat (after the SCALE_RULES)


def block_params(fmt) -> _C.BlockParams:
    """The C struct of a block format, cached by its spec (cheaper to hash than the format)."""
    return _spec_block_params(fmt.spec)


@functools.lru_cache(maxsize=256)
def _spec_block_params(spec: str) -> _C.BlockParams:
    fmt = parse(spec)
    b = _C.BlockParams()
    b.element = kernel_params(fmt.element_grid())
    b.element_emax = fmt.element_emax
    b.scale_emin, b.scale_emax = fmt.scale_range
    b.element_max = float(fmt.element_grid().max_pos)
    b.tensor_scale = b.smallest_scale = 1.0
    if isinstance(fmt, MX) and fmt.scale != "e8m0":
        b.rule = _SCALE_FORMAT
        b.scale = kernel_params(fmt.scale.grid())
        b.smallest_scale = 2.0 ** fmt.scale.grid().emin
    else:
        b.rule = SCALE_RULES.index(fmt.scale_rule) if isinstance(fmt, MX) else 0
        grid = fmt.element_grid()  # its quantum in the top binade: 2^(max(emax, emin) - man)
        b.even_bits = max(0, grid.man - max(0, grid.emin - fmt.element_emax))
        b.scale = b.element
    return b


@functools.lru_cache(maxsize=1024)
def _layout(shape: tuple, block_size: int | None, dim: int | None) -> tuple[int, int, int, int | None, int]:
    """How a contiguous tensor of this shape is cut into blocks of a format's block_size along its dim: (rows,
    row_length, block length, the axis moved to make whole blocks contiguous or None when the tensor's own
    layout has them, where it goes). Plain integers, cached: small tensors (layer hooks) pay no torch reshapes
    for it."""
    shape = shape or (1,)
    numel = math.prod(shape)
    if block_size is None and (dim is None or len(shape) < 2):  # one exponent per tensor
        return 1, numel, max(1, numel), None, 0
    dim = _checked_dim(-1 if dim is None else dim, len(shape))
    if block_size is None:  # BFP: one exponent per index of `dim`, moved first
        row_length = numel // max(1, shape[dim])
        return shape[dim], row_length, max(1, row_length), None if dim == 0 else dim, 0
    return numel // max(1, shape[dim]), shape[dim], block_size, None if dim == len(shape) - 1 else dim, -1


def _checked_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"fmt: the block dim {dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim


def quantize(x: torch.Tensor, out: torch.Tensor, fmt, rounding: int, seed: int, rand_bits: int) -> None:
    on_gpu = x.is_cuda
    if on_gpu:
        layout = _layout(x.shape, fmt.block_size, fmt.dim)
    else:
        layout, kernel, params, factor_range = _cpu_call(fmt.spec, x.dtype, x.shape)
    n_rows, row_length, block, moved_dim, moved_to = layout
    source, result = x, out
    if moved_dim is not None:  # (..., n, ...) → the block axis last (MX) or first (BFP slices), contiguous
        source = x.movedim(moved_dim, moved_to).contiguous()
        result = torch.empty_like(source)
    if on_gpu:
        params = block_params(fmt)
        if isinstance(fmt, MX) and fmt.tensor_scale:
            params = _with_tensor_scale(params, source, fmt.spec)
        per_row = (row_length + block - 1) // block
        cuda.launch("cuda/block.cu", cuda.kernel_name("quantize_blocks", rounding, x.dtype), source, result,
                    [("i64", n_rows), ("i64", row_length), ("i64", block), *block_args(params),
                     ("u64", seed), ("i32", 32 - rand_bits)], groups=n_rows * per_row)
    else:
        kernel(source.data_ptr(), result.data_ptr(), n_rows, row_length, block, params, *factor_range, rounding, seed,
               rand_bits)
    if moved_dim is not None:
        out.copy_(result.movedim(moved_to, moved_dim))


@functools.lru_cache(maxsize=1024)
def _cpu_call(spec: str, dtype: torch.dtype, shape: tuple) -> tuple:
    """(_layout, kernel, BlockParams, the arguments a per-tensor factor adds: () without one) of a CPU call,
    looked up once per (spec, dtype, shape): the format's fields, its type, its factor and four look-ups cost
    ~0.6 us a call, which small tensors (layer hooks) feel."""
    fmt = parse(spec)
    layout = _layout(shape, fmt.block_size, fmt.dim)
    if isinstance(fmt, MX) and fmt.tensor_scale:
        return layout, SCALED_CPU_KERNELS[dtype], _spec_block_params(spec), _scale_range(spec)
    return layout, CPU_KERNELS[dtype], _spec_block_params(spec), ()


def _with_tensor_scale(params: _C.BlockParams, x: torch.Tensor, spec: str) -> _C.BlockParams:
    """NVFP4's per-tensor factor (csrc/cpu/tensor_scale.h) on the GPU, from torch's reduction (NaN where the
    tensor holds a NaN); on the CPU the kernel finds it itself."""
    scaled = _C.BlockParams(params)
    scaled.tensor_scale = _C.tensor_scale(x.abs().max().item(), *_scale_range(spec))
    return scaled


@functools.lru_cache(maxsize=256)
def _scale_range(spec: str) -> tuple[float, float]:
    """(max(element) · max(scale), the smallest scale) of a format with a tensor scale, read once: each read of
    BlockParams.scale through pybind11 copies the struct (~0.5 us), which small tensors feel."""
    b = _spec_block_params(spec)
    return b.element_max * b.scale.max_pos_d, b.smallest_scale


def block_args(b: _C.BlockParams) -> list:
    """BlockParams field by field, as csrc/cuda/block.cu's kernels take them."""
    return [*params_as_args(b.element), *params_as_args(b.scale), ("i32", b.rule), ("i32", b.element_emax),
            ("i32", b.scale_emin), ("i32", b.scale_emax), ("i32", b.even_bits), ("f64", b.element_max),
            ("f64", b.tensor_scale), ("f64", b.smallest_scale)]
