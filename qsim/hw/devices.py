"""The FPGA device catalogue: one TOML file per device in hw_models/devices/, figures from the data sheets.

Exports `Device` (resources, DSP slice shape, memory shapes, clocks by speed grade), `load_device(name_or_path,
speed_grade=None)` (a packaged device by name or alias, or a user's file) and `available_devices()`.
Adding a device is adding a file; each file cites the data sheets its numbers come from.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import toml_spec

FAMILIES = ("7series", "ultrascale_plus")
RESOURCES = ("luts", "ffs", "dsps", "bram36", "uram")


def _check_shapes(shapes, name: str):
    for shape in shapes:
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"{name} must hold [depth, width] pairs of positive integers, got {list(shape)!r}")


@dataclass(frozen=True)
class DSPSpec:
    """A DSP slice's multiplier: a_bits x b_bits two's-complement operands, an acc_bits-wide accumulator."""

    primitive: str
    a_bits: int
    b_bits: int
    acc_bits: int

    def __post_init__(self):
        for field in ("a_bits", "b_bits", "acc_bits"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be a positive integer, got {getattr(self, field)!r}")


@dataclass(frozen=True)
class SpeedGrade:
    """Data-sheet maximum clocks of one speed grade (0 for a memory the device does not have): the DSP
    slice, block RAM and UltraRAM FMAX, and the global clock buffer's (BUFG / BUFGCE), which caps any
    design clocked from a global clock however short its logic paths."""

    name: str
    dsp_mhz: float
    bram_mhz: float
    bufg_mhz: float
    uram_mhz: float = 0.0

    def __post_init__(self):
        if not (self.dsp_mhz > 0 and self.bram_mhz > 0 and self.bufg_mhz > 0 and self.uram_mhz >= 0):
            raise ValueError(f"grade {self.name!r}: dsp_mhz, bram_mhz and bufg_mhz must be > 0 and uram_mhz >= 0")


@dataclass(frozen=True)
class MemoryShapes:
    """Simple-dual-port (depth, width) configurations of the block RAM and UltraRAM primitives."""

    bram36_shapes: tuple[tuple[int, ...], ...]
    bram18_shapes: tuple[tuple[int, ...], ...]
    uram_shapes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        for field in ("bram36_shapes", "bram18_shapes", "uram_shapes"):
            _check_shapes(getattr(self, field), field)
        if not self.bram36_shapes or not self.bram18_shapes:
            raise ValueError("bram36_shapes and bram18_shapes must not be empty")


@dataclass(frozen=True)
class Device:
    """One FPGA: resource counts, its DSP slice, memory shapes and maximum clocks at a speed grade."""

    name: str
    part: str
    family: str
    source: str
    luts: int
    ffs: int
    dsps: int
    bram36: int
    uram: int
    speed_grade: str
    typical_mhz: float
    dsp: DSPSpec
    grades: tuple[SpeedGrade, ...]
    memory: MemoryShapes
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for field in ("luts", "ffs", "dsps"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be a positive integer, got {getattr(self, field)!r}")
        for field in ("bram36", "uram"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)!r}")
        if not self.typical_mhz > 0:
            raise ValueError(f"typical_mhz must be > 0, got {self.typical_mhz!r}")
        if self.uram and not self.memory.uram_shapes:
            raise ValueError(f"memory.uram_shapes must be given for a device with uram = {self.uram}")
        names = [g.name for g in self.grades]
        if self.speed_grade not in names:
            raise ValueError(f"speed_grade {self.speed_grade!r} is not one of the grades {names}")

    @property
    def grade(self) -> SpeedGrade:
        return next(g for g in self.grades if g.name == self.speed_grade)

    def capacity(self) -> dict:
        """What the device offers, per resource (block RAM in 36 Kb blocks)."""
        return {r: getattr(self, r) for r in RESOURCES}


def _catalogue():
    return importlib.resources.files(toml_spec.PACKAGE) / "devices"


@functools.lru_cache(maxsize=1)
def _packaged() -> dict:
    """Packaged device name -> TOML table, parsed once (read-only: build() does not change a table)."""
    found = {}
    for entry in sorted(_catalogue().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            found[entry.name[:-5]] = tomllib.loads(entry.read_text())
    return found


def available_devices() -> list[str]:
    """Names of the packaged devices (file stems in hw_models/devices/)."""
    return sorted(p.name[:-5] for p in _catalogue().iterdir() if p.name.endswith(".toml"))


def load_device(name_or_path="zcu102", speed_grade: str | None = None) -> Device:
    """A packaged device by name or alias (case-insensitive), or a TOML file of the same shape."""
    path = Path(str(name_or_path))
    if path.suffix == ".toml" and path.is_file():
        source = str(path)
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{source}: invalid TOML: {err}") from None
    else:
        key = str(name_or_path).lower()
        packaged = _packaged()
        stem = next((s for s, t in packaged.items()
                     if key == s or key in [a.lower() for a in t.get("aliases", ())]), None)
        if stem is None:
            known = ", ".join(f"{s} ({', '.join(t.get('aliases', ()))})" for s, t in packaged.items())
            raise ValueError(f"unknown device {str(name_or_path)!r}: known devices are {known}, "
                             "or give the path of a device .toml file")
        table, source = packaged[stem], f"hw_models/devices/{stem}.toml"
    device = toml_spec.build(Device, table, source)
    if speed_grade is not None:
        try:
            device = dataclasses.replace(device, speed_grade=speed_grade)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
    return device
