"""``RunRecord`` and the newest runs through the SQLite fast path, without SQLAlchemy.

``mlcd runs list`` with no filter and no ordering (the common call) reads the newest runs
through ``mlcd.store.lite``; ``newest_runs`` returns None when the store is not one the fast
path opens (PostgreSQL, read-only, not migrated), and the caller takes ``query.search``.
Both give the same records: ``tests/tracking/test_fast_path.py`` compares them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlcd.errors import UsageError
from mlcd.store.records import RUN_COLUMNS

#: Columns of a run row, in display order.
ATTRIBUTE_COLUMNS = RUN_COLUMNS


@dataclass(frozen=True)
class RunRecord:
    """A run with its params, latest metric values and tags."""

    id: str
    name: str | None
    kind: str
    status: str
    parent_id: str | None
    started_at: float
    ended_at: float | None
    git_commit: str | None
    git_dirty: bool | None
    user: str | None
    params: dict[str, str | None] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str | None] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``duration`` included)."""
        return {**asdict(self), "duration": self.duration}


def store_of(start: str | os.PathLike[str] = ".") -> tuple[Path, str]:
    """The project root and store URL ``Project.open(start, local_store=True)`` would use,
    read from the validated-config record when ``mlcd.yaml`` is unchanged (no pydantic).

    Raises:
        ConfigError: no project (and no local store), or an invalid ``mlcd.yaml``.
    """
    from mlcd.errors import ConfigError
    from mlcd.layout import DEFAULT_STORE, STATE_DIR, find_root, validated_settings

    try:
        root = find_root(start)
    except ConfigError:
        here = Path(start).absolute()
        if (here / STATE_DIR / "mlcd.db").is_file():
            return here, DEFAULT_STORE
        raise
    known = None if os.environ.get("MLCD_REMOTE") else validated_settings(root)
    if known is not None:
        return root, os.environ.get("MLCD_STORE") or known["store"]
    from mlcd.config import load_config

    return root, load_config(root).store


def newest_runs(limit: int, start: str | os.PathLike[str] = ".") -> list[RunRecord] | None:
    """The newest ``limit`` runs with their data, as ``search(conn, None, None, limit)`` gives
    them, when the store is a writable SQLite file at the schema's head; else None.

    Raises:
        ConfigError: no project, or an invalid ``mlcd.yaml``.
        UsageError: a limit below 1.
        StoreError: the database failed.
    """
    from mlcd.store import lite

    if limit < 1:
        raise UsageError(f"limit must be at least 1, not {limit}")
    root, url = store_of(start)
    store = lite.open_fast(url, root)
    if store is None:
        return None
    try:
        with store.read() as conn:
            rows = lite.newest_runs(conn, limit)
            data = lite.run_data(conn, [row[0] for row in rows]) if rows else []
    finally:
        store.dispose()
    found: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
        row[0]: ({}, {}, {}) for row in rows
    }
    for which, run_id, key, text, number in data:
        found[run_id][which][key] = number if which == 1 else text
    return [
        RunRecord(
            *row,  # type: ignore[misc]  # the ten RUN_COLUMNS
            params=dict(sorted(found[row[0]][0].items())),
            metrics=dict(sorted(found[row[0]][1].items())),
            tags=dict(sorted(found[row[0]][2].items())),
        )
        for row in rows
    ]
