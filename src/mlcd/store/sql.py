"""Small SQL helpers shared by the repositories (dialect-aware upsert, time, ids)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table


def now() -> float:
    """UTC seconds since the epoch: every timestamp in the store."""
    return time.time()


def new_id() -> str:
    """A new 32-hex-character id."""
    return uuid.uuid4().hex


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
    where: Any = None,
) -> None:
    """Insert ``rows``; on a key conflict update ``update`` columns (or do nothing).

    ``where`` receives the statement's ``excluded`` namespace and returns a condition, so
    the update happens only when it holds (e.g. keep the latest step of a metric).
    """
    if not rows:
        return
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    if update:
        condition = where(stmt.excluded) if where is not None else None
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={column: stmt.excluded[column] for column in update},
            where=condition,
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    conn.execute(stmt, list(rows))
