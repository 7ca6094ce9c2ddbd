"""Matrix products with a simulated low-precision accumulator, and the forward/backward quantizer.

Exports matmul, linear, conv1d, conv2d, conv3d (each with acc=None meaning torch's own op) and
quantize_fb (from qsim.nn.quantizer).

The accumulator model. For every output element the K products are taken in order, in chunks of
`chunk`; the running sum s starts at the bias rounded to `acc` (or 0) and after each chunk becomes
    s <- round_acc(s + sum of the chunk's products)
so chunk=1 is a sequential hardware accumulator (one rounding per multiply-add) and chunk=k models an
adder tree of k exact-ish products feeding a narrow accumulator. Products and chunk sums are formed in
float64: a product of two float32 values is exact there, so with chunk=1 the only roundings are the
float64 addition and round_acc (the same double rounding a float64 reference loop does; it is exact
whenever s + product fits 53 bits). Conv products are taken in the order of the weight's
(in-channel, kernel positions...) layout.

Two implementations of the same model. CPU tensors whose operands float32 holds exactly (float32,
float16, bfloat16) with a fixed- or floating-point `acc` run one fused C++ loop (qsim._C.accumulate_f32,
csrc/cpu/accumulate.cpp): OpenMP over output tiles, each chunk summed left to right in float64 and the
rounding vectorised along the output row. Everything else (CUDA, float64 operands, block, posit and
logarithmic accumulators) runs the vectorised torch path: a loop over the K/chunk chunks, each step one
add and one in-place quantize over all outputs, the chunk sums from batched matmuls. Both give the
same bits whenever the chunk sums are exact in float64 (always for chunk=1). Stochastic rounding draws
one seed per rounding step from torch's generator, in the same order in both, and rounds output
element i (row-major over the (batch, N, M) result) with Philox word i % 4 of (seed, i / 4), exactly as
one qsim.quantize call of the whole running sum would.
The backward pass is that of the exact op (a straight-through estimate of the accumulator's rounding).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from qsim import _C
from qsim.backends import elementwise
from qsim.quant import draw_seed, quantize_
from qsim.nn.quantizer import quantize_fb
from qsim.nn.spec import check_rounding, resolve_format
from qsim.rounding import rounding_code

__all__ = ["matmul", "linear", "conv1d", "conv2d", "conv3d", "quantize_fb"]

# Elements of chunk sums computed per batched matmul (bounds the temporary memory: 8 bytes each).
_GROUP_ELEMENTS = 1 << 22


# Operand dtypes that float32 holds exactly: the fused kernel reads them as float32.
_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _fused(a: torch.Tensor, b: torch.Tensor, acc) -> bool:
    """Whether the fused CPU kernel covers this product."""
    return (a.device.type == "cpu" and b.device.type == "cpu" and a.dtype in _FUSED_DTYPES
            and b.dtype in _FUSED_DTYPES and type(acc) in elementwise.FORMATS)


def _running_sum(init: torch.Tensor | None, shape, acc, rounding: str, device) -> torch.Tensor:
    """The running sum before the first product: zeros, or init rounded to `acc` (float64, contiguous)."""
    s = torch.zeros(shape, dtype=torch.float64, device=device)
    if init is not None:
        s += init.double()
        quantize_(s, acc, rounding)
    return s


def _accumulate_fused(a: torch.Tensor, b: torch.Tensor, init: torch.Tensor | None, acc, chunk: int,
                      rounding: str) -> torch.Tensor:
    """_accumulate's model in one C++ loop (CPU, float32-exact operands, fixed/floating-point acc)."""
    batch, n, k = a.shape
    m = b.shape[-1]
    s = _running_sum(init, (batch, n, m), acc, rounding, a.device)
    a = a.float()
    b = b.float()
    if b.stride(-1) != 1:
        b = b.contiguous()
    code = rounding_code(rounding)
    seeds = [draw_seed(None) for _ in range(math.ceil(k / chunk))] if rounding == "stochastic" else []
    _C.accumulate_f32(a.data_ptr(), *a.stride(), b.data_ptr(), b.stride(0), b.stride(1), s.data_ptr(),
                      batch, n, k, m, elementwise.format_params(acc), code, chunk, seeds, 32,
                      torch.get_num_threads())
    return s


