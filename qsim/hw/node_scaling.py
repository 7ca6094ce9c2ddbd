"""Technology-node scaling of area, delay and energy: Stillmaker and Baas (2017), not classical rules.

Exports `NodeScaling` (loaded with `load_node_scaling(name_or_path)`, default hw_models/node_scaling.toml)
with `area_factor(from_nm, to_nm)`, `delay_factor(...)`, `energy_factor(...)` and `power_factor(...)`: what a figure at
`from_nm` is multiplied by to give it at `to_nm`. qsim.hw.area moves its 45 nm areas (and the energy
table's energies, for power) with them.

Why not (node ratio)^2 for area: below 45 nm the drawn node no longer tracks density (the paper's
45 -> 7 nm area factor is 0.059 where (7/45)^2 is 0.024), and delay and energy depend on the supply
voltage each node runs at. The paper gives area as a table between its nodes and delay/energy as
polynomials in the supply voltage per node; between two of its nodes the factor is interpolated
log-log in the node (an assumption: the paper gives no rule there), outside 7-180 nm it refuses.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from . import toml_spec


@dataclass(frozen=True)
class NodeFit:
    """One node's polynomials in the supply voltage V (coefficients highest power first)."""

    node_nm: float
    nominal_vdd: float
    delay: tuple[float, ...]
    energy: tuple[float, ...]
    power: tuple[float, ...]

    def __post_init__(self):
        if not (self.node_nm > 0 and self.nominal_vdd > 0):
            raise ValueError(f"node_nm and nominal_vdd must be > 0, got {self.node_nm!r}, {self.nominal_vdd!r}")

    def value(self, metric: str, vdd: float | None) -> float:
        """The fitted `metric` ("delay", "energy" or "power") at `vdd` (default: the nominal supply)."""
        v = self.nominal_vdd if vdd is None else vdd
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"vdd must be a supply voltage in volts > 0, got {v!r}")
        result = 0.0
        for c in getattr(self, metric):  # Horner, highest power first
            result = result * v + c
        if not result > 0:
            raise ValueError(f"vdd {v!r} V is outside the range the {self.node_nm:g} nm {metric} fit covers "
                             f"(it gives {result:.3g}); its nominal supply is {self.nominal_vdd} V")
        return result


@dataclass(frozen=True)
class NodeScaling:
    """The paper's area table between its nodes and its per-node delay/energy/power fits."""

    name: str
    source: str
    nodes_nm: tuple[float, ...]
    area: tuple[tuple[float, ...], ...]
    fits: tuple[NodeFit, ...]

    def __post_init__(self):
        n = len(self.nodes_nm)
        if list(self.nodes_nm) != sorted(self.nodes_nm, reverse=True) or len(set(self.nodes_nm)) != n:
            raise ValueError(f"nodes_nm must be distinct and in decreasing order, got {list(self.nodes_nm)}")
        if len(self.area) != n or any(len(row) != n or min(row) <= 0 for row in self.area):
            raise ValueError(f"area must be a {n} x {n} table of positive factors, one row and column per node")
        if sorted(f.node_nm for f in self.fits) != sorted(self.nodes_nm):
            raise ValueError(f"fits must hold one entry per node of nodes_nm {list(self.nodes_nm)}")

    def _bracket(self, node_nm: float) -> tuple[int, int, float]:
        """(i, j, t): node_nm lies between nodes i and j, at fraction t of the way in log(node)."""
        if isinstance(node_nm, bool) or not isinstance(node_nm, (int, float)) or \
                not min(self.nodes_nm) <= node_nm <= max(self.nodes_nm):
            raise ValueError(f"node_nm must be a process node in nm between {min(self.nodes_nm):g} and "
                             f"{max(self.nodes_nm):g} (the range of {self.name}), got {node_nm!r}")
        for i, (big, small) in enumerate(zip(self.nodes_nm, self.nodes_nm[1:])):
            if small <= node_nm <= big:
                return i, i + 1, math.log(big / node_nm) / math.log(big / small)
        raise AssertionError("unreachable: node_nm is inside the table")

    def _interpolate(self, node_nm: float, at) -> float:
        """`at(index)` at a table node, interpolated log-log between the two nodes around node_nm."""
        i, j, t = self._bracket(node_nm)
        if t in (0, 1):  # on a table node: its own value only (a voltage may be outside the neighbour's fit)
            return at(j if t else i)
        return math.exp((1 - t) * math.log(at(i)) + t * math.log(at(j)))

    def area_factor(self, from_nm: float, to_nm: float) -> float:
        """Area at to_nm / area at from_nm: the paper's table (from_nm's row), interpolated between its nodes."""
        return self._interpolate(from_nm, lambda i: self._interpolate(to_nm, lambda j: self.area[i][j]))

    def nominal_vdd(self, node_nm: float) -> float:
        """The nominal supply (V) at node_nm, interpolated log-log between the paper's nodes."""
        fits = {f.node_nm: f for f in self.fits}
        return self._interpolate(node_nm, lambda i: fits[self.nodes_nm[i]].nominal_vdd)

    def _fit_factor(self, metric: str, from_nm, to_nm, from_vdd, to_vdd) -> float:
        fits = {f.node_nm: f for f in self.fits}

        def at(node_nm, vdd):
            return self._interpolate(node_nm, lambda i: fits[self.nodes_nm[i]].value(metric, vdd))
        return at(to_nm, to_vdd) / at(from_nm, from_vdd)

    def delay_factor(self, from_nm: float, to_nm: float, from_vdd: float | None = None,
                     to_vdd: float | None = None) -> float:
        """Delay at (to_nm, to_vdd) / delay at (from_nm, from_vdd); None: the node's nominal supply."""
        return self._fit_factor("delay", from_nm, to_nm, from_vdd, to_vdd)

    def energy_factor(self, from_nm: float, to_nm: float, from_vdd: float | None = None,
                      to_vdd: float | None = None) -> float:
        """Energy per operation at (to_nm, to_vdd) / at (from_nm, from_vdd); None: the nominal supply."""
        return self._fit_factor("energy", from_nm, to_nm, from_vdd, to_vdd)

    def power_factor(self, from_nm: float, to_nm: float, from_vdd: float | None = None,
                     to_vdd: float | None = None) -> float:
        """Power at (to_nm, to_vdd) / at (from_nm, from_vdd) for the same circuit; None: the nominal supply."""
        return self._fit_factor("power", from_nm, to_nm, from_vdd, to_vdd)


@functools.lru_cache(maxsize=None)
def load_node_scaling(name_or_path="node_scaling") -> NodeScaling:
    table, source = toml_spec.resolve(name_or_path)
    return toml_spec.build(NodeScaling, table, source)
