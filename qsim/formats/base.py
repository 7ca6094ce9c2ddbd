"""The Format protocol every number format implements, and the argument checks they share.

A format is a frozen, hashable value: equal formats are interchangeable, usable as dict keys, and
cached by the kernels' parameter tables. Each family lives in its own module of this package and
registers under a KIND, the name of its TOML table and of its inline spec ("fixed<8,4>")."""
from __future__ import annotations

import functools
import re


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


# Integers in inline specs: ASCII digits only (Python's \d and int() also take other scripts' digits), at most
# six of them (every width, block size and dim qsim takes; longer strings would only reach int()'s digit limit).
SPEC_INT = r"-?[0-9]{1,6}"


def spec_int(text: str, signed: bool = False) -> bool:
    """Is `text` an integer as inline specs write them (non-negative unless `signed`)?"""
    return re.fullmatch(SPEC_INT if signed else SPEC_INT[2:], text) is not None


def check_options(spec: str, options, groups: tuple[tuple[str, ...], ...]) -> None:
    """Raises naming both options when an option is given twice or two options of one group (alternatives such
    as fn/fnuz or floor/ceil) are given together; an option "key=value" is its key."""
    seen = {}
    for option in options:
        key = option.split("=", 1)[0]
        group = next((g for g in groups if key in g), (key,))
        if group in seen:
            why = "the same option twice" if seen[group].split("=", 1)[0] == key else "pick one of " + "/".join(group)
            raise ValueError(f"fmt: {spec!r}: options {seen[group]!r} and {option!r} conflict ({why})")
        seen[group] = option


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
