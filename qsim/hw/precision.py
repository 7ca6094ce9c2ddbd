"""Operand bit widths for each layer: from quantize_model rules, from a precision= mapping, or int8.

Exports `bits_of(value, where)` and `assign_precision(layers, precision=None, specs=None)`.

`precision` is one value for every layer or a mapping from layer-name glob to a value; a value is a
bit width (8), a pair (weight_bits, activation_bits), a format name or Format ("fp8_e4m3", "int4":
`qsim.formats.get(name).bits_per_element`), or a pair of those. When several globs match a layer
the last one wins, as in quantize_model. `specs` maps layer names to the QuantSpec that quantize_model
applies to the module computing the layer (qsim.nn.model.module_specs; qsim.hw.workload builds it from
rules): a layer takes its spec's weight / input / output formats, and a field left None, or a layer
without a spec, means float32, as quantize_model leaves it. Without either, every operand is an 8-bit
integer.
"""
from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from .layers import Layer

DEFAULT_BITS = 8.0
FLOAT32_BITS = 32.0


def _format_bits(fmt, where: str) -> tuple[float, str]:
    """(bits per element, "int" or "float") of a Format or a format name."""
    from qsim import formats
    try:
        fmt = formats.get(fmt)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None
    element = getattr(fmt, "element", fmt)  # block formats: the arithmetic of their elements
    arith = "float" if isinstance(fmt, formats.FloatingPoint) or isinstance(element, formats.FloatingPoint) else "int"
    return float(fmt.bits_per_element), arith


def _one(value, where: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise TypeError(f"{where}: expected a bit width or a format, got {value!r}")
    if isinstance(value, (int, float)):
        if not value > 0:
            raise ValueError(f"{where}: a bit width must be > 0, got {value!r}")
        return float(value), "int"
    return _format_bits(value, where)


def bits_of(value, where: str = "precision") -> tuple[float, float, str]:
    """(weight_bits, activation_bits, arith) for one precision value."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{where}: expected (weight_bits, activation_bits), got {value!r}")
        (w, wa), (a, aa) = _one(value[0], f"{where}[0]"), _one(value[1], f"{where}[1]")
    else:
        (w, wa), (a, aa) = _one(value, where), _one(value, where)
    return w, a, "float" if "float" in (wa, aa) else "int"


def _from_spec(spec, where: str) -> dict:
    """Operand widths of a QuantSpec (None: every operand float32)."""
    if spec is None:
        return dict(weight_bits=FLOAT32_BITS, act_bits=FLOAT32_BITS, out_bits=FLOAT32_BITS, arith="float")

    def field(fmt, name):
        return (FLOAT32_BITS, "float") if fmt is None else _format_bits(fmt, f"{where}.{name}")
    (w, wa), (a, aa), (o, _) = field(spec.weight, "weight"), field(spec.input, "input"), field(spec.output, "output")
    return dict(weight_bits=w, act_bits=a, out_bits=o, arith="float" if "float" in (wa, aa) else "int")


def assign_precision(layers, precision=None, specs: Mapping | None = None) -> tuple[Layer, ...]:
    """The layers with operand widths set, from a precision mapping or from per-layer QuantSpecs."""
    if precision is not None and specs is not None:
        raise ValueError("give precision= or rules=, not both")
    layers = tuple(layers)
    if specs is not None:
        return tuple(layer.with_bits(**_from_spec(specs.get(layer.name), f"layer {layer.name!r}")) for layer in layers)
    if precision is None:
        precision = DEFAULT_BITS
    mapping = precision if isinstance(precision, Mapping) else {"*": precision}
    resolved = [(pattern, bits_of(value, f"precision[{pattern!r}]")) for pattern, value in mapping.items()]
    out = []
    for layer in layers:
        chosen = (DEFAULT_BITS, DEFAULT_BITS, "int")
        for pattern, bits in resolved:
            if fnmatchcase(layer.name, pattern):
                chosen = bits
        w, a, arith = chosen
        out.append(layer.with_bits(w, a, a, arith))
    unmatched = [pattern for pattern, _ in resolved if not any(fnmatchcase(layer.name, pattern) for layer in layers)]
    if unmatched and layers:  # a typo in a layer glob would otherwise leave those layers at the default silently
        names = [layer.name for layer in layers]
        raise ValueError(f"precision: {unmatched[0]!r} matches no layer; the layers are "
                         f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    return tuple(out)
