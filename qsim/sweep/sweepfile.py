"""Sweep files: one TOML file that names the job, its parameters, the seed, the objectives and the space.

Exports `SweepSpec` and `load_sweep` (from a path or an already parsed dict). Layout:

    [sweep]
    job = "digits"                       # a built-in job or "package.module:function"
    seed = 0                             # the sweep seed; each configuration's seed derives from it
    objectives = ["error", "memory_kib"] # all minimised; default: the job's own
    [job]                                # keyword parameters of the job (e.g. epochs = 3)
    [space]                              # see qsim.sweep.space

Everything is validated here, before any work starts: unknown keys, the job, its parameters, every
format name, the constraints, an empty space, and objective names that are neither a cost nor one
of the job's metrics.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .job import Job
from .jobs import make_job
from .space import Space, check_keys, space_from_dict


@dataclass(frozen=True)
class SweepSpec:
    job: Job
    space: Space
    seed: int
    objectives: tuple[str, ...]


def load_sweep(source, job_override: str | None = None) -> SweepSpec:
    """Parse and validate a sweep file (path) or table (dict); `job_override` replaces [sweep].job."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"space file: {str(path)!r} does not exist")
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"space file: {str(path)!r} is not valid TOML: {err}") from None
    elif isinstance(source, dict):
        table = source
    else:
        raise TypeError(f"source: expected a path or a dict, got {type(source).__name__}")
    check_keys(table, {"sweep", "job", "space"}, "sweep file")
    sweep = table.get("sweep", {})
    check_keys(sweep, {"job", "seed", "objectives"}, "[sweep]")
    if "space" not in table:
        raise ValueError("sweep file: missing the [space] table")
    seed = sweep.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"[sweep].seed: expected a non-negative int, got {seed!r}")
    job = make_job(job_override or sweep.get("job", "digits"), table.get("job", {}))
    objectives = tuple(sweep.get("objectives", job.objectives))
    job.check_objectives(objectives, "[sweep].objectives")
    space = space_from_dict(table["space"])
    job.check(space.configs())
    return SweepSpec(job, space, seed, objectives)
