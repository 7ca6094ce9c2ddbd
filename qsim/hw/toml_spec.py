"""Typed, frozen specs from TOML: one loader for every hardware description in hw_models/.

Exports `resolve(name_or_path)` (a packaged hw_models/ file by name, or a user's path) and
`build(cls, table, source, section)` (a frozen dataclass from a TOML table). Unknown keys are rejected,
missing keys without a default are named, and each value is type-checked against the field's
annotation; range checks live in each dataclass's ``__post_init__``, whose messages start with the
field name, so every error reads "<file>: <section>.<field> ...".
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
import types
import typing
from pathlib import Path

PACKAGE = "qsim.data.hw_models"


def _packaged_dir():
    return importlib.resources.files(PACKAGE)


def available() -> list[str]:
    """Names of the packaged descriptions (file stems in hw_models/)."""
    return sorted(p.name[:-5] for p in _packaged_dir().iterdir() if p.name.endswith(".toml"))


def resolve(name_or_path) -> tuple[dict, str]:
    """Reads a TOML description: an existing path, else a packaged name (with or without .toml)."""
    path = Path(name_or_path)
    if path.is_file():
        source, text = str(path), path.read_text()
    else:
        stem = path.name[:-5] if path.name.endswith(".toml") else path.name
        resource = _packaged_dir() / f"{stem}.toml"
        if not resource.is_file():
            raise ValueError(f"no hardware description {str(name_or_path)!r}: not a file, and not one of "
                             f"the packaged {available()}")
        source, text = f"hw_models/{stem}.toml", resource.read_text()
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{source}: invalid TOML: {err}") from None


def _dotted(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _check(value, hint, source: str, key: str):
    """`value` converted to the annotation `hint`; `key` is the dotted field name for errors."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType and type(None) in typing.get_args(hint):  # an optional field, given here
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _check(value, hint, source, key)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{source}: {key} must be a table, got {value!r}")
        return build(hint, value, source, key)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ValueError(f"{source}: {key} must be an array, got {value!r}")
        return tuple(_check(v, item, source, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{source}: {key} must be a string, got {value!r}")
        return value
    raise TypeError(f"{source}: {key}: unsupported field type {hint!r}")


def build(cls, table: dict, source: str, section: str = ""):
    """A `cls` instance from a TOML table. Errors read "<source>: <section>.<field> ..."."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(_dotted(section, u) for u in unknown)}; "
                         f"expected some of {', '.join(fields)}")
    values = {}
    for name, field in fields.items():
        if name in table:
            values[name] = _check(table[name], hints[name], source, _dotted(section, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"{source}: missing field {_dotted(section, name)}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        # __post_init__ messages start with the field name, which this prefixes with its section.
        raise ValueError(f"{source}: {_dotted(section, str(err))}") from None
