"""Number formats as small frozen values, and the registry of named formats.

Exports the Format types (FixedPoint, FloatingPoint), `get(name_or_spec)`, `list()` and `parse(spec)`.
A format knows its bit layout and derives every limit (largest finite value, smallest normal and
subnormal, epsilon) from its fields by decoding its own encodings, never from hand-written tables.
Named formats are TOML files in formats/ (installed as the package `qsim.data.formats`): adding one
is adding one file. The kernels see a format only through its `grid()`, the plain description of
the set of values it can hold (see csrc/qsim/params.h).
"""
from __future__ import annotations

import builtins
import difflib
import functools
import math
import re
import tomllib
from dataclasses import dataclass, fields
from fractions import Fraction
from importlib import resources

import numpy as np

# Fixed point needs a constant quantum; an exponent above any finite one gives it (see Grid).
_FIXED_EMIN = 4096
# The smallest quantum any grid may use: float32's smallest subnormal, so results fit a float32 tensor.
_MIN_QUANTUM_EXP = -149
# Formats up to this many bits can list all their values (exhaustive tests, docs).
_ENUMERABLE_BITS = 16


@dataclass(frozen=True)
class Grid:
    """The set of values of an elementwise format, as the kernels see it.

    A magnitude with floor(log2|x|) = e rounds to a multiple of 2^(max(e, emin) - man); without
    subnormals the grid below 2^emin is {0, 2^emin}. Magnitudes above max_pos (positive) or max_neg
    (negative) overflow according to `overflow`."""

    man: int
    emin: int
    subnormals: bool
    overflow: str  # "saturate" | "inf" | "nan" | "wrap"
    has_inf: bool
    neg_zero: bool
    max_pos: Fraction
    max_neg: Fraction
    wrap_bits: int = 0
    wrap_signed: bool = True


class Format:
    """Base of all formats: a frozen, hashable value that describes itself."""

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element (block formats add their amortised shared scale)."""
        raise NotImplementedError

    def grid(self) -> Grid:
        """The values this format holds, as the kernels see them (computed once per format)."""
        return _cached_grid(self)

    def _build_grid(self) -> Grid:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The inline spec that `parse` turns back into this value."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The registered name of this format if it has one, else its inline spec."""
        return _names_by_format().get(self, self.spec)

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.grid().max_pos)

    @property
    def min_normal(self) -> float:
        """Smallest positive value with full precision (the smallest normal for floats)."""
        g = self.grid()
        return math.ldexp(1.0, g.emin) if g.emin < _FIXED_EMIN else self.min_positive

    @property
    def min_positive(self) -> float:
        """Smallest positive value (the smallest subnormal where there are subnormals)."""
        g = self.grid()
        return math.ldexp(1.0, g.emin - g.man if g.subnormals else g.emin)

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value of the grid (the quantum for fixed point)."""
        g = self.grid()
        return math.ldexp(1.0, (g.emin if g.emin >= _FIXED_EMIN else 0) - g.man)

    def values(self) -> np.ndarray:
        """All finite values, sorted, as float64 (formats of at most 16 bits); -0 is listed as 0."""
        if self.bits_per_element > _ENUMERABLE_BITS:
            raise ValueError(f"values(): {self.name} has {self.bits_per_element:g} bits; only formats of "
                             f"at most {_ENUMERABLE_BITS} bits are enumerated")
        decoded = [self.decode(code) for code in range(1 << int(self.bits_per_element))]
        return np.unique(np.array([v for v in decoded if math.isfinite(v)], dtype=np.float64) + 0.0)

    def decode(self, code: int) -> float:
        """The value of one bit pattern (an int in [0, 2^bits))."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@functools.lru_cache(maxsize=4096)
def _cached_grid(fmt: Format) -> Grid:
    return fmt._build_grid()


def _check_int(value, argument: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument}: expected an int in [{low}, {high}]; got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{argument}: expected an int in [{low}, {high}]; got {value}")


