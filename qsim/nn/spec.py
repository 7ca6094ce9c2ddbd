"""QuantSpec: what one module's tensors are quantized to, as a typed, frozen value.

Exports QuantSpec, FORMAT_FIELDS, resolve_format and check_rounding. Format fields take None (keep float32), a Format,
or a registered name / inline spec ("fp8_e4m3", "float<e5m2>"); strings are resolved once, when the
spec is built, so a typo fails where it is written and not in the middle of a training step.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from qsim import formats
from qsim.rounding import ROUNDING_MODES

# The per-role fields (QPyTorch's vocabulary: W weight, A activation, G weight gradient, E error).
FORMAT_FIELDS = ("weight", "bias", "input", "output", "grad_weight", "grad_bias", "grad_input", "grad_output", "acc")
SCALINGS = (None, "tensor")


def resolve_format(value, argument: str):
    """None stays None; a Format or a format name becomes a Format; anything else raises naming `argument`."""
    if value is None:
        return None
    if not isinstance(value, (str, formats.Format)):
        raise TypeError(f"{argument}: expected None, a Format or a format name; got {type(value).__name__}")
    try:
        return formats.get(value)
    except ValueError as err:
        raise ValueError(f"{argument}: {err}") from None


def check_rounding(value, argument: str) -> str:
    """`value` if it names a rounding mode; else raises naming `argument` and the valid names."""
    if value not in ROUNDING_MODES:
        raise ValueError(f"{argument}: expected one of {', '.join(ROUNDING_MODES)}; got {value!r}")
    return value


@dataclass(frozen=True)
class QuantSpec:
    """The formats of one module's tensors; every format field defaults to None (left in float32).

    weight, bias           parameters, quantized on the fly in forward: the float32 master copies are
                           untouched unless store_weights=True, which rounds the stored values in place
                           (low-precision storage: updates then accumulate in the format).
    input, output          activations entering / leaving the module (floating-point tensors only).
    grad_weight, grad_bias gradients w.r.t. the parameters, quantized as autograd produces them.
    grad_input, grad_output errors: gradients w.r.t. the module's input / output.
    acc, chunk             simulate a low-precision accumulator in the module's GEMM (Linear, Conv):
                           the running sum is rounded to `acc` after every `chunk` products (default 1,
                           a sequential accumulator); see qsim.nn.functional.
    rounding               rounding of the forward tensors (weight, bias, input, output);
    backward_rounding      of the backward tensors (gradients and errors); acc_rounding of the accumulator.
    scaling                None, or "tensor": scale each tensor by a power of two so its largest magnitude
                           lands just under the format's max before rounding, and unscale after
                           (per-tensor current scaling, as fp8 training recipes use).
    """

    weight: object = None
    bias: object = None
    input: object = None
    output: object = None
    grad_weight: object = None
    grad_bias: object = None
    grad_input: object = None
    grad_output: object = None
    rounding: str = "nearest"
    backward_rounding: str = "nearest"
    acc: object = None
    chunk: int | None = None
    acc_rounding: str = "nearest"
    store_weights: bool = False
    scaling: str | None = None

    def __post_init__(self):
        for name in FORMAT_FIELDS:
            object.__setattr__(self, name, resolve_format(getattr(self, name), name))
        for name in ("rounding", "backward_rounding", "acc_rounding"):
            check_rounding(getattr(self, name), name)
        if self.chunk is not None:
            if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
                raise ValueError(f"chunk: expected a positive int (products per accumulator rounding); got {self.chunk!r}")
            if self.acc is None:
                raise ValueError("chunk: only meaningful with an accumulator format; set acc as well")
        if not isinstance(self.store_weights, bool):
            raise TypeError(f"store_weights: expected a bool; got {self.store_weights!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling: expected None or 'tensor'; got {self.scaling!r}")

    def replace(self, **changes) -> QuantSpec:
        """A copy with some fields changed (dataclasses.replace)."""
        return replace(self, **changes)

    def formats(self) -> dict:
        """The format fields that are set, by name."""
        return {name: getattr(self, name) for name in FORMAT_FIELDS if getattr(self, name) is not None}

    @property
    def is_empty(self) -> bool:
        return not self.formats()

    def __repr__(self) -> str:
        set_fields = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        shown = ", ".join(f"{k}={v.name!r}" if isinstance(v, formats.Format) else f"{k}={v!r}"
                          for k, v in set_fields.items())
        return f"QuantSpec({shown})"
