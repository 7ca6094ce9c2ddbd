"""What a sweep runs: `Job`, a function from a configuration to a dict of metrics, with its costs.

Exports `Job`, `config_seed` and `result_key`. The function must be importable by name (defined at
module level, or a functools.partial of one) so that process pools and dask workers can unpickle it.
It is called as fn(config, seed=..., **params) when it accepts `seed`, else fn(config, **params);
it returns {metric name: real number}. Costs are not the job's business: they are computed in the
main process from `profile` and the configuration, before any evaluation.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Callable

from .costs import Cost, ModelProfile
from .space import ROLES, Config, _suggest


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _identity(config: Config) -> list:
    """What identifies a configuration in seeds and keys (axes only when it has some: earlier keys hold)."""
    return [config.formats, config.groups] + ([config.axes] if config.axes else [])


def config_seed(base_seed: int, config: Config) -> int:
    """The seed of one configuration: a stable 31-bit hash of (sweep seed, config), recorded with the result."""
    return int(_digest([base_seed, *_identity(config)])[:8], 16) & 0x7FFFFFFF


@dataclass(frozen=True)
class Job:
    """A named evaluation. `params` (JSON values) are passed to fn and are part of every result key,
    so changing e.g. the number of epochs never reuses stale results. `keys` lists the config keys the
    job can honour ("weight", "conv.activation", ...); None accepts any role, globally or per group.
    `objectives` are the metric and cost names (all minimised) its frontier uses by default. `axes`
    names the non-format axes every configuration must give a value (see qsim.sweep.space). `metrics`
    names what fn reports, first the main one (None: undeclared, any name may be a metric), so that a
    misspelled objective fails before any work; `chance` is the main metric of a model that guesses
    (90 for % error on ten classes), so results no better are not presented as results (qsim.sweep.health)."""

    name: str
    fn: Callable
    params: tuple[tuple[str, object], ...] = ()
    profile: ModelProfile | None = None
    costs: tuple[Cost, ...] = ()
    units: tuple[tuple[str, str], ...] = ()
    keys: frozenset[str] | None = field(default=None)
    objectives: tuple[str, ...] = ("error", "memory_kib")
    axes: frozenset[str] = frozenset()
    metrics: tuple[str, ...] | None = None
    chance: float | None = None

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(f"fn: expected a callable config -> metrics dict, got {self.fn!r}")
        try:
            json.dumps(dict(self.params))
        except TypeError as err:
            raise TypeError(f"params: expected JSON-serialisable values: {err}") from None
        if self.costs and self.profile is None:
            raise ValueError(f"costs: job {self.name!r} has costs but no model profile to compute them from")
        names = [c.name for c in self.costs]
        if len(set(names)) != len(names):
            raise ValueError(f"costs: duplicate cost names {names}")

    def check(self, configs) -> None:
        """Raise ValueError before any work when a configuration uses keys this job cannot honour."""
        for config in configs:
            if {name for name, _ in config.axes} != self.axes:
                raise ValueError(f"config {config.label()!r}: job {self.name!r} takes the axes {sorted(self.axes)}, "
                                 f"the configuration gives {sorted(name for name, _ in config.axes)}")
            for key, _ in config.formats:
                role = key.rpartition(".")[2]
                if role not in ROLES or (self.keys is not None and key not in self.keys):
                    allowed = sorted(self.keys) if self.keys is not None else ROLES
                    raise ValueError(f"config {config.label()!r}: job {self.name!r} cannot honour key {key!r}; "
                                     f"it supports {allowed}")

    def check_objectives(self, objectives, source: str = "objectives", estimating: bool = False) -> None:
        """Raise ValueError before any work unless `objectives` are 2 or more names of this job's
        metrics (when declared) or costs; the message lists the accepted names. `estimating` (a budgeted
        search, which predicts the one unknown: the metric) needs a metric first and costs after it."""
        objectives = list(objectives)
        costs = [c.name for c in self.costs]
        known = [*(self.metrics or ()), *costs]
        accepted = f"job {self.name!r} reports {known}" + ("" if self.metrics is not None else " and its own metrics")
        if len(objectives) < 2 or not all(isinstance(o, str) and o for o in objectives):
            raise ValueError(f"{source}: expected 2 or more metric/cost names, got {objectives}; {accepted}")
        for name in objectives:
            if self.metrics is not None and name not in known:
                raise ValueError(f"{source}: unknown name {name!r}{_suggest(name, known)}; {accepted}")
        if estimating and (objectives[0] in costs or not all(o in costs for o in objectives[1:])):
            raise ValueError(f"{source}: a budgeted search needs a metric followed by costs {costs}, got {objectives}")

    def costs_of(self, config: Config) -> dict[str, float]:
        return {cost.name: cost(self.profile, config) for cost in self.costs}

    def unit(self, column: str) -> str | None:
        units = dict(self.units) | {c.name: c.unit for c in self.costs}
        return units.get(column)

    def axis_label(self, column: str) -> str:
        """"memory of one training step (KiB)" for a cost, "error (% test)" for a metric with a unit."""
        names = {c.name: c.label for c in self.costs}
        unit = self.unit(column)
        return names.get(column, column.replace("_", " ")) + (f" ({unit})" if unit else "")

    def call(self, config: Config, seed: int) -> object:
        kwargs = dict(self.params)
        if "seed" in inspect.signature(self.fn).parameters:
            kwargs["seed"] = seed
        return self.fn(config, **kwargs)


def result_key(job: Job, config: Config, base_seed: int) -> str:
    """The store's primary key: a stable hash of (job name, job params, config, sweep seed)."""
    return _digest([job.name, dict(job.params), *_identity(config), base_seed])[:32]
