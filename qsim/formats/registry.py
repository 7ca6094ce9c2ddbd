"""The registry of named formats (one TOML file each in formats/, installed as `qsim.data.formats`),
the inline-spec parser, and `get`, which accepts either."""
from __future__ import annotations

import builtins
import difflib
import functools
import re
import tomllib
from dataclasses import dataclass, fields
from importlib import resources

from qsim.formats.base import Format


def format_types() -> dict[str, type[Format]]:
    """Every format family by KIND. A new family is a Format subclass listed here."""
    from qsim.formats.block import MX, BlockFloatingPoint
    from qsim.formats.elementwise import FixedPoint, FloatingPoint
    from qsim.formats.logarithmic import Logarithmic
    from qsim.formats.posit import Posit
    from qsim.formats.overq import OverQ

    return {cls.KIND: cls for cls in (FixedPoint, FloatingPoint, BlockFloatingPoint, MX, Posit, Logarithmic, OverQ)}


def from_table(name: str, table: dict, tables: dict | None = None) -> Format:
    """The format described by a TOML table such as {"float": {"exp": 4, "man": 3}}. Nested formats
    (a block format's element or scale) are inline specs or names of other `tables`."""
    types = format_types()
    kinds = [key for key in table if key in types]
    if len(kinds) != 1:
        raise ValueError(f"formats/{name}.toml: expected exactly one of the tables "
                         f"{', '.join(f'[{k}]' for k in types)}; found {kinds or 'none'}")
    cls = types[kinds[0]]
    arguments = dict(table[kinds[0]])
    allowed = {f.name for f in fields(cls)}
    unknown = set(arguments) - allowed
    if unknown:
        raise ValueError(f"formats/{name}.toml: unknown keys {sorted(unknown)} for [{kinds[0]}]; "
                         f"expected some of {sorted(allowed)}")
    for key in ("element", "scale"):
        value = arguments.get(key)
        if isinstance(value, str) and tables and value in tables:
            arguments[key] = from_table(value, tables[value], tables)
        elif isinstance(value, str) and "<" in value:
            arguments[key] = parse(value)
    return cls(**arguments)


@dataclass(frozen=True)
class Entry:
    """A registered format with its documentation."""

    name: str
    format: Format
    description: str
    source: str


@functools.cache
def registry() -> dict[str, Entry]:
    """All named formats, read once from the TOML files of formats/."""
    tables = {}
    for path in sorted(resources.files("qsim.data.formats").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".toml"):
            tables[path.name[: -len(".toml")]] = tomllib.loads(path.read_text())
    entries = {}
    for name, table in tables.items():
        missing = {"description", "source"} - set(table)
        if missing:
            raise ValueError(f"formats/{name}.toml: missing keys {sorted(missing)}")
        entries[name] = Entry(name, from_table(name, table, tables), table["description"], table["source"])
    return entries


@functools.cache
def names_by_format() -> dict[Format, str]:
    names = {}
    for entry in registry().values():
        names.setdefault(entry.format, entry.name)
    return names


def list() -> builtins.list[str]:  # noqa: A001 - the registry's natural verb
    """Names of all registered formats, sorted."""
    return sorted(registry())


_INLINE = re.compile(r"^\s*(?P<kind>[a-z]+)\s*<(?P<args>.*)>\s*$")


def _split_top_level(args: str) -> builtins.list[str]:
    """Splits on commas outside nested <...> (block formats nest element specs)."""
    parts, depth, current = [], 0, ""
    for char in args:
        depth += (char == "<") - (char == ">")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + [current.strip()]


# A block format nests an element or a scale format: mx<fp4_e2m1,scale=float<e4m3>> is two levels deep.
MAX_NESTING = 2


def _check_brackets(spec: str) -> None:
    """Raises, with the position, on unbalanced or too deeply nested <...> (before any recursion)."""
    depth = 0
    for position, char in enumerate(spec):
        depth += (char == "<") - (char == ">")
        if depth < 0:
            raise ValueError(f"fmt: {spec!r}: unbalanced '>' at position {position}")
        if depth > MAX_NESTING:
            raise ValueError(f"fmt: {spec!r}: nested more than {MAX_NESTING} levels deep at position {position} "
                             f"(a block format nests one element or scale format)")
    if depth:
        raise ValueError(f"fmt: {spec!r}: {depth} unclosed '<'")


def parse(spec: str) -> Format:
    """A format from an inline spec "KIND<args>", e.g. "fixed<8,4>" or "float<e5m2,fnuz>"."""
    _check_brackets(spec)
    match = _INLINE.match(spec)
    types = format_types()
    if not match or match["kind"] not in types:
        raise ValueError(f"fmt: {spec!r} is not an inline spec; expected KIND<...> with KIND one of "
                         f"{', '.join(types)}, e.g. 'fixed<8,4>' or 'float<e5m2>'")
    return types[match["kind"]].from_spec(spec, _split_top_level(match["args"]))


def get(fmt: Format | str) -> Format:
    """A Format from a Format (returned as is), a registered name ("fp8_e4m3") or an inline spec."""
    if isinstance(fmt, Format):
        return fmt
    if not isinstance(fmt, str):
        raise TypeError(f"fmt: expected a Format or a format name; got {type(fmt).__name__}")
    entries = registry()
    if fmt in entries:
        return entries[fmt].format
    if "<" in fmt:
        return parse(fmt)
    close = difflib.get_close_matches(fmt, entries, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known formats: {', '.join(sorted(entries))}"
    raise ValueError(f"fmt: unknown format {fmt!r}{hint} (inline specs look like 'fixed<8,4>' or 'float<e5m2>')")
