"""The result store: one SQLite file, one row per (job, params, configuration, seed).

Exports `Record` (one finished evaluation) and `ResultStore`. Every record is committed the moment
it arrives, in WAL mode with synchronous=FULL, so a sweep killed at any instant keeps every result
it had received; the primary key makes a rerun skip what is stored and makes a duplicate impossible.
Only the main process writes. `to_dataframe` flattens config, metrics and costs into columns.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .space import Config

STATUSES = ("ok", "diverged", "error")
EXPORT_SUFFIXES = (".csv", ".parquet")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    params TEXT NOT NULL,
    config TEXT NOT NULL,
    groups TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'diverged', 'error')),
    message TEXT NOT NULL,
    metrics TEXT NOT NULL,
    costs TEXT NOT NULL,
    wall_s REAL NOT NULL,
    versions TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    axes TEXT NOT NULL DEFAULT '{}'
)
"""


@dataclass(frozen=True)
class Record:
    """One finished evaluation; metrics may hold NaN/inf (status 'diverged'); message explains errors."""

    key: str
    job: str
    params: dict
    config: Config
    seed: int
    status: str
    message: str
    metrics: dict
    costs: dict
    wall_s: float
    versions: dict
    finished_at: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {self.status!r}")


def _dumps(value) -> str:
    # allow_nan: a diverged metric is stored as NaN/Infinity, which json.loads reads back.
    return json.dumps(value, sort_keys=True, allow_nan=True)


class ResultStore:
    """A sweep's results in one SQLite file (created when missing)."""

    def __init__(self, path: str | Path = "results.db"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        if "axes" not in {row[1] for row in self._db.execute("PRAGMA table_info(results)")}:
            self._db.execute("ALTER TABLE results ADD COLUMN axes TEXT NOT NULL DEFAULT '{}'")  # an older store

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def statuses(self) -> dict[str, str]:
        """{key: status} of every stored result."""
        return dict(self._db.execute("SELECT key, status FROM results"))

    def add(self, record: Record, replace: bool = False) -> None:
        """Commit one record now; a stored key is kept unless `replace` (used to retry errors)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self._db.execute(
            f"{verb} INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.key, record.job, _dumps(record.params), _dumps(record.config.as_dict()),
             _dumps(record.config.groups), record.seed, record.status, record.message, _dumps(record.metrics),
             _dumps(record.costs), record.wall_s, _dumps(record.versions), record.finished_at,
             _dumps(dict(record.config.axes))))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def records(self, job: str | None = None) -> list[Record]:
        query = "SELECT * FROM results" + (" WHERE job = ?" if job else "") + " ORDER BY finished_at, key"
        rows = self._db.execute(query, (job,) if job else ())
        return [Record(key, name, json.loads(params),
                       Config.from_dict(json.loads(config), json.loads(groups), json.loads(axes)),
                       seed, status, message, json.loads(metrics), json.loads(costs), wall_s, json.loads(versions),
                       finished_at)
                for key, name, params, config, groups, seed, status, message, metrics, costs, wall_s, versions,
                finished_at, axes in rows]

    def to_dataframe(self, job: str | None = None) -> pd.DataFrame:
        """One row per result: key, job, status, message, seed, wall_s, finished_at, label, params and
        versions (JSON), then a "cfg.<key>" column per config key (format spec; empty: fp32), an
        "axis.<name>" column per non-format axis, and one column per metric and per cost (a metric may
        be called "error" though "error" is also a role)."""
        rows = []
        for r in self.records(job):
            row = {"key": r.key, "job": r.job, "status": r.status, "message": r.message, "seed": r.seed,
                   "wall_s": r.wall_s, "finished_at": r.finished_at, "label": r.config.label(),
                   "params": _dumps(r.params), "versions": _dumps(r.versions)}
            for part in ({f"cfg.{k}": v for k, v in r.config.as_dict().items()},
                         {f"axis.{k}": v for k, v in r.config.axes}, r.metrics, r.costs):
                clash = set(part) & set(row)
                if clash:
                    raise ValueError(f"store: column names {sorted(clash)} appear twice in result {r.key} "
                                     "(a metric and a cost, or one of the fixed columns, share a name)")
                row.update(part)
            rows.append(row)
        return pd.DataFrame(rows)

    def export(self, path: str | Path, job: str | None = None) -> Path:
        """Write the DataFrame to .csv or .parquet (chosen by the suffix)."""
        path = Path(path)
        frame = self.to_dataframe(job)
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"path: expected a {' or '.join(EXPORT_SUFFIXES)} file name, got {str(path)!r}")
        return path
