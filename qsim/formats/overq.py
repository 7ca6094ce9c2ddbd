"""OverQ as a format value, so an activation spec can name it: QuantSpec(output="overq<4,cascade=2>") or
QuantSpec(output=OverQ(bits=4, cascade=2, scale="percentile:99.9")).

Not an elementwise format: a position's value depends on its neighbours along `dim` (qsim/overq.py has
the rules and the kernel; qsim/backends/overq.py runs it wherever qsim.quantize runs a format). The step
`scale` is a positive number, or a strategy that picks it from the tensor being quantized:
  "max"              the largest value lands on the top code 2^bits - 1: nothing clips, no outliers;
  "percentile:P"     the P-th percentile lands on the top code (P in (0, 100]): the rest are outliers;
  "mse"              of 64 candidate steps (the max step times k/64), the one whose OverQ result has the
                     least squared error: the clip that OverQ itself makes best.
qsim.nn.overq.calibrate fixes a strategy's step per layer from example inputs; uncalibrated, the step
is picked again on every call (per-tensor dynamic scaling).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from qsim.formats.base import Format
from qsim.overq import MAX_CASCADE, check_options, check_scale

SCALE_STRATEGIES = ("mse", "max", "percentile:P")


@dataclass(frozen=True)
class OverQStats:
    """Counts measured when a step was calibrated: shown beside the format's name, not part of its value."""

    outliers: int
    covered: int
    precise: int
    elements: int

    @property
    def coverage(self) -> float:
        return self.covered / self.outliers if self.outliers else math.nan


def check_strategy(scale):
    """`scale` as a float or a strategy string; raises naming `scale` otherwise."""
    if isinstance(scale, str):
        if scale in ("mse", "max"):
            return scale
        if scale.startswith("percentile:"):
            try:
                p = float(scale.split(":", 1)[1])
            except ValueError:
                p = math.nan
            if 0 < p <= 100:
                return scale
        raise ValueError(f"scale: expected a positive number, 'mse', 'max' or 'percentile:P' with P in (0, 100]; "
                         f"got {scale!r}")
    return check_scale(scale)


@dataclass(frozen=True)
class OverQ(Format):
    """Unsigned `bits`-bit activations with range (and, if `precision`, precision) overwrite of zeros within
    1 + `cascade` positions along `dim`; `scale` a step or a strategy (see the module docstring)."""

    bits: int = 4
    cascade: int = 1
    scale: object = "mse"
    precision: bool = True
    dim: int = 1
    stats: OverQStats | None = field(default=None, compare=False, repr=False)

    KIND = "overq"

    def __post_init__(self):
        check_options(self.bits, self.cascade, self.precision)
        object.__setattr__(self, "scale", check_strategy(self.scale))
        if isinstance(self.dim, bool) or not isinstance(self.dim, int):
            raise TypeError(f"dim: expected an int (the channel axis); got {self.dim!r}")

    @property
    def bits_per_element(self) -> float:
        """The data bits of a slot; the hardware's tag bits are costed in qsim.hw.overq."""
        return float(self.bits)

    @functools.cached_property
    def spec(self) -> str:
        options = [str(self.bits), f"cascade={self.cascade}"]
        if self.scale != "mse":
            options.append(f"scale={self.scale!r}" if isinstance(self.scale, float) else f"scale={self.scale}")
        if not self.precision:
            options.append("precision=false")
        if self.dim != 1:
            options.append(f"dim={self.dim}")
        return f"overq<{','.join(options)}>"

    @property
    def name(self) -> str:
        """The spec, and after calibration the coverage it measured (handle.summary() shows this)."""
        if self.stats is None:
            return self.spec
        s = self.stats
        covered = "no outliers" if not s.outliers else f"{s.coverage:.0%} of {s.outliers} outliers covered"
        return f"{self.spec} ({covered}, {s.precise / max(s.elements, 1):.0%} precision-overwritten)"

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "OverQ":
        """overq<bits[,cascade=C][,scale=S][,precision=true|false][,dim=D]>"""
        usage = "expected overq<bits[,cascade=C][,scale=mse|max|percentile:P|NUMBER][,precision=true|false][,dim=D]>"
        if not args or not args[0].isdigit():
            raise ValueError(f"fmt: {spec!r}: {usage}")
        options = {}
        for arg in args[1:]:
            key, sep, value = arg.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or key not in ("cascade", "scale", "precision", "dim") or key in options:
                raise ValueError(f"fmt: {spec!r}: option {arg!r}: {usage}")
            options[key] = value
        try:
            arguments = dict(bits=int(args[0]))
            if "cascade" in options:
                arguments["cascade"] = int(options["cascade"])
            if "dim" in options:
                arguments["dim"] = int(options["dim"])
            if "precision" in options:
                if options["precision"] not in ("true", "false"):
                    raise ValueError
                arguments["precision"] = options["precision"] == "true"
            if "scale" in options:
                text = options["scale"]
                arguments["scale"] = text if text in ("mse", "max") or text.startswith("percentile:") else float(text)
        except ValueError:
            raise ValueError(f"fmt: {spec!r}: {usage}") from None
        return cls(**arguments)


__all__ = ["OverQ", "OverQStats", "SCALE_STRATEGIES", "MAX_CASCADE"]
