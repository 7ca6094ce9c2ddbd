"""Quantize a tensor on the way forward and its gradient on the way back.

Exports Quantizer (a module), quantizer (a factory returning a function, as QPyTorch's quantizer()),
quantize_fb (the function itself), round_gradient (a gradient-only rounding that makes no copy) and
FlushCheck / FlushWarning (a warning when rounding wipes out a tensor). This is QPyTorch's Quantizer: placed after a layer, `forward`
is the activation format (A) and `backward` the error format (E). qsim.quantize alone has a
straight-through gradient; this adds the rounding of the gradient, in a small autograd Function.
With scaling="tensor" each tensor is multiplied by a power of two that brings its largest magnitude
just under the format's max before rounding, and divided by it after (per-tensor current scaling, as
TransformerEngine's fp8 recipes use); a power of two keeps the scaling itself exact.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
from torch import nn

from qsim.quant import quantize
from qsim.nn.spec import SCALINGS, check_rounding, resolve_format


class FlushWarning(UserWarning):
    """A quantized tensor lost most or all of its nonzero values to zero (a format too narrow or unscaled)."""


class FlushCheck:
    """Checks the first tensor rounded at one place (a module's weight, its error...) and warns if rounding
    flushed all of its nonzero values to zero, or more than half of them in a format without scaling.

    Only the first use is checked, so a training step pays for it once: the typical failures (integers
    without a scale, fp8 e5m2 gradients of a freshly initialised network) show at once."""

    def __init__(self, where: str):
        self.where, self.pending = where, True

    def __call__(self, x: torch.Tensor, y: torch.Tensor, fmt, scaling: str | None) -> None:
        self.pending = False
        nonzero = int(torch.count_nonzero(x))
        if nonzero == 0:
            return
        flushed = int(torch.count_nonzero((x != 0) & (y == 0)))
        if flushed == nonzero or (scaling is None and 2 * flushed > nonzero):
            hint = (" (an integer format holds unscaled integers: give the spec scaling='tensor' to scale each "
                    "tensor into its range)" if scaling is None and getattr(fmt, "spec", "").startswith("fixed<")
                    else " (a format with a wider range, or scaling='tensor', keeps them)")
            warnings.warn(f"qsim: {self.where}: {fmt.name} rounded {flushed} of the {nonzero} nonzero values of a "
                          f"{tuple(x.shape)} tensor to zero{hint}", FlushWarning, stacklevel=2)


def round_tensor(x: torch.Tensor, fmt, rounding: str, scaling: str | None = None,
                 check: FlushCheck | None = None) -> torch.Tensor:
    """x rounded to `fmt` (no autograd), optionally with per-tensor power-of-two scaling; `check`, if pending,
    is shown the input and the result."""
    y = _rounded(x, fmt, rounding, scaling)
    if check is not None and check.pending:
        check(x, y, fmt, scaling)
    return y


def _rounded(x: torch.Tensor, fmt, rounding: str, scaling: str | None) -> torch.Tensor:
    if scaling is None:
        return quantize(x, fmt, rounding)
    amax = x.detach().abs().amax().float()
    # The largest 2^k with amax·2^k <= max, from exact exponents: with max = m·2^e and amax = a·2^f (m, a in
    # [1/2, 1)), k = e − f, less one where a > m. Not floor(log2(max / amax)): a quotient or a log2 one ulp
    # off at a power of two (compilers' log2 differ) would halve the scale. Clamped to keep 2^k a normal
    # float32; a zero, inf or NaN maximum leaves the tensor unscaled.
    max_mantissa, max_exponent = math.frexp(fmt.max)
    mantissa, exponent = torch.frexp(amax)
    exponent = (max_exponent - exponent - (mantissa > max_mantissa).to(exponent.dtype)).clamp(-126, 126)
    usable = (amax > 0) & torch.isfinite(amax)
    scale = torch.where(usable, torch.exp2(exponent.float()), torch.ones_like(amax)).to(x.dtype)
    return quantize(x * scale, fmt, rounding) / scale


class _ForwardBackward(torch.autograd.Function):
    """Identity in value up to rounding: forward rounds x to `forward`, backward rounds the gradient to `backward`."""

    @staticmethod
    def forward(ctx, x, forward, backward, forward_rounding, backward_rounding, scaling, checks):
        ctx.backward_format, ctx.backward_rounding, ctx.scaling = backward, backward_rounding, scaling
        ctx.check = checks[1]
        # Not x.view_as(x): a view made inside a custom Function cannot be modified in place afterwards, and
        # layers are commonly followed by ReLU(inplace=True).
        return x.clone() if forward is None else round_tensor(x, forward, forward_rounding, scaling, checks[0])

    @staticmethod
    def backward(ctx, grad):
        if ctx.backward_format is not None:
            grad = round_tensor(grad, ctx.backward_format, ctx.backward_rounding, ctx.scaling, ctx.check)
        return grad, None, None, None, None, None, None


def quantize_fb(x: torch.Tensor, forward=None, backward=None, forward_rounding: str = "nearest",
                backward_rounding: str = "nearest", scaling: str | None = None,
                checks: tuple[FlushCheck | None, FlushCheck | None] = (None, None)) -> torch.Tensor:
    """x rounded to `forward`; the gradient flowing back through it rounded to `backward` (either may be None).

    Formats must already be Format values (see quantizer() for the checked entry point); `checks` are the
    FlushChecks of the forward and the backward rounding."""
    if backward is None or not x.requires_grad:
        if forward is None:
            return x
        if scaling is None:
            return round_tensor(x, forward, forward_rounding, None, checks[0])  # straight-through gradient
        backward = None
    return _ForwardBackward.apply(x, forward, backward, forward_rounding, backward_rounding, scaling, checks)


def round_gradient(x: torch.Tensor, fmt, rounding: str = "nearest", scaling: str | None = None,
                   check: FlushCheck | None = None) -> torch.Tensor:
    """x itself, its gradient rounded to `fmt` on the way back; `fmt` must be a Format value.

    Unlike quantize_fb(x, None, fmt) it makes no copy: a hook on x's autograd node. Such a hook survives
    a later in-place op on x (ReLU(inplace=True)) and receives the gradient of x's own value. It rounds the
    gradient of every use of x together, which for a layer's output is exactly the layer's error E."""
    if x.grad_fn is None:  # a leaf (or no gradient): a hook would stay on it for good
        return quantize_fb(x, None, fmt, backward_rounding=rounding, scaling=scaling, checks=(None, check))
    x.register_hook(functools.partial(round_tensor, fmt=fmt, rounding=rounding, scaling=scaling, check=check))
    return x


def _checked(forward, backward, forward_rounding, backward_rounding, scaling):
    if scaling not in SCALINGS:
        raise ValueError(f"scaling: expected None or 'tensor'; got {scaling!r}")
    return (resolve_format(forward, "forward"), resolve_format(backward, "backward"),
            check_rounding(forward_rounding, "forward_rounding"), check_rounding(backward_rounding, "backward_rounding"),
            scaling)


def quantizer(forward=None, backward=None, forward_rounding: str = "nearest", backward_rounding: str = "nearest",
              scaling: str | None = None):
    """A function x -> quantize_fb(x, ...) with its formats checked once (QPyTorch's quantizer())."""
    arguments = _checked(forward, backward, forward_rounding, backward_rounding, scaling)
    return lambda x: quantize_fb(x, *arguments)


class Quantizer(nn.Module):
    """A layer that rounds activations to `forward` and the gradient w.r.t. them to `backward`."""

    def __init__(self, forward=None, backward=None, forward_rounding: str = "nearest",
                 backward_rounding: str = "nearest", scaling: str | None = None):
        super().__init__()
        (self.forward_format, self.backward_format, self.forward_rounding, self.backward_rounding,
         self.scaling) = _checked(forward, backward, forward_rounding, backward_rounding, scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_fb(x, self.forward_format, self.backward_format, self.forward_rounding,
                           self.backward_rounding, self.scaling)

    def extra_repr(self) -> str:
        name = lambda f: None if f is None else f.name  # noqa: E731
        return (f"forward={name(self.forward_format)}, backward={name(self.backward_format)}, "
                f"forward_rounding={self.forward_rounding!r}, backward_rounding={self.backward_rounding!r}")
