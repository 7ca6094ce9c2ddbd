"""Sweep spaces: which precision configurations a sweep evaluates.

Exports `ROLES`, `Config` (one configuration: a format per role, optionally per layer group),
`Constraint` and `Space` (the product of per-role choices, plus an explicit list, filtered by
constraints), and `parse_choices` / `space_from_dict`, which turn the TOML schema below into a
`Space` and validate everything (role keys, format names, ranges, constraints) before any work starts,
and `grid_space`, a space of non-format axes only (workers, a probability, a signature: anything a
job takes per configuration that is not a format).

Roles (QPyTorch's vocabulary, see USAGE_NOTES) and what each one quantizes in the built-in job:

    weight           QuantSpec.weight and .bias, and LowPrecision(weight=...) after each step
    activation       QuantSpec.input: the input of every weight layer, i.e. the forward GEMM operand
                     that the layer also keeps for its weight gradient
    error            QuantSpec.grad_output: the gradient w.r.t. the layer output (backward GEMM operand)
    gradient         QuantSpec.grad_weight / .grad_bias and LowPrecision(grad=...)
    optimizer_state  LowPrecision(momentum=...)
    accumulator      QuantSpec.acc: the accumulation format of the layer's matmul/convolution
    master_weight    LowPrecision(acc=...): a separate high-precision copy of the weights that the
                     update is added to (absent: the update goes straight into the weight format)

A role left out is not quantized (fp32). A configuration holds format *specs* (strings such as
"bf16" or "float<e4m3>"), which `qsim.formats.get` turns into Format values; strings keep configs
hashable, readable and storable as JSON.

TOML schema (`[space]` table; see examples/sweep_space.toml):

    weight = "bf16"                                  one format
    weight = ["fp8_e4m3", "bf16", "fixed<8,6>"]      a list of names or inline specs
    weight = { float = { exp = "2..5", man = "1..7" } }      a product of float<eXmY>
    weight = { fixed = { wl = "4..16:4", fl = "wl-2" } }     fixed<wl,fl>; fl may be an int, list,
                                                             range, or "wl-N" (N integer bits)
    weight = { any = ["bf16", { float = { exp = 4, man = "2..3" } }] }   a union of the above
    Integer fields accept an int, a list of ints, or "a..b" / "a..b:step" (inclusive ranges).

    [space.groups]            optional layer groups: matchers are module type names or name globs
    conv = ["Conv2d"]
    fc = ["fc*"]
    [space.conv]              per-group choices override the global role inside that group
    weight = ["fp8_e4m3", "bf16"]

    constraints = ["activation <= weight", "weight <= 8"]   compare bits per element; a bare role
                              applies globally and inside each group; "conv.weight" names one group
    [[space.configs]]         explicit configurations, added to the product (duplicates removed)
    weight = "bf16"
    activation = "fp8_e4m3"

    [space.axes]              non-format axes, in the product with the formats; values are JSON
    workers = [1, 4, 16]      scalars (int, float, string, bool) that the job reads with
    obstinate_q = [0.0, 0.9]  config.value("workers"); the job must declare them (Job.axes)
"""
from __future__ import annotations

import difflib
import fnmatch
import itertools
import operator
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

ROLES = ("weight", "activation", "error", "gradient", "optimizer_state", "accumulator", "master_weight")
FULL_PRECISION_BITS = 32.0  # a role left out of a configuration stays in fp32

_SPACE_KEYS = {"groups", "constraints", "configs", "axes"}
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq, "!=": operator.ne}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.]*|\d+(?:\.\d+)?)\s*(<=|>=|==|!=|<|>)\s*([A-Za-z_][\w.]*|\d+(?:\.\d+)?)\s*$")
_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*(?::\s*(\d+))?\s*$")
_WL_MINUS_RE = re.compile(r"^\s*wl\s*-\s*(\d+)\s*$")


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