def _accumulate_torch(a: torch.Tensor, b: torch.Tensor, init: torch.Tensor | None, acc, chunk: int,
                      rounding: str) -> torch.Tensor:
    """_accumulate's model as a loop over chunks of whole-output torch operations (any device and format)."""
    batch, n, k = a.shape
    m = b.shape[-1]
    chunks = math.ceil(k / chunk)
    pad = chunks * chunk - k  # zero products leave a rounded running sum unchanged
    a = F.pad(a.double(), (0, pad)).reshape(batch, n, chunks, chunk)                    # (B, N, C, k)
    b = F.pad(b.double(), (0, 0, 0, pad)).reshape(batch, chunks, chunk, m)              # (B, C, k, M)
    s = _running_sum(init, (batch, n, m), acc, rounding, a.device)                      # (B, N, M)
    group = max(1, _GROUP_ELEMENTS // max(1, batch * n * m))
    for start in range(0, chunks, group):
        stop = min(start + group, chunks)
        partial = torch.einsum("bnck,bckm->cbnm", a[:, :, start:stop], b[:, start:stop])  # (G, B, N, M)
        for p in partial:
            s += p
            quantize_(s, acc, rounding)
    return s


def _accumulate(a: torch.Tensor, b: torch.Tensor, init: torch.Tensor | None, acc, chunk: int,
                rounding: str) -> torch.Tensor:
    """The accumulator model on a (B, N, K) @ b (B, K, M), in float64; init broadcasts to (B, N, M)."""
    return (_accumulate_fused if _fused(a, b, acc) else _accumulate_torch)(a, b, init, acc, chunk, rounding)


class _AccMatmul(torch.autograd.Function):
    """a @ b (+ init) through the accumulator model; gradients of the exact product."""

    @staticmethod
    def forward(ctx, a, b, init, acc, chunk, rounding):
        ctx.save_for_backward(a, b)
        ctx.init_shape = None if init is None else init.shape
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        n, m = a.shape[-2], b.shape[-1]
        flat = math.prod(batch)  # not -1: empty operands (K = 0) leave -1 ambiguous
        a3 = a.expand(*batch, *a.shape[-2:]).reshape(flat, *a.shape[-2:])
        b3 = b.expand(*batch, *b.shape[-2:]).reshape(flat, *b.shape[-2:])
        init3 = None if init is None else init.expand(*batch, n, m).reshape(flat, n, m)
        out = _accumulate(a3, b3, init3, acc, chunk, rounding)
        return out.reshape(*batch, n, m).to(torch.result_type(a, b))

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = (grad @ b.mT).sum_to_size(a.shape) if ctx.needs_input_grad[0] else None
        grad_b = (a.mT @ grad).sum_to_size(b.shape) if ctx.needs_input_grad[1] else None
        grad_init = grad.sum_to_size(ctx.init_shape) if ctx.needs_input_grad[2] else None
        return grad_a, grad_b, grad_init, None, None, None


def _checked(acc, chunk, rounding):
    acc = resolve_format(acc, "acc")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected a positive int (products per accumulator rounding); got {chunk!r}")
    return acc, chunk, check_rounding(rounding, "rounding")


def matmul(a: torch.Tensor, b: torch.Tensor, acc=None, chunk: int = 1, rounding: str = "nearest") -> torch.Tensor:
    """torch.matmul(a, b) with the products summed in a simulated `acc` accumulator (module docstring)."""
    if acc is None:
        return torch.matmul(a, b)
    acc, chunk, rounding = _checked(acc, chunk, rounding)
    if a.dim() == 0 or b.dim() == 0:
        raise ValueError("a, b: matmul needs tensors of at least one dimension")
    out = _AccMatmul.apply(a.unsqueeze(0) if a.dim() == 1 else a, b.unsqueeze(-1) if b.dim() == 1 else b,
                           None, acc, chunk, rounding)
    if a.dim() == 1:
        out = out.squeeze(-2)
    return out.squeeze(-1) if b.dim() == 1 else out


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, acc=None, chunk: int = 1,
           rounding: str = "nearest") -> torch.Tensor:
    """F.linear with a simulated accumulator; the bias initialises the running sum."""
    if acc is None:
        return F.linear(x, weight, bias)
    acc, chunk, rounding = _checked(acc, chunk, rounding)
    x2 = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])                               # (N, K)
    out = _AccMatmul.apply(x2, weight.t(), bias, acc, chunk, rounding)                  # (N, M)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _tuple(value, nd: int, argument: str) -> tuple[int, ...]:
    values = (value,) * nd if isinstance(value, int) else tuple(value)
    if len(values) != nd or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(f"{argument}: expected a non-negative int or {nd} of them; got {value!r}")
    return values


