"""Repository of the audit trail: every alias move, gate verdict, trigger and alert."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from mlcd.store.sql import now
from mlcd.store.tables import events

_CI_IDENTITIES = (
    (
        "GITHUB_ACTIONS",
        lambda e: f"github:{e.get('GITHUB_ACTOR', '?')}@{e.get('GITHUB_WORKFLOW', 'ci')}",
    ),
    (
        "GITLAB_CI",
        lambda e: f"gitlab:{e.get('GITLAB_USER_LOGIN', '?')}@{e.get('CI_PIPELINE_ID', 'ci')}",
    ),
    ("CI", lambda e: "ci"),
)


def actor(environ: Mapping[str, str] | None = None) -> str:
    """Who is acting: ``MLCD_ACTOR``, else the CI identity, else the local user."""
    env = os.environ if environ is None else environ
    if env.get("MLCD_ACTOR"):
        return env["MLCD_ACTOR"]
    for variable, describe in _CI_IDENTITIES:
        if env.get(variable):
            return describe(env)
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def record(conn: Connection, kind: str, **values: Any) -> int:
    """Append an event; returns its id. ``actor`` defaults to :func:`actor`."""
    from mlcd.secrets import known_secrets, mask_obj, mask_text

    values.setdefault("actor", actor())
    # The audit trail is read by many (UI, events, reports): no password lands in it.
    known = known_secrets()
    if isinstance(values.get("reason"), str):
        values["reason"] = mask_text(values["reason"], known)
    if values.get("details") is not None:
        values["details"] = mask_obj(values["details"], known)
    result = conn.execute(events.insert().values(kind=kind, at=values.pop("at", now()), **values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def query(
    conn: Connection,
    model: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
    since: float | None = None,
) -> list[dict[str, Any]]:
    """Events newest first, optionally for one model or kind."""
    stmt = select(events).order_by(events.c.at.desc(), events.c.id.desc())
    if model is not None:
        stmt = stmt.where(events.c.model == model)
    if kind is not None:
        stmt = stmt.where(events.c.kind.like(kind.replace("*", "%")))
    if since is not None:
        stmt = stmt.where(events.c.at >= since)
    if limit:
        stmt = stmt.limit(limit)
    return [dict(r) for r in conn.execute(stmt).mappings()]
