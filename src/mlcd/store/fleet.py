"""Repository of the serving fleet: replica heartbeats, shared canary counters, switch-offs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, select

from mlcd.store import events
from mlcd.store.sql import now, upsert
from mlcd.store.tables import serve_canary_off, serve_canary_stats, serve_replicas


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` keys (orjson refuses str subclasses)."""
    return {str(key): value for key, value in row._mapping.items()}


def heartbeat(conn: Connection, row: Mapping[str, Any]) -> None:
    """Insert or refresh one replica's row (``model``, ``replica`` are the key)."""
    values = {**row, "seen_at": now()}
    update = [k for k in values if k not in ("model", "replica", "started_at")]
    upsert(conn, serve_replicas, [values], ["model", "replica"], update)


def replicas(conn: Connection, model: str | None = None) -> list[dict[str, Any]]:
    """Every replica that ever reported (newest first); ``seen_at`` tells which are alive."""
    query = select(serve_replicas).order_by(serve_replicas.c.seen_at.desc())
    if model is not None:
        query = query.where(serve_replicas.c.model == model)
    return [_plain(r) for r in conn.execute(query)]


def forget_replica(conn: Connection, model: str, replica: str) -> None:
    """Drop a replica that stopped cleanly (its canary counters too)."""
    conn.execute(
        delete(serve_replicas).where(
            serve_replicas.c.model == model, serve_replicas.c.replica == replica
        )
    )
    conn.execute(
        delete(serve_canary_stats).where(
            serve_canary_stats.c.model == model, serve_canary_stats.c.replica == replica
        )
    )


def publish_arm(
    conn: Connection,
    *,
    model: str,
    version: int,
    replica: str,
    arm: str,
    requests: int,
    errors: int,
    histogram: Mapping[str, int],
) -> None:
    """This replica's outcomes of one canary arm over the guard's window."""
    row = {
        "model": model,
        "version": version,
        "replica": replica,
        "arm": arm,
        "requests": requests,
        "errors": errors,
        "histogram": dict(histogram),
        "updated_at": now(),
    }
    upsert(
        conn,
        serve_canary_stats,
        [row],
        ["model", "version", "replica", "arm"],
        ["requests", "errors", "histogram", "updated_at"],
    )


def arm_stats(conn: Connection, model: str, version: int, since: float) -> list[dict[str, Any]]:
    """Every replica's counters for the canary ``version`` updated since ``since``."""
    c = serve_canary_stats.c
    query = select(serve_canary_stats).where(
        c.model == model, c.version == version, c.updated_at >= since
    )
    return [_plain(r) for r in conn.execute(query)]


def canary_off(conn: Connection, model: str, alias: str, version: int) -> dict[str, Any] | None:
    """The fleet's switch-off of this canary version, if any."""
    c = serve_canary_off.c
    row = conn.execute(
        select(serve_canary_off).where(c.model == model, c.alias == alias, c.version == version)
    ).first()
    return None if row is None else _plain(row)


def switch_off_canary(
    conn: Connection,
    *,
    model: str,
    alias: str,
    version: int,
    reason: str,
    details: Mapping[str, Any],
    decided_by: str,
) -> bool:
    """Switch the canary version off for the fleet; True for the one replica that did it.

    The row and the ``serve.canary_disabled`` event are written in the caller's transaction;
    a second replica deciding at the same moment finds the key taken and records nothing.
    """
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(serve_canary_off)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(serve_canary_off)
    values = {
        "model": model,
        "alias": alias,
        "version": version,
        "reason": reason,
        "details": dict(details),
        "decided_by": decided_by,
        "at": now(),
    }
    stmt = stmt.values(**values).on_conflict_do_nothing().returning(serve_canary_off.c.version)
    if conn.execute(stmt).first() is None:  # another replica decided first
        return False
    events.record(
        conn,
        "serve.canary_disabled",
        model=model,
        version=version,
        alias=alias,
        reason=reason,
        details={**details, "decided_by": decided_by, "fleet": True},
    )
    return True
