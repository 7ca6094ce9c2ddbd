"""The Format protocol every number format implements, and the argument checks they share.

A format is a frozen, hashable value: equal formats are interchangeable, usable as dict keys, and
cached by the kernels' parameter tables. Each family lives in its own module of this package and
registers under a KIND, the name of its TOML table and of its inline spec ("fixed<8,4>")."""
from __future__ import annotations

import functools


class Format:
    """Base of all formats."""

    KIND: str = ""  # the family's TOML table and inline-spec name

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element (block formats add their amortised shared scale)."""
        raise NotImplementedError

    @functools.cached_property
    def spec(self) -> str:
        """The inline spec that `qsim.formats.parse` turns back into this value."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: str, args: list[str]) -> "Format":
        """The format of an inline spec "KIND<args>" (args already split on commas)."""
        raise NotImplementedError

    @functools.cached_property
    def name(self) -> str:
        """The registered name of this format if it has one, else its inline spec."""
        from qsim.formats.registry import names_by_format

        return names_by_format().get(self, self.spec)

    def __str__(self) -> str:
        return self.name


def check_int(value, argument: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument}: expected an int in [{low}, {high}]; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{argument}: expected an int in [{low}, {high}]; got {value}")


def check_choice(value, argument: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{argument}: expected one of {', '.join(map(repr, choices))}; got {value!r}")


def check_bool(value, argument: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{argument}: expected a bool; got {value!r}")


def cached(method):
    """Caches a zero-argument method of a (hashable) format: limits are derived once per value."""
    return functools.lru_cache(maxsize=4096)(method)
