"""Small durable key/value state for daemons (last tick, processed segments, ...)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from mlcd.store.sql import now, upsert
from mlcd.store.tables import state


def get(conn: Connection, key: str, default: Any = None) -> Any:
    value = conn.execute(select(state.c.value).where(state.c.key == key)).scalar()
    return default if value is None else value


def put(conn: Connection, key: str, value: Any) -> None:
    upsert(
        conn,
        state,
        [{"key": key, "value": value, "updated_at": now()}],
        ["key"],
        ["value", "updated_at"],
    )
