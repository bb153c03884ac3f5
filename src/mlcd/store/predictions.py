"""Repository of production data: prediction-log segments and ground-truth feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, func, select

from mlcd.store.sql import now, upsert
from mlcd.store.tables import feedback, prediction_segments


def add_segment(
    conn: Connection,
    *,
    model: str,
    version: int | None,
    path: str,
    rows: int,
    first_at: float,
    last_at: float,
    digest: str | None = None,
) -> int:
    """Register a written Parquet segment; returns its id."""
    result = conn.execute(
        prediction_segments.insert().values(
            model=model,
            version=version,
            path=path,
            digest=digest,
            rows=rows,
            first_at=first_at,
            last_at=last_at,
            created_at=now(),
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def segments(
    conn: Connection,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    """Segments oldest first, optionally of one model, overlapping ``[since, until]``, or newer
    than a segment id (for incremental readers)."""
    stmt = select(prediction_segments).order_by(
        prediction_segments.c.first_at, prediction_segments.c.id
    )
    if model is not None:
        stmt = stmt.where(prediction_segments.c.model == model)
    if since is not None:
        stmt = stmt.where(prediction_segments.c.last_at >= since)
    if until is not None:
        stmt = stmt.where(prediction_segments.c.first_at <= until)
    if after_id is not None:
        stmt = stmt.where(prediction_segments.c.id > after_id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def logged_rows(conn: Connection, model: str | None = None) -> int:
    """Total rows in the registered segments (of one model)."""
    stmt = select(func.coalesce(func.sum(prediction_segments.c.rows), 0))
    if model is not None:
        stmt = stmt.where(prediction_segments.c.model == model)
    return int(conn.execute(stmt).scalar_one())


def add_feedback(conn: Connection, items: Iterable[Mapping[str, Any]], model: str | None) -> int:
    """Store ground-truth labels (``request_id``, ``label``); a repeated id replaces its label.

    Returns:
        How many labels were stored.
    """
    at = now()
    rows = [
        {"request_id": str(i["request_id"]), "model": model, "label": i["label"], "received_at": at}
        for i in items
    ]
    upsert(conn, feedback, rows, ["request_id"], ["label", "received_at", "model"])
    return len(rows)


def feedback_for(conn: Connection, request_ids: Iterable[str]) -> dict[str, Any]:
    """``{request_id: label}`` for the ids that have feedback."""
    ids = list(request_ids)
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        stmt = select(feedback.c.request_id, feedback.c.label).where(
            feedback.c.request_id.in_(chunk)
        )
        out.update({rid: label for rid, label in conn.execute(stmt)})
    return out


def feedback_since(
    conn: Connection, since: float | None = None, model: str | None = None
) -> list[dict[str, Any]]:
    """Feedback rows received at or after ``since``, oldest first."""
    stmt = select(feedback).order_by(feedback.c.received_at)
    if since is not None:
        stmt = stmt.where(feedback.c.received_at >= since)
    if model is not None:
        stmt = stmt.where(feedback.c.model == model)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def count_feedback(conn: Connection, model: str) -> int:
    """How many labels (feedback rows) were received for ``model``."""
    from sqlalchemy import func, select

    from mlcd.store.tables import feedback

    return int(
        conn.execute(
            select(func.count()).select_from(feedback).where(feedback.c.model == model)
        ).scalar_one()
    )


def feedback_state(conn: Connection, model: str) -> tuple[int, float | None]:
    """``(labels, newest received_at)`` for ``model`` (and labels sent without a model): any new
    or replaced label changes it, which makes it a cheap change check for log datasets."""
    from sqlalchemy import func, or_, select

    from mlcd.store.tables import feedback

    row = conn.execute(
        select(func.count(), func.max(feedback.c.received_at)).where(
            or_(feedback.c.model == model, feedback.c.model.is_(None))
        )
    ).one()
    return int(row[0]), None if row[1] is None else float(row[1])