@dataclass(frozen=True, order=True)
class Config:
    """One precision configuration: sorted (key, format spec) pairs, key "role" or "group.role", the
    layer groups it refers to as (name, matchers) pairs, so that a job needs nothing else, and sorted
    (name, value) pairs of its non-format axes."""

    formats: tuple[tuple[str, str], ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    axes: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str], groups=(), axes: Mapping[str, object] | None = None) -> "Config":
        return cls(tuple(sorted((str(k), str(v)) for k, v in mapping.items())),
                   tuple((g, tuple(m)) for g, m in groups), tuple(sorted((axes or {}).items())))

    def value(self, axis: str):
        """The value of the non-format axis `axis` (e.g. "workers")."""
        values = dict(self.axes)
        if axis not in values:
            raise ValueError(f"axis: configuration {self.label()!r} has no axis {axis!r}; it has {sorted(values)}")
        return values[axis]

    def as_dict(self) -> dict[str, str]:
        return dict(self.formats)

    def get(self, role: str, group: str | None = None) -> str | None:
        """The format spec for `role` inside `group` (the group's override, else the global one), or None."""
        if role not in ROLES:
            raise ValueError(f"role: expected one of {ROLES}, got {role!r}{_suggest(role, ROLES)}")
        formats = dict(self.formats)
        if group is not None and f"{group}.{role}" in formats:
            return formats[f"{group}.{role}"]
        return formats.get(role)

    def group_of(self, name: str, kind: str) -> str | None:
        """The last group whose matchers equal the module's type name `kind` or glob-match its qualified
        `name`; None when no group matches (the layer takes the global formats)."""
        found = None
        for group, matchers in self.groups:
            if any(m == kind or fnmatch.fnmatchcase(name, m) for m in matchers):
                found = group
        return found

    def label(self) -> str:
        """A short human label such as "W=bf16 A=fp8_e4m3" (roles abbreviated)."""
        short = {"weight": "W", "activation": "A", "error": "E", "gradient": "G",
                 "optimizer_state": "M", "accumulator": "Acc", "master_weight": "Wm"}
        parts = []
        for key, spec in self.formats:
            group, _, role = key.rpartition(".")
            parts.append(f"{group + '.' if group else ''}{short[role]}={spec}")
        parts += [f"{name}={value}" for name, value in self.axes]
        return " ".join(parts) if parts else "fp32"


@dataclass(frozen=True)
class Constraint:
    """`lhs op rhs` on bits per element; each side is a key ("weight", "conv.weight") or a number."""

    text: str
    lhs: str | float
    op: str
    rhs: str | float

    @classmethod
    def parse(cls, text: str, groups) -> "Constraint":
        if not isinstance(text, str):
            raise TypeError(f"constraints: expected strings such as 'activation <= weight', got {text!r}")
        match = _CONSTRAINT_RE.match(text)
        if not match:
            raise ValueError(f"constraints: cannot parse {text!r}; expected '<key> <op> <key or number>' "
                             f"with op one of {sorted(_OPS)}, e.g. 'activation <= weight'")
        sides = []
        for side in (match.group(1), match.group(3)):
            if side[0].isdigit():
                sides.append(float(side))
                continue
            group, _, role = side.rpartition(".")
            if role not in ROLES:
                raise ValueError(f"constraints: unknown role {role!r} in {text!r}{_suggest(role, ROLES)}")
            if group and group not in groups:
                raise ValueError(f"constraints: unknown group {group!r} in {text!r}; "
                                 f"declared groups: {sorted(groups)}{_suggest(group, groups)}")
            sides.append(side)
        return cls(text, sides[0], match.group(2), sides[1])

    def holds(self, config: Config, bits: Callable[[str | None], float]) -> bool:
        """True when the comparison holds; a bare-role constraint must hold globally and in every group."""
        bare = all(isinstance(s, float) or "." not in s for s in (self.lhs, self.rhs))
        scopes = [None, *(g for g, _ in config.groups)] if bare else [None]

        def value(side, scope):
            if isinstance(side, float):
                return side
            group, _, role = side.rpartition(".")
            return bits(config.get(role, group or scope))

        return all(_OPS[self.op](value(self.lhs, s), value(self.rhs, s)) for s in scopes)


