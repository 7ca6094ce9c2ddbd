"""Rounding modes, in the order of the C++ enum `qsim::Rounding` (csrc/qsim/params.h).

The names say what they do: "nearest" is ties-to-even (IEEE 754's default); ties away from zero has its
own name, unlike in QPyTorch and microxcaling where "nearest" silently means ties-away."""

ROUNDING_MODES = ("nearest", "nearest_away", "toward_zero", "up", "down", "odd", "stochastic")


def rounding_code(rounding: str) -> int:
    """The kernel's code for `rounding`; raises ValueError listing the valid names."""
    try:
        return ROUNDING_MODES.index(rounding)
    except ValueError:
        raise ValueError(f"rounding: expected one of {', '.join(ROUNDING_MODES)}; got {rounding!r}") from None
