"""Back end of OverQ (qsim.formats.overq): the kernel of qsim/overq.py, run wherever qsim.quantize runs a
format. A strategy step ("mse", "max", "percentile:P") is picked from the tensor on every call. CUDA
tensors are computed on a CPU copy (the rules are sequential along a channel; there is no GPU kernel)."""
from __future__ import annotations

import torch

from qsim.formats.overq import OverQ
from qsim.overq import choose_scale, overq_into
from qsim.rounding import ROUNDING_MODES

FORMATS = (OverQ,)
CPU_KERNELS = {torch.float32: None, torch.float64: None}  # the dtypes the kernel takes as they are
_NEAREST = ROUNDING_MODES.index("nearest")


def quantize(x: torch.Tensor, out: torch.Tensor, fmt: OverQ, rounding: int, seed: int, rand_bits: int) -> None:
    if rounding != _NEAREST:
        raise ValueError(f"rounding: OverQ rounds half to even only ('nearest'); got {ROUNDING_MODES[rounding]!r}")
    if not -x.dim() <= fmt.dim < x.dim():
        raise ValueError(f"dim: {fmt.spec} quantizes along dim {fmt.dim}; x has shape {tuple(x.shape)}")
    dim = fmt.dim % x.dim()
    source = x.cpu()
    scale = fmt.scale if isinstance(fmt.scale, float) else choose_scale(
        source, fmt.bits, fmt.scale, cascade=fmt.cascade, dim=dim, precision=fmt.precision)
    # The kernel reads x after writing out (its pointers are __restrict): in place, it writes a fresh buffer.
    in_place = out.data_ptr() == source.data_ptr()
    target = out if out.device.type == "cpu" and not in_place else torch.empty_like(source)
    overq_into(source, target, fmt.bits, scale, fmt.cascade, dim, fmt.precision)
    if target is not out:
        out.copy_(target)