@dataclass(frozen=True)
class Space:
    """A product of per-key format choices and non-format axis values, plus explicit configs, filtered
    by constraints.

    `bits` maps every format spec that appears to its bits per element (filled by validation)."""

    choices: tuple[tuple[str, tuple[str, ...]], ...]
    explicit: tuple[Config, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    bits: tuple[tuple[str, float], ...] = field(default=(), compare=False)
    axes: tuple[tuple[str, tuple], ...] = ()

    def bits_of(self, spec: str | None) -> float:
        return FULL_PRECISION_BITS if spec is None else dict(self.bits)[spec]

    def __iter__(self) -> Iterator[Config]:
        keys, names = [k for k, _ in self.choices], [n for n, _ in self.axes]
        seen = set()
        product = (Config.from_dict(dict(zip(keys, combo)), self.groups, dict(zip(names, combo[len(keys):])))
                   for combo in itertools.product(*(opts for _, opts in self.choices), *(v for _, v in self.axes)))
        for config in itertools.chain(product if keys or names else (), self.explicit):
            if config in seen:
                continue
            seen.add(config)
            if all(c.holds(config, self.bits_of) for c in self.constraints):
                yield config

    def configs(self) -> list[Config]:
        """All configurations, in a stable order; raises ValueError when none satisfies the constraints."""
        configs = list(self)
        if not configs:
            raise ValueError("space: empty: no configuration (the choices are empty, "
                             "or the constraints exclude every combination)")
        return configs


def _int_values(value, what: str) -> list[int]:
    """An int, a list of ints or "a..b[:step]" strings, as a list of ints."""
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected an int, a list of ints or 'a..b', got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        match = _RANGE_RE.match(value)
        if not match:
            raise ValueError(f"{what}: expected a range 'a..b' or 'a..b:step', got {value!r}")
        lo, hi, step = int(match.group(1)), int(match.group(2)), int(match.group(3) or 1)
        if hi < lo or step < 1:
            raise ValueError(f"{what}: empty range {value!r} (need a <= b and step >= 1)")
        return list(range(lo, hi + 1, step))
    if isinstance(value, list):
        out = [v for item in value for v in _int_values(item, what)]
        if not out:
            raise ValueError(f"{what}: empty list")
        return out
    raise TypeError(f"{what}: expected an int, a list of ints or 'a..b', got {value!r}")


def check_keys(table: Mapping, allowed, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise ValueError(f"{what}: unknown key {key!r}; expected one of {sorted(allowed)}{_suggest(key, allowed)}")


def parse_choices(value, where: str) -> list[str]:
    """One role's choices (see the schema in the module docstring) as a list of format specs."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{where}: empty list of formats")
        return [spec for item in value for spec in parse_choices(item, where)]
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError(f"{where}: a format table needs exactly one of 'float', 'fixed', 'any'; got {sorted(value)}")
        (kind, body), = value.items()
        if kind == "any":
            return parse_choices(body if isinstance(body, list) else [body], where)
        if not isinstance(body, dict):
            raise TypeError(f"{where}.{kind}: expected a table, got {body!r}")
        if kind == "float":
            check_keys(body, {"exp", "man"}, f"{where}.float")
            missing = {"exp", "man"} - set(body)
            if missing:
                raise ValueError(f"{where}.float: missing {sorted(missing)}")
            return [f"float<e{e}m{m}>" for e in _int_values(body["exp"], f"{where}.float.exp")
                    for m in _int_values(body["man"], f"{where}.float.man")]
        if kind == "fixed":
            check_keys(body, {"wl", "fl"}, f"{where}.fixed")
            if set(body) != {"wl", "fl"}:
                raise ValueError(f"{where}.fixed: needs both 'wl' and 'fl'")
            specs = []
            for wl in _int_values(body["wl"], f"{where}.fixed.wl"):
                fl_value = body["fl"]
                minus = _WL_MINUS_RE.match(fl_value) if isinstance(fl_value, str) else None
                fls = [wl - int(minus.group(1))] if minus else _int_values(fl_value, f"{where}.fixed.fl")
                specs += [f"fixed<{wl},{fl}>" for fl in fls]
            return specs
        raise ValueError(f"{where}: unknown format kind {kind!r}; expected 'float', 'fixed' or 'any'"
                         f"{_suggest(kind, ['float', 'fixed', 'any'])}")
    raise TypeError(f"{where}: expected a format name, a list or a table, got {value!r}")


def _axis_values(name, values, where: str) -> tuple:
    """One axis's values: a JSON scalar or a non-empty list of them, duplicates removed."""
    values = values if isinstance(values, list) else [values]
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{where}: axis names must be identifiers, got {name!r}")
    if not values or not all(isinstance(v, (str, int, float, bool)) for v in values):
        raise ValueError(f"{where}.{name}: expected a value or a non-empty list of numbers, strings or "
                         f"booleans, got {values!r}")
    return tuple(dict.fromkeys(values))


def grid_space(**axes) -> Space:
    """The product of non-format axes, e.g. grid_space(workers=[1, 4], dmgc=["D8M8G8C8"], q=[0, 0.5])."""
    if not axes:
        raise ValueError("grid_space: expected at least one axis, e.g. workers=[1, 4]")
    return Space(choices=(), axes=tuple((name, _axis_values(name, v, "grid_space")) for name, v in axes.items()))


def _resolve_bits(specs, resolve: Callable, names: Callable) -> dict[str, float]:
    """Look every spec up once; unknown names raise ValueError with close matches."""
    bits = {}
    for spec in sorted(set(specs)):
        try:
            fmt = resolve(spec)
        except (ValueError, KeyError) as err:
            hint = "" if "did you mean" in str(err) else _suggest(spec, names())
            raise ValueError(f"space: unknown or invalid format {spec!r}{hint}: {err}") from None
        bits[spec] = float(fmt.bits_per_element)
    return bits


def space_from_dict(table: Mapping, resolve: Callable | None = None, names: Callable | None = None) -> Space:
    """Build and fully validate a Space from a parsed `[space]` table.

    resolve/names default to qsim.formats.get / qsim.formats.list; every format is looked up here,
    so a typo fails before any job runs."""
    if resolve is None or names is None:
        from qsim import formats
        resolve, names = resolve or formats.get, names or formats.list
    if not isinstance(table, Mapping):
        raise TypeError(f"space: expected a table, got {table!r}")
    groups_table = table.get("groups", {})
    if not isinstance(groups_table, Mapping):
        raise TypeError(f"space.groups: expected a table of group = [matchers], got {groups_table!r}")
    groups = {}
    for name, matchers in groups_table.items():
        if name in ROLES or name in _SPACE_KEYS:
            raise ValueError(f"space.groups: group name {name!r} is reserved")
        matchers = [matchers] if isinstance(matchers, str) else matchers
        if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
            raise ValueError(f"space.groups.{name}: expected a non-empty list of module type names or name globs")
        groups[name] = tuple(matchers)

    choices: dict[str, list[str]] = {}
    for key, value in table.items():
        if key in _SPACE_KEYS:
            continue
        if key in ROLES:
            choices[key] = parse_choices(value, f"space.{key}")
        elif key in groups:
            if not isinstance(value, Mapping):
                raise TypeError(f"space.{key}: expected a table of role = formats, got {value!r}")
            check_keys(value, ROLES, f"space.{key}")
            for role, sub in value.items():
                choices[f"{key}.{role}"] = parse_choices(sub, f"space.{key}.{role}")
        else:
            allowed = [*ROLES, *groups, *_SPACE_KEYS]
            raise ValueError(f"space: unknown key {key!r}; expected a role {ROLES}, a declared group "
                             f"{sorted(groups)} or one of {sorted(_SPACE_KEYS)}{_suggest(key, allowed)}")

    explicit_tables = table.get("configs", [])
    if not isinstance(explicit_tables, list):
        raise TypeError("space.configs: expected an array of tables ([[space.configs]])")
    explicit_dicts = []
    for i, entry in enumerate(explicit_tables):
        if not isinstance(entry, Mapping):
            raise TypeError(f"space.configs[{i}]: expected a table of key = format, got {entry!r}")
        flat = {}
        for key, spec in entry.items():
            if isinstance(spec, Mapping) and key in groups:
                check_keys(spec, ROLES, f"space.configs[{i}].{key}")
                flat.update({f"{key}.{r}": s for r, s in spec.items()})
            else:
                check_keys({key: 0}, [*ROLES], f"space.configs[{i}]")
                flat[key] = spec
        for key, spec in flat.items():
            if not isinstance(spec, str):
                raise TypeError(f"space.configs[{i}].{key}: expected one format name, got {spec!r}")
        explicit_dicts.append(flat)

    raw_constraints = table.get("constraints", [])
    if not isinstance(raw_constraints, list):
        raise TypeError("space.constraints: expected a list of strings such as 'activation <= weight'")
    constraints = tuple(Constraint.parse(c, groups) for c in raw_constraints)

    all_specs = [s for opts in choices.values() for s in opts] + [s for d in explicit_dicts for s in d.values()]
    bits = _resolve_bits(all_specs, resolve, names)
    axes_table = table.get("axes", {})
    if not isinstance(axes_table, Mapping):
        raise TypeError(f"space.axes: expected a table of axis = values, got {axes_table!r}")
    space = Space(
        choices=tuple((k, tuple(dict.fromkeys(v))) for k, v in choices.items()),
        explicit=tuple(Config.from_dict(d, groups.items()) for d in explicit_dicts),
        constraints=constraints,
        groups=tuple(groups.items()),
        bits=tuple(sorted(bits.items())),
        axes=tuple((name, _axis_values(name, v, "space.axes")) for name, v in axes_table.items()),
    )
    space.configs()  # raises on an empty space, before any work
    return space