def _padding(padding, kernel, dilation, stride, nd) -> list[int]:
    """F.pad's list (last dim first) for int/tuple padding, 'valid' or 'same' (as torch pads it)."""
    if padding == "valid":
        return [0] * (2 * nd)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding: 'same' needs stride 1, as in torch")
        pads = []
        for k, d in zip(reversed(kernel), reversed(dilation)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return pads
    return [p for value in reversed(_tuple(padding, nd, "padding")) for p in (value, value)]


def _conv(x, weight, bias, stride, padding, dilation, groups, acc, chunk, rounding, nd):
    """N-d convolution as im2col + the accumulator-model GEMM."""
    acc, chunk, rounding = _checked(acc, chunk, rounding)
    if x.dim() != nd + 2:
        raise ValueError(f"x: expected a batched (N, C, *spatial) input with {nd} spatial dims; got shape {tuple(x.shape)}")
    kernel = tuple(weight.shape[2:])
    stride, dilation = _tuple(stride, nd, "stride"), _tuple(dilation, nd, "dilation")
    x = F.pad(x, _padding(padding, kernel, dilation, stride, nd))
    n, c = x.shape[:2]
    cols = x
    for i, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        cols = cols.unfold(2 + i, (k - 1) * d + 1, s)[..., ::d]  # window of dim i appended last
    # cols: (N, C, L1..Lnd, k1..knd) -> (N, groups, C/groups * k1..knd, L)
    out_sizes = cols.shape[2:2 + nd]
    order = (0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd))
    cols = cols.permute(order).reshape(n, groups, (c // groups) * math.prod(kernel), math.prod(out_sizes))
    cout = weight.shape[0]
    w = weight.reshape(1, groups, cout // groups, -1)                                    # (1, g, Cout/g, K)
    init = None if bias is None else bias.reshape(1, groups, cout // groups, 1)
    out = _AccMatmul.apply(w, cols, init, acc, chunk, rounding)                          # (N, g, Cout/g, L)
    return out.reshape(n, cout, *out_sizes)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, acc=None, chunk=1, rounding="nearest"):
    """F.conv1d with a simulated accumulator (zero padding)."""
    if acc is None:
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)
    return _conv(x, weight, bias, stride, padding, dilation, groups, acc, chunk, rounding, 1)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, acc=None, chunk=1, rounding="nearest"):
    """F.conv2d with a simulated accumulator (zero padding)."""
    if acc is None:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _conv(x, weight, bias, stride, padding, dilation, groups, acc, chunk, rounding, 2)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, acc=None, chunk=1, rounding="nearest"):
    """F.conv3d with a simulated accumulator (zero padding)."""
    if acc is None:
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    return _conv(x, weight, bias, stride, padding, dilation, groups, acc, chunk, rounding, 3)
