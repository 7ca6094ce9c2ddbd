"""Quantize a tensor on the way forward and its gradient on the way back.

Exports Quantizer (a module), quantizer (a factory returning a function, as QPyTorch's quantizer()),
quantize_fb (the function itself) and round_gradient (a gradient-only rounding that makes no copy). This is QPyTorch's Quantizer: placed after a layer, `forward`
is the activation format (A) and `backward` the error format (E). qsim.quantize alone has a
straight-through gradient; this adds the rounding of the gradient, in a small autograd Function.
With scaling="tensor" each tensor is multiplied by a power of two that brings its largest magnitude
just under the format's max before rounding, and divided by it after (per-tensor current scaling, as
TransformerEngine's fp8 recipes use); a power of two keeps the scaling itself exact.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from qsim.quant import quantize
from qsim.nn.spec import SCALINGS, check_rounding, resolve_format


def round_tensor(x: torch.Tensor, fmt, rounding: str, scaling: str | None = None) -> torch.Tensor:
    """x rounded to `fmt` (no autograd), optionally with per-tensor power-of-two scaling."""
    if scaling is None:
        return quantize(x, fmt, rounding)
    amax = x.detach().abs().amax().float()
    # 2^floor(log2(max / amax)): amax * scale <= max; clamped so the scale itself stays a normal float32.
    exponent = torch.floor(torch.log2(fmt.max / amax)).clamp(-126, 126)
    scale = torch.where(torch.isfinite(exponent), torch.exp2(exponent), torch.ones_like(exponent)).to(x.dtype)
    return quantize(x * scale, fmt, rounding) / scale


class _ForwardBackward(torch.autograd.Function):
    """Identity in value up to rounding: forward rounds x to `forward`, backward rounds the gradient to `backward`."""

    @staticmethod
    def forward(ctx, x, forward, backward, forward_rounding, backward_rounding, scaling):
        ctx.backward_format, ctx.backward_rounding, ctx.scaling = backward, backward_rounding, scaling
        # Not x.view_as(x): a view made inside a custom Function cannot be modified in place afterwards, and
        # layers are commonly followed by ReLU(inplace=True).
        return x.clone() if forward is None else round_tensor(x, forward, forward_rounding, scaling)

    @staticmethod
    def backward(ctx, grad):
        if ctx.backward_format is not None:
            grad = round_tensor(grad, ctx.backward_format, ctx.backward_rounding, ctx.scaling)
        return grad, None, None, None, None, None


def quantize_fb(x: torch.Tensor, forward=None, backward=None, forward_rounding: str = "nearest",
                backward_rounding: str = "nearest", scaling: str | None = None) -> torch.Tensor:
    """x rounded to `forward`; the gradient flowing back through it rounded to `backward` (either may be None).

    Formats must already be Format values (see quantizer() for the checked entry point)."""
    if backward is None or not x.requires_grad:
        if forward is None:
            return x
        if scaling is None:
            return quantize(x, forward, forward_rounding)  # straight-through gradient
        backward = None
    return _ForwardBackward.apply(x, forward, backward, forward_rounding, backward_rounding, scaling)


def round_gradient(x: torch.Tensor, fmt, rounding: str = "nearest", scaling: str | None = None) -> torch.Tensor:
    """x itself, its gradient rounded to `fmt` on the way back; `fmt` must be a Format value.

    Unlike quantize_fb(x, None, fmt) it makes no copy: a hook on x's autograd node. Such a hook survives
    a later in-place op on x (ReLU(inplace=True)) and receives the gradient of x's own value. It rounds the
    gradient of every use of x together, which for a layer's output is exactly the layer's error E."""
    if x.grad_fn is None:  # a leaf (or no gradient): a hook would stay on it for good
        return quantize_fb(x, None, fmt, backward_rounding=rounding, scaling=scaling)
    x.register_hook(functools.partial(round_tensor, fmt=fmt, rounding=rounding, scaling=scaling))
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
