"""Plain records of the runs repository, importable without SQLAlchemy (the fast path and the
tracking API build them before any database library is loaded)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("running", "finished", "failed", "killed")

#: Columns of a run row, in display order (``RunRecord``'s first fields).
RUN_COLUMNS = (
    "id",
    "name",
    "kind",
    "status",
    "parent_id",
    "started_at",
    "ended_at",
    "git_commit",
    "git_dirty",
    "user",
)


def now() -> float:
    """UTC seconds since the epoch: every timestamp in the store."""
    return time.time()


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of a metric."""

    key: str
    value: float
    step: int = 0
    timestamp: float = field(default_factory=now)


@dataclass(frozen=True)
class ArtifactRef:
    """A file a run read (input), wrote (output, metrics) or logged (artifact)."""

    role: str
    path: str
    digest: str
    size: int | None = None
    stage: str | None = None


def as_number(value: Any) -> float | None:
    """A param's value as a finite number when it is one (``value_num``), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value))
    except (ValueError, OverflowError):  # not a number, or an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def latest_points(
    rows: list[tuple[str, float, int, float]] | Any,
) -> dict[str, tuple[str, float, int, float]]:
    """The latest point (highest step, then newest) of each key in ``rows``."""
    latest: dict[str, tuple[str, float, int, float]] = {}
    for row in rows:
        seen = latest.get(row[0])
        if seen is None or (row[2], row[3]) >= (seen[2], seen[3]):
            latest[row[0]] = row
    return latest
