"""Back end of the block formats (BlockFloatingPoint, MX): lays the tensor out as rows whose blocks
are contiguous (moving the block axis last, or first for one exponent per slice), fills the C struct
BlockParams (csrc/qsim/block.h) and runs csrc/cpu/block.cpp or csrc/cuda/block.cu. Random bits are
keyed by the element's index in that layout."""
from __future__ import annotations

import functools

import torch

from qsim import _C, cuda
from qsim.backends.elementwise import kernel_params, params_as_args
from qsim.formats.block import MX, SCALE_RULES, BlockFloatingPoint

FORMATS = (BlockFloatingPoint, MX)
_SCALE_FORMAT = 3  # kScaleFormat


@functools.lru_cache(maxsize=256)
def block_params(fmt) -> _C.BlockParams:
    b = _C.BlockParams()
    b.element = kernel_params(fmt.element_grid())
    b.element_emax = fmt.element_emax
    b.scale_emin, b.scale_emax = fmt.scale_range
    b.element_max = float(fmt.element_grid().max_pos)
    b.tensor_scale = 1.0
    if isinstance(fmt, MX) and fmt.scale != "e8m0":
        b.rule = _SCALE_FORMAT
        b.scale = kernel_params(fmt.scale.grid())
    else:
        b.rule = SCALE_RULES.index(fmt.scale_rule) if isinstance(fmt, MX) else 0
        b.scale = b.element
    return b


def _rows(x: torch.Tensor, fmt) -> tuple[torch.Tensor, int, int | None, int]:
    """x as a contiguous (rows, row_length) tensor whose rows hold whole blocks, the block length, and
    the axis moved to make it so (None when x's own layout already is: no copy) and where it went."""
    shape = x.shape if x.dim() else (1,)
    if fmt.block_size is None and (fmt.dim is None or len(shape) < 2):  # one exponent per tensor
        return x.reshape(1, -1), max(1, x.numel()), None, 0
    dim = _checked_dim(-1 if fmt.dim is None else fmt.dim, len(shape))
    x = x.reshape(shape)
    if fmt.block_size is None:  # BFP: one exponent per index of `dim`
        if dim == 0:
            return x.reshape(shape[0], -1), max(1, x[0].numel()), None, 0
        moved = x.movedim(dim, 0).contiguous()
        return moved.reshape(moved.shape[0], -1), max(1, moved[0].numel()), dim, 0
    if dim == len(shape) - 1:
        return x.reshape(-1, shape[-1]), fmt.block_size, None, -1
    moved = x.movedim(dim, -1).contiguous()
    return moved.reshape(-1, moved.shape[-1]), fmt.block_size, dim, -1


def _checked_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"fmt: the block dim {dim} is out of range for a tensor with {ndim} dims")
    return dim % ndim


def quantize(x: torch.Tensor, out: torch.Tensor, fmt, rounding: int, seed: int, rand_bits: int) -> None:
    rows, block, moved_dim, moved_to = _rows(x, fmt)
    params = block_params(fmt)
    if isinstance(fmt, MX) and fmt.tensor_scale:
        params = _with_tensor_scale(params, fmt, rows)
    result = out.view(rows.shape) if moved_dim is None else torch.empty_like(rows)
    n_rows, row_length = rows.shape
    if x.is_cuda:
        per_row = (row_length + block - 1) // block
        cuda.launch("cuda/block.cu", cuda.kernel_name("quantize_blocks", rounding, x.dtype), rows, result,
                    [("i64", n_rows), ("i64", row_length), ("i64", block), *block_args(params),
                     ("u64", seed), ("i32", 32 - rand_bits)], groups=n_rows * per_row)
    else:
        kernel = _C.quantize_blocks_f32 if x.dtype == torch.float32 else _C.quantize_blocks_f64
        kernel(rows.data_ptr(), result.data_ptr(), n_rows, row_length, block, params, rounding, seed, rand_bits)
    if moved_dim is not None:
        moved_shape = x.movedim(moved_dim, moved_to).shape  # a view: no copy
        out.copy_(result.reshape(moved_shape).movedim(moved_to, moved_dim))


def _with_tensor_scale(params: _C.BlockParams, fmt: MX, rows: torch.Tensor) -> _C.BlockParams:
    """NVFP4's per-tensor factor amax / (max(element) · max(scale)), so block scales fit the scale format.
    amax is NaN where the tensor holds a NaN (then the factor is 1) and inf where it holds an inf, on
    both devices: the CPU's one-read maximum (csrc/cpu/block.cpp) and torch's reduction on the GPU."""
    scaled = _C.BlockParams()
    for field in ("element", "scale", "rule", "element_emax", "scale_emin", "scale_emax", "element_max"):
        setattr(scaled, field, getattr(params, field))
    if rows.is_cuda:
        amax = rows.abs().max().item() if rows.numel() else 0.0
    else:
        max_magnitude = _C.max_magnitude_f32 if rows.dtype == torch.float32 else _C.max_magnitude_f64
        amax = max_magnitude(rows.data_ptr(), rows.numel())
    scaled.tensor_scale = amax / (fmt.element.max * fmt.scale.max) if amax > 0 else 1.0
    return scaled


def block_args(b: _C.BlockParams) -> list:
    """BlockParams field by field, as csrc/cuda/block.cu's kernels take them."""
    return [*params_as_args(b.element), *params_as_args(b.scale), ("i32", b.rule), ("i32", b.element_emax),
            ("i32", b.scale_emin), ("i32", b.scale_emax), ("f64", b.element_max), ("f64", b.tensor_scale)]
