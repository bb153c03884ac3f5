"""Repository of the run cache: stage fingerprint -> the digests it produced."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from mlcd.store.sql import now, upsert
from mlcd.store.tables import run_cache


def get_entry(conn: Connection, fingerprint: str) -> dict[str, Any] | None:
    """The cache entry for a fingerprint: ``{stage, outputs, metrics, run_id}`` or None."""
    row = (
        conn.execute(select(run_cache).where(run_cache.c.fingerprint == fingerprint))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def put_entry(
    conn: Connection,
    fingerprint: str,
    stage: str,
    outputs: Mapping[str, str],
    metrics: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> None:
    """Record what a stage produced; the first entry for a fingerprint wins."""
    upsert(
        conn,
        run_cache,
        [
            {
                "fingerprint": fingerprint,
                "stage": stage,
                "outputs": dict(outputs),
                "metrics": dict(metrics or {}),
                "run_id": run_id,
                "created_at": now(),
            }
        ],
        ["fingerprint"],
    )


def all_entries(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(run_cache)).mappings()]


def import_entries(conn: Connection, entries: Iterable[Mapping[str, Any]]) -> int:
    """Merge entries from a remote's cache; returns how many were offered."""
    rows = [dict(e) for e in entries]
    upsert(conn, run_cache, rows, ["fingerprint"])
    return len(rows)
