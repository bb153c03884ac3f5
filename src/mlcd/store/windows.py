"""Repository of data windows: what each version was evaluated on, what each retrain took as new.

A window is recorded once per model, role and content digest: recording the same data again
returns the existing row, so a re-run or a re-registration never adds a duplicate.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from mlcd.store.sql import now
from mlcd.store.tables import data_windows

ROLES = ("eval", "train")


def add_window(
    conn: Connection,
    *,
    model: str,
    role: str,
    name: str,
    digest: str,
    rows: int,
    first_at: float | None = None,
    last_at: float | None = None,
    version: int | None = None,
    source: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Record a window; returns ``(row, created)`` (an equal digest returns the existing row)."""
    if role not in ROLES:
        raise ValueError(f"window role must be one of {ROLES}, got {role!r}")
    existing = find_window(conn, model, role, digest)
    if existing is not None:
        return existing, False
    conn.execute(
        data_windows.insert().values(
            model=model,
            role=role,
            name=name,
            digest=digest,
            rows=rows,
            first_at=first_at,
            last_at=last_at,
            version=version,
            source=source,
            created_at=now(),
        )
    )
    row = find_window(conn, model, role, digest)
    assert row is not None
    return row, True


def find_window(conn: Connection, model: str, role: str, digest: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(data_windows).where(
            data_windows.c.model == model,
            data_windows.c.role == role,
            data_windows.c.digest == digest,
        )
    ).first()
    return None if row is None else dict(row._mapping)


def list_windows(
    conn: Connection, model: str | None = None, role: str | None = None
) -> list[dict[str, Any]]:
    """Windows in the order they were recorded (oldest first)."""
    stmt = select(data_windows).order_by(data_windows.c.id)
    if model is not None:
        stmt = stmt.where(data_windows.c.model == model)
    if role is not None:
        stmt = stmt.where(data_windows.c.role == role)
    return [dict(r._mapping) for r in conn.execute(stmt)]
