"""OverQ, overwrite quantization (Zhao, Dotzel, Hu, Ivanov, De Sa, Zhang, "OverQ: Opportunistic Outlier
Quantization for Neural Network Accelerators", arXiv:1910.06909): an activation outlier takes over the bits of
a nearby zero and is stored with twice the bits (range overwrite); an ordinary value next to a free zero takes
its bits as extra fraction (precision overwrite).

Exports overq_quantize, OverQInfo, choose_scale (the step a strategy picks) and overq_into (the kernel).
Not an elementwise format: the result of a position depends on its neighbours along the channel axis, so
it sits beside quant.py with its own kernel (csrc/cpu/overq.cpp).

qsim's definition (rules 1-5), for a non-negative tensor x, `bits` b, a positive `scale` s, `cascade` c:
1. Along `dim`, each vector of positions i = 0..L-1 is independent. The base code is
   q_i = min(rne(x_i/s), 2^b - 1), rne = round half to even (x_i/s divided in float64).
2. A zero slot is a position with rne(x_i/s) == 0; an outlier one with rne(x_i/s) > 2^b - 1.
3. Range overwrite, positions in increasing order: an outlier at i claims the nearest unclaimed zero slot j
   with i < j <= i + 1 + c; if it finds one its code becomes min(rne(x_i/s), 2^(2b) - 1), else it stays
   clipped. c = 0 reaches only the immediate neighbour; with c > 0 the values in between shift by one slot
   in hardware and are numerically unchanged.
4. Precision overwrite (if `precision`), a second pass in increasing order: a position with
   1 <= rne(x_i/s) <= 2^b - 1 claims the nearest zero slot still unclaimed with i < j <= i + 1 + c; its value
   becomes rne(x_i/s · 2^b) / 2^b (b more fractional bits).
5. A zero slot is claimed at most once and stays 0. y = code · s (computed in float64, rounded once to x's
   dtype), with x's shape and dtype.

Where the paper differs: it describes the mechanism in hardware terms and leaves the order of claims open;
qsim fixes that order (range before precision, greedy in increasing position, nearest free zero first), so
results are reproducible and a reference loop can check them. The paper looks for a zero beside an outlier
in the input-channel direction of a systolic array's activation feed; qsim's forward direction along `dim`
is that convention. Its outlier threshold is the clipping point of the b-bit grid, as here.

Inputs: NaN raises (no unsigned code holds it; a NaN activation is a bug upstream); +inf is an outlier (it
saturates at 2^b - 1 or, covered, at 2^(2b) - 1); -0.0 is a zero slot; any other negative value raises
(OverQ is unsigned: it is meant for post-ReLU activations). float16 and bfloat16 tensors are computed in
float32 and rounded back. CUDA tensors are computed on the CPU and moved back.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np
import torch

from qsim import _C
from qsim.formats.base import check_bool, check_int

MAX_CASCADE = 62  # the kernel keeps a vector's window of cascade + 2 positions in one 64-bit mask
# Flags of OverQInfo.state, as csrc/cpu/overq.h writes them.
ZERO, OUTLIER, COVERED, PRECISE, CLAIMED = 1, 2, 4, 8, 16
_KERNELS = {torch.float32: _C.overq_f32, torch.float64: _C.overq_f64}


@dataclass(frozen=True)
class OverQInfo:
    """What overwrite did to one tensor: counts, and per-position flags (`state`, uint8, x's shape) from
    which the masks are derived on demand."""

    outliers: int    # positions with rne(x/s) > 2^b - 1
    covered: int     # outliers that claimed a zero slot (range overwrite)
    precise: int     # ordinary values that claimed a zero slot (precision overwrite)
    zero_slots: int  # positions with rne(x/s) == 0
    state: torch.Tensor

    @property
    def coverage(self) -> float:
        """Fraction of outliers covered by range overwrite (NaN when there are no outliers)."""
        return self.covered / self.outliers if self.outliers else math.nan

    @property
    def covered_mask(self) -> torch.Tensor:
        return (self.state & COVERED) != 0

    @property
    def precise_mask(self) -> torch.Tensor:
        return (self.state & PRECISE) != 0

    @property
    def claimed_mask(self) -> torch.Tensor:
        """Zero slots taken by an overwrite (their bits hold another value's; they still read as 0)."""
        return (self.state & CLAIMED) != 0

    @property
    def outlier_mask(self) -> torch.Tensor:
        return (self.state & OUTLIER) != 0

    @property
    def zero_mask(self) -> torch.Tensor:
        return (self.state & ZERO) != 0


def check_scale(scale, argument: str = "scale") -> float:
    """`scale` as a float if it is a positive finite real number; else raises naming `argument`."""
    if isinstance(scale, torch.Tensor) and scale.numel() == 1:
        scale = scale.item()
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{argument}: expected a positive finite number; got {scale!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{argument}: expected a positive finite number; got {scale}")
    return scale


def check_options(bits, cascade, precision) -> None:
    check_int(bits, "bits", 2, 16)
    check_int(cascade, "cascade", 0, MAX_CASCADE)
    check_bool(precision, "precision")


class _StraightThrough(torch.autograd.Function):
    """The overwritten tensor forward, the gradient passed through unchanged (as qsim.quantize)."""

    @staticmethod
    def forward(ctx, x, y):
        return y

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def overq_quantize(x: torch.Tensor, bits: int, scale, *, cascade: int = 1, dim: int = 1,
                   precision: bool = True) -> tuple[torch.Tensor, OverQInfo]:
    """(y, info): x quantized unsigned to `bits` with step `scale`, outliers and ordinary values overwriting
    free zeros within 1 + `cascade` positions along `dim` (rules 1-5 in this module's docstring).

    dim is the channel axis: 1 for NCHW activations, -1 for a linear layer's (N, features). The gradient
    is straight-through."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor; got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"x: expected a floating tensor (float32, float64, float16 or bfloat16); got {x.dtype}")
    check_options(bits, cascade, precision)
    scale = check_scale(scale)
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected an int; got {dim!r}")
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim: expected an axis of x in [{-x.dim()}, {x.dim() - 1}] (x has shape "
                         f"{tuple(x.shape)}); got {dim}")
    dim %= x.dim()

    work = x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    out = torch.empty_like(work)
    info = overq_into(work, out, bits, scale, cascade, dim, precision)
    y = out.to(x.device, x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:
        y = _StraightThrough.apply(x, y)
    return y, info if x.device.type == "cpu" else replace(info, state=info.state.to(x.device))


def overq_into(x: torch.Tensor, out: torch.Tensor, bits: int, scale: float, cascade: int, dim: int,
               precision: bool) -> OverQInfo:
    """The kernel on checked arguments: x and out distinct, contiguous CPU tensors of one dtype (float32 or
    float64), dim in [0, x.dim()). Raises for negative or NaN values of x."""
    state = torch.empty(x.shape, dtype=torch.uint8)
    outer, length, inner = math.prod(x.shape[:dim]), x.shape[dim], math.prod(x.shape[dim + 1:])
    counts = (0, 0, 0, 0, 0) if x.numel() == 0 else _KERNELS[x.dtype](
        x.data_ptr(), out.data_ptr(), state.data_ptr(), outer, length, inner, bits, cascade, precision, scale)
    outliers, covered, precise, zeros, invalid = counts
    if invalid:
        check_values(x)
    return OverQInfo(outliers, covered, precise, zeros, state)


def check_values(x: torch.Tensor) -> None:
    """Raises for NaN or negative values of x (OverQ is unsigned)."""
    nans = int(torch.isnan(x).sum())
    if nans:
        raise ValueError(f"x: {nans} NaN values; OverQ has no code for NaN")
    negative = int((x < 0).sum())
    if negative:
        raise ValueError(f"x: expected non-negative values (OverQ is unsigned, for post-ReLU activations); "
                         f"got {negative} negative values, the smallest {x.min().item()}")


MSE_CANDIDATES = 64


def choose_scale(x: torch.Tensor, bits: int, strategy: str, *, cascade: int = 1, dim: int = 1,
                 precision: bool = True) -> float:
    """The step a strategy picks for x: "max" puts max(x) on the top code 2^bits - 1; "percentile:P" the
    P-th percentile; "mse" the step among max-step·k/64 (k = 1..64) whose OverQ result is closest to x in
    squared error. An all-zero x gets step 1 (every step gives the same zeros)."""
    check_values(x)
    values = x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    top = 2**bits - 1
    amax = float(values.max()) if values.numel() else 0.0
    if strategy.startswith("percentile:"):
        amax = float(np.percentile(values.numpy(), float(strategy.split(":", 1)[1])))
    if not math.isfinite(amax):
        raise ValueError(f"x: the {strategy!r} step needs a finite maximum; x holds +inf")
    if amax == 0:
        return 1.0
    if strategy == "max" or strategy.startswith("percentile:"):
        return amax / top
    if strategy != "mse":
        raise ValueError(f"scale: expected 'mse', 'max' or 'percentile:P'; got {strategy!r}")
    dim %= values.dim()
    out, difference = torch.empty_like(values), torch.empty_like(values)
    best, best_error = amax / top, math.inf
    for k in range(1, MSE_CANDIDATES + 1):
        step = amax / top * k / MSE_CANDIDATES
        overq_into(values, out, bits, step, cascade, dim, precision)
        error = float(torch.sub(out, values, out=difference).square_().sum(dtype=torch.float64))
        if error < best_error:
            best, best_error = step, error
    return best