def _check_choice(value, argument: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{argument}: expected one of {', '.join(map(repr, choices))}; got {value!r}")


@dataclass(frozen=True)
class FixedPoint(Format):
    """Fixed point: an integer code of `wl` bits (the sign included when signed, two's complement)
    scaled by 2^-fl. Signed range [-2^(wl-1), 2^(wl-1)-1]·2^-fl; unsigned [0, 2^wl-1]·2^-fl.

    overflow="saturate" clips to the range; "wrap" keeps the code modulo 2^wl as integer hardware does.
    There is no NaN or inf encoding: NaN inputs stay NaN (so divergence stays visible), ±inf saturates
    (or becomes NaN under "wrap"), and zero is always +0."""

    wl: int
    fl: int
    signed: bool = True
    overflow: str = "saturate"

    def __post_init__(self):
        _check_int(self.wl, "wl", 1, 64)
        _check_int(self.fl, "fl", -64, 126)
        if not isinstance(self.signed, bool):
            raise TypeError(f"signed: expected a bool; got {self.signed!r}")
        if self.signed and self.wl <= self.fl:
            raise ValueError(f"wl: a signed fixed-point format needs wl > fl (one bit is the sign); "
                             f"got wl={self.wl}, fl={self.fl}")
        if not self.signed and self.wl < self.fl:
            raise ValueError(f"wl: an unsigned fixed-point format needs wl >= fl; got wl={self.wl}, fl={self.fl}")
        _check_choice(self.overflow, "overflow", ("saturate", "wrap"))

    @property
    def bits_per_element(self) -> float:
        return float(self.wl)

    @property
    def spec(self) -> str:
        options = ("" if self.signed else ",unsigned") + ("" if self.overflow == "saturate" else f",{self.overflow}")
        return f"fixed<{self.wl},{self.fl}{options}>"

    def _build_grid(self) -> Grid:
        quantum = Fraction(2) ** -self.fl
        top = (1 << (self.wl - 1)) - 1 if self.signed else (1 << self.wl) - 1
        bottom = (1 << (self.wl - 1)) if self.signed else 0
        return Grid(man=_FIXED_EMIN + self.fl, emin=_FIXED_EMIN, subnormals=True, overflow=self.overflow,
                    has_inf=False, neg_zero=False, max_pos=top * quantum, max_neg=bottom * quantum,
                    wrap_bits=self.wl, wrap_signed=self.signed)

    def decode(self, code: int) -> float:
        if self.signed and code >= 1 << (self.wl - 1):
            code -= 1 << self.wl
        return math.ldexp(code, -self.fl)


_SPECIALS = ("ieee", "fn", "fnuz", "finite")


@dataclass(frozen=True)
class FloatingPoint(Format):
    """Binary floating point with a sign bit, `exp` exponent bits and `man` trailing mantissa bits
    (the sign and the implicit leading bit are not counted in `man`).

    special names the encodings of special values (LLVM's names, as ml_dtypes uses them):
      "ieee"   the top exponent encodes ±inf (mantissa 0) and NaN; bias 2^(exp-1) - 1.
      "fn"     finite with NaN: no inf; the all-ones pattern (both signs) is NaN (e.g. e4m3fn).
      "fnuz"   finite, unsigned zero: no inf, no -0; the -0 pattern is the one NaN; bias 2^(exp-1).
      "finite" no inf and no NaN; every pattern is a number (OCP fp6 e2m3/e3m2, fp4 e2m1).
    overflow: what finite values beyond the largest finite one become: "saturate" (±max, like torch's
    float8_e4m3fn cast), "inf" (IEEE 754: ±inf, or ±max under modes that round toward zero; "ieee" only)
    or "nan" (like ml_dtypes' e4m3fn). The default is "inf" for "ieee" and "saturate" otherwise.
    ±inf inputs stay ±inf where the format has inf, and otherwise overflow like finite values.
    NaN inputs stay NaN, also for "finite" formats, which have no NaN pattern (ml_dtypes maps NaN to -0
    there; qsim keeps NaN so that a diverging run stays visible).
    subnormals=False flushes: the values between 0 and the smallest normal are rounded to either."""

    exp: int
    man: int
    subnormals: bool = True
    special: str = "ieee"
    overflow: str | None = None

    def __post_init__(self):
        _check_int(self.exp, "exp", 1, 8)
        _check_int(self.man, "man", 0, 23)
        if not isinstance(self.subnormals, bool):
            raise TypeError(f"subnormals: expected a bool; got {self.subnormals!r}")
        _check_choice(self.special, "special", _SPECIALS)
        if self.overflow is None:
            object.__setattr__(self, "overflow", "inf" if self.special == "ieee" else "saturate")
        _check_choice(self.overflow, "overflow", ("saturate", "inf", "nan"))
        if self.overflow == "inf" and self.special != "ieee":
            raise ValueError(f"overflow: 'inf' needs a format with infinities (special='ieee'); "
                             f"special={self.special!r} has none: use 'saturate' or 'nan'")
        if self.overflow == "nan" and self.special == "finite":
            raise ValueError("overflow: 'nan' needs a NaN encoding; special='finite' has none: use 'saturate'")
        if self._max_code() is None:
            raise ValueError(f"exp, man: float<e{self.exp}m{self.man}> with special={self.special!r} "
                             f"and subnormals={self.subnormals} has no nonzero finite value")
        if self._emin - self.man < _MIN_QUANTUM_EXP:
            raise ValueError(f"man: the smallest subnormal 2^{self._emin - self.man} is below float32's "
                             f"2^{_MIN_QUANTUM_EXP}; use fewer mantissa bits or special != 'fnuz'")

    @property
    def bias(self) -> int:
        return (1 << (self.exp - 1)) - (0 if self.special == "fnuz" else 1)

    @property
    def _emin(self) -> int:
        return 1 - self.bias

    @property
    def bits_per_element(self) -> float:
        return float(1 + self.exp + self.man)

    @property
    def spec(self) -> str:
        options = "" if self.special == "ieee" else f",{self.special}"
        if self.overflow != ("inf" if self.special == "ieee" else "saturate"):
            options += f",{self.overflow}"
        if not self.subnormals:
            options += ",nosub"
        return f"float<e{self.exp}m{self.man}{options}>"

    def _is_nan_code(self, code: int) -> bool:
        magnitude = code & ((1 << (self.exp + self.man)) - 1)
        top_exponent = magnitude >> self.man == (1 << self.exp) - 1
        if self.special == "ieee":
            return top_exponent and magnitude & ((1 << self.man) - 1) != 0
        if self.special == "fn":
            return magnitude == (1 << (self.exp + self.man)) - 1
        if self.special == "fnuz":
            return code == 1 << (self.exp + self.man)
        return False

    def _max_code(self) -> int | None:
        """The largest positive finite, representable code, or None if there is no nonzero one."""
        top = (1 << (self.exp + self.man)) - 1
        if self.special == "ieee":
            top -= 1 << self.man  # the whole top exponent field is inf and NaN
        for code in range(top, 0, -1):
            if self._is_nan_code(code) or math.isinf(self.decode(code)):
                continue
            if not self.subnormals and code >> self.man == 0:
                return None
            return code
        return None

    def decode(self, code: int) -> float:
        sign = -1.0 if code >> (self.exp + self.man) & 1 else 1.0
        if self._is_nan_code(code):
            return math.nan
        field = (code >> self.man) & ((1 << self.exp) - 1)
        mantissa = code & ((1 << self.man) - 1)
        if self.special == "ieee" and field == (1 << self.exp) - 1:
            return sign * math.inf
        if field == 0:
            if not self.subnormals and mantissa:
                return math.nan  # not a value of this format
            return sign * math.ldexp(mantissa, self._emin - self.man)
        return sign * math.ldexp((1 << self.man) | mantissa, field - self.bias - self.man)

    def _build_grid(self) -> Grid:
        largest = Fraction(self.decode(self._max_code()))
        return Grid(man=self.man, emin=self._emin, subnormals=self.subnormals, overflow=self.overflow,
                    has_inf=self.special == "ieee", neg_zero=self.special != "fnuz",
                    max_pos=largest, max_neg=largest)


# --- the registry ------------------------------------------------------------------------------

_FORMAT_TYPES = {"fixed": FixedPoint, "float": FloatingPoint}


def _from_table(name: str, table: dict) -> Format:
    kinds = [key for key in table if key in _FORMAT_TYPES]
    if len(kinds) != 1:
        raise ValueError(f"formats/{name}.toml: expected exactly one of the tables "
                         f"{', '.join(f'[{k}]' for k in _FORMAT_TYPES)}; found {kinds or 'none'}")
    cls = _FORMAT_TYPES[kinds[0]]
    arguments = table[kinds[0]]
    allowed = {f.name for f in fields(cls)}
    unknown = set(arguments) - allowed
    if unknown:
        raise ValueError(f"formats/{name}.toml: unknown keys {sorted(unknown)} for [{kinds[0]}]; "
                         f"expected some of {sorted(allowed)}")
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
    entries = {}
    for path in sorted(resources.files("qsim.data.formats").iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".toml"):
            continue
        name = path.name[: -len(".toml")]
        table = tomllib.loads(path.read_text())
        missing = {"description", "source"} - set(table)
        if missing:
            raise ValueError(f"formats/{path.name}: missing keys {sorted(missing)}")
        entries[name] = Entry(name, _from_table(name, table), table["description"], table["source"])
    return entries


@functools.cache
def _names_by_format() -> dict[Format, str]:
    names = {}
    for entry in registry().values():
        names.setdefault(entry.format, entry.name)
    return names


def list() -> builtins.list[str]:  # noqa: A001 - the registry's natural verb
    """Names of all registered formats, sorted."""
    return sorted(registry())


_INLINE = re.compile(r"^\s*(?P<kind>[a-z]+)\s*<(?P<args>[^<>]*)>\s*$")
_FLOAT_SHAPE = re.compile(r"^e(?P<exp>\d+)m(?P<man>\d+)$")


def parse(spec: str) -> Format:
    """An inline spec: "fixed<wl,fl[,unsigned][,wrap]>" or "float<eXmY[,fn|fnuz|finite][,saturate|inf|nan][,nosub]>"."""
    match = _INLINE.match(spec)
    if not match or match["kind"] not in _FORMAT_TYPES:
        raise ValueError(f"fmt: {spec!r} is not an inline spec; expected e.g. 'fixed<8,4>' or 'float<e5m2>'")
    args = [a.strip() for a in match["args"].split(",")]
    if match["kind"] == "fixed":
        if len(args) < 2 or not all(re.fullmatch(r"-?\d+", a) for a in args[:2]):
            raise ValueError(f"fmt: {spec!r}: expected fixed<wl,fl[,unsigned][,wrap]> with integer wl and fl")
        options = set(args[2:])
        unknown = options - {"unsigned", "wrap", "saturate"}
        if unknown:
            raise ValueError(f"fmt: {spec!r}: unknown fixed-point options {sorted(unknown)}; "
                             f"expected 'unsigned', 'wrap' or 'saturate'")
        return FixedPoint(int(args[0]), int(args[1]), signed="unsigned" not in options,
                          overflow="wrap" if "wrap" in options else "saturate")
    shape = _FLOAT_SHAPE.match(args[0])
    if not shape:
        raise ValueError(f"fmt: {spec!r}: expected float<eXmY,...> such as float<e5m2>")
    options = args[1:]
    unknown = set(options) - set(_SPECIALS) - {"saturate", "inf", "nan", "nosub"}
    if unknown:
        raise ValueError(f"fmt: {spec!r}: unknown float options {sorted(unknown)}; expected some of "
                         f"{', '.join(_SPECIALS)}, saturate, inf, nan, nosub")
    special = next((o for o in options if o in _SPECIALS), "ieee")
    overflow = next((o for o in options if o in ("saturate", "inf", "nan")), None)
    return FloatingPoint(int(shape["exp"]), int(shape["man"]), subnormals="nosub" not in options,
                         special=special, overflow=overflow)


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
