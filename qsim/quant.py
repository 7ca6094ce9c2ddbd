"""`quantize`, `quantize_` and `quantize(..., out=)`: validate once, then run one fused kernel.

The work is registered as torch.library custom ops (qsim::quantize, qsim::quantize_out), so it
dispatches on CPU and CUDA tensors, composes with torch.compile, and has a straight-through gradient:
d quantize(x) / dx = 1, the estimator QPyTorch and the low-precision training literature use.
The kernels are chosen by format family (qsim/backends/): CPU tensors go to qsim._C (OpenMP), CUDA
tensors to the same rounding headers compiled for the GPU (qsim/cuda.py). float16 and bfloat16 tensors
are rounded in float32 (which holds them exactly) and converted back with round-to-nearest-even, so a
format finer than the tensor's dtype is rounded twice, and a result past the dtype's range becomes ±inf
(docs/overflow.md); the CPU elementwise, block and posit kernels do this as they load and store, in one
pass, and the logarithmic and CUDA kernels on a float32 copy.
Eager calls skip the torch.library dispatcher, which costs tens of microseconds a call (layer hooks and
optimizers make thousands): a clone of x rounded in place under no_grad gives the same straight-through
gradient (clone's backward is the identity, in C++; a Python autograd Function cost ~10 us more a call).
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch.autograd.graph import increment_version
from torch.compiler import is_compiling

from qsim import backends, cuda, formats
from qsim.formats import Format
from qsim.rounding import ROUNDING_MODES, rounding_code

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_STOCHASTIC = ROUNDING_MODES.index("stochastic")
_FULL_RAND_BITS = 32
# The tensor types whose memory quantize may write directly. Calls on others (fake and wrapper tensors, which
# have no memory of their own to write) go through the registered ops, as calls do while torch.compile traces.
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _quantize_into(x: torch.Tensor, out: torch.Tensor, spec: str, rounding: int, seed: int, rand_bits: int) -> None:
    """Writes q(x) into `out` (any strides), in x's dtype where the format's kernel takes it, else in
    float32 (float16/bfloat16 on other kernels)."""
    if x.numel() == 0:
        return
    on_gpu, dtype = x.is_cuda, x.dtype  # (each read of a tensor's attribute costs ~0.1 us, which small tensors feel)
    if on_gpu:
        cuda.require()
    fmt, backend, dtypes = backends.route(spec, "cuda" if on_gpu else "cpu")  # (not x.device: ~0.5 us a call)
    work_dtype = dtype if dtype in dtypes else torch.float32
    source = x if dtype == work_dtype and x.is_contiguous() else x.contiguous().to(work_dtype)
    direct = out.dtype == work_dtype and out.is_contiguous()
    # A copy of x made here is rounded in place: a second fresh buffer costs page faults as large as the work.
    target = out if direct else source if source is not x else torch.empty_like(source)
    backend.quantize(source, target, fmt, rounding, seed, rand_bits)
    if not direct:
        out.copy_(target)


def _quantized_copy(x: torch.Tensor, spec: str, rounding: int, seed: int, rand_bits: int) -> torch.Tensor:
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    _quantize_into(x, out, spec, rounding, seed, rand_bits)
    return out


@torch.library.custom_op("qsim::quantize", mutates_args=())
def _quantize_op(x: torch.Tensor, spec: str, rounding: int, seed: int, rand_bits: int) -> torch.Tensor:
    return _quantized_copy(x, spec, rounding, seed, rand_bits)


@_quantize_op.register_fake
def _(x, spec, rounding, seed, rand_bits):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _straight_through(ctx, grad):
    return grad, None, None, None, None


_quantize_op.register_autograd(_straight_through)


@torch.library.custom_op("qsim::quantize_out", mutates_args=("out",))
def _quantize_out_op(x: torch.Tensor, out: torch.Tensor, spec: str, rounding: int, seed: int, rand_bits: int) -> None:
    _quantize_into(x, out, spec, rounding, seed, rand_bits)


def draw_seed(seed) -> int:
    """A 63-bit seed: the one given, or one drawn from a torch.Generator / torch's default generator,
    so that torch.manual_seed makes runs reproducible."""
    if seed is None or isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**63 - 1, (), generator=seed).item())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected None, an int or a torch.Generator; got {type(seed).__name__}")
    if not 0 <= seed < 2**63:  # torch.library passes ints as int64
        raise ValueError(f"seed: expected an int in [0, 2^63); got {seed}")
    return seed


def _format_spec(fmt) -> str:
    """The canonical spec of a format given by value or name (a constant for torch.compile)."""
    if not isinstance(fmt, Format):  # (a Format needs no look-up: a call less, which small tensors feel)
        fmt = formats.get(fmt)
    if not backends.supports(fmt):
        raise TypeError(f"fmt: quantize has no kernel for {type(fmt).__name__} formats")
    return fmt.spec


# torch.compiler.assume_constant_result(_format_spec) (a constant while torch.compile traces), without its
# import of torch._dynamo, which made `import qsim` 2.4 s slower: the decorator only sets this marker.
_format_spec._dynamo_marked_constant = True


@functools.lru_cache(maxsize=1024)
def _spec_of_name(name: str) -> str:
    """_format_spec of a name or inline spec, looked up (or parsed) once; errors are raised, not cached."""
    return _format_spec(name)


def _validate(x, fmt, rounding, seed, rand_bits, compiling: bool) -> tuple[str, int, int, int]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor; got {type(x).__name__}")
    if x.layout != torch.strided or x.is_nested:
        raise TypeError(f"x: expected a dense tensor; got a {'nested' if x.is_nested else x.layout} one "
                        f"(convert it with .to_dense() or, for a nested tensor, quantize its components)")
    if x.dtype not in _DTYPES:
        raise TypeError(f"x: expected a floating tensor (float32, float64, float16 or bfloat16); got {x.dtype}")
    if not (x.is_cpu or x.is_cuda):  # (x.device builds a torch.device: ~0.5 us, a tenth of a small call)
        raise ValueError(f"x: expected a CPU or CUDA tensor; got device {x.device}")
    spec = _spec_of_name(fmt) if isinstance(fmt, str) and not compiling else _format_spec(fmt)
    code = rounding_code(rounding)
    if code == _STOCHASTIC:
        if rand_bits is None:
            rand_bits = _FULL_RAND_BITS
        elif isinstance(rand_bits, bool) or not isinstance(rand_bits, int) or not 1 <= rand_bits <= _FULL_RAND_BITS:
            raise ValueError(f"rand_bits: expected None or an int in [1, {_FULL_RAND_BITS}]; got {rand_bits!r}")
        seed = draw_seed(seed)
    else:
        if rand_bits is not None:
            raise ValueError(f"rand_bits: only applies to rounding='stochastic'; got rounding={rounding!r}")
        if seed is not None and not isinstance(seed, (int, torch.Generator)):
            raise TypeError(f"seed: expected None, an int or a torch.Generator; got {type(seed).__name__}")
        if seed is not None:
            warnings.warn(f"seed: rounding={rounding!r} is deterministic and ignores the seed (it draws no "
                          f"random bits; only rounding='stochastic' does)", stacklevel=3)
        seed, rand_bits = 0, _FULL_RAND_BITS
    return spec, code, seed, rand_bits


def quantize(x: torch.Tensor, fmt: Format | str, rounding: str = "nearest", seed=None, rand_bits: int | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """x rounded to `fmt` with `rounding`; same shape, dtype and device as x.

    fmt: a Format, a registered name ("fp8_e4m3") or an inline spec ("fixed<8,4>").
    rounding: one of qsim.ROUNDING_MODES. Stochastic rounding uses Philox random bits keyed by
      (seed, element index in row-major order): the same seed gives the same result on any device and
      thread count. seed: an int, a torch.Generator, or None to draw one from torch's default generator.
    rand_bits: stochastic rounding with only this many random bits (1..32), as hardware does:
      P(round up) = floor(fraction · 2^rand_bits) / 2^rand_bits.
    out: a tensor of x's shape, dtype and device to write into (saves allocating; not differentiable).
    The gradient is straight-through."""
    compiling = is_compiling()  # (asked once: ~0.1 us a time)
    spec, code, seed, rand_bits = _validate(x, fmt, rounding, seed, rand_bits, compiling)
    if out is None:
        if compiling or type(x) not in _PLAIN:
            return _quantize_op(x, spec, code, seed, rand_bits)
        if torch.is_grad_enabled() and x.requires_grad:  # the straight-through gradient: clone's, in C++
            y = x.clone(memory_format=torch.contiguous_format)
            with torch.no_grad():
                _quantize_into(y, y, spec, code, seed, rand_bits)
            return y
        return _quantized_copy(x, spec, code, seed, rand_bits)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out: expected a torch.Tensor; got {type(out).__name__}")
    # (the devices are named only where one is a GPU: building two torch.device costs ~0.25 us)
    if out.shape != x.shape or out.dtype != x.dtype or out.is_cpu != x.is_cpu or \
            x.is_cuda and out.device != x.device:
        raise ValueError(f"out: expected shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}; got "
                         f"shape {tuple(out.shape)}, dtype {out.dtype}, device {out.device}")
    out_contiguous = out.is_contiguous()
    if not out_contiguous and _overlaps_itself(out):
        raise RuntimeError("out: more than one of its elements refers to a single memory location (an expanded "
                           "view?); torch refuses to write such a tensor too: clone() it first")
    if out.requires_grad and out.is_leaf and torch.is_grad_enabled():
        raise RuntimeError("out: a leaf tensor that requires grad cannot be written in place (torch refuses it "
                           "too); round it under torch.no_grad(), or use quantize(x) without out=")
    if out is not x and _partially_overlaps(x, out, out_contiguous):
        x = x.clone()  # the kernel would read elements it has already written
    if compiling or type(x) not in _PLAIN or type(out) not in _PLAIN:
        _quantize_out_op(x, out, spec, code, seed, rand_bits)
    else:
        _quantize_into(x, out, spec, code, seed, rand_bits)
        increment_version(out)  # as the op would: autograd sees out was written
    return out


def _partially_overlaps(x: torch.Tensor, out: torch.Tensor, out_contiguous: bool) -> bool:
    """Do x and out (of one shape and dtype) share memory without being the same view (in place is fine;
    buf[0:4] into buf[1:5] is not)? Compared by the byte spans the two views cover, which is conservative for
    interleaved strided views."""
    x_start, out_start = x.data_ptr(), out.data_ptr()
    if out_contiguous and x.is_contiguous():  # the common case, in a few calls (the spans below cost ~4 us)
        return 0 < abs(x_start - out_start) < out.nbytes  # (spans of one length)
    if x_start == out_start and x.stride() == out.stride():
        return False
    spans = []
    for t in (x, out):
        extent = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()) if size) + 1
        start = t.data_ptr() - sum((size - 1) * -stride for size, stride in zip(t.shape, t.stride()) if stride < 0)
        spans.append((start, start + extent * t.element_size()))
    (a0, a1), (b0, b1) = spans
    return a0 < b1 and b0 < a1


def _overlaps_itself(t: torch.Tensor) -> bool:
    """Whether a view repeats memory along some dim (stride 0, as expand() makes): the internal overlap that
    torch's own out= and in-place checks refuse."""
    return any(size > 1 and stride == 0 for size, stride in zip(t.shape, t.stride()))


def quantize_(x: torch.Tensor, fmt: Format | str, rounding: str = "nearest", seed=None,
              rand_bits: int | None = None) -> torch.Tensor:
    """Rounds x to `fmt` in place and returns it (see `quantize`)."""
    return quantize(x, fmt, rounding, seed, rand_bits, out=x)
