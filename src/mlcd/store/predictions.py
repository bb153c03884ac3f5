"""Repository of production data: prediction-log segments and ground-truth feedback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, func, null, select

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
    kind: str = "segment",
    replaces: list[str] | None = None,
) -> int:
    """Register a written Parquet segment (a path under the project or a URL); returns its id.

    ``kind`` is ``segment`` (a server wrote it) or ``daily`` (compaction merged a day's
    segments; ``replaces`` then lists the files of the segments it retired, until they are
    deleted).
    """
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
            kind=kind,
            replaces=null() if replaces is None else replaces,  # SQL NULL, not JSON null
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


class SegmentsChanged(Exception):
    """The segments a compaction read were retired or replaced meanwhile."""


def swap_segments(conn: Connection, retire: list[int], **daily: Any) -> int:
    """Register a compacted file and retire the segments it holds, in the caller's one
    transaction: readers see either the old segments or the new file, never both, never
    neither. Returns the new id.

    Raises:
        SegmentsChanged: some of ``retire`` are gone (another compaction or ``mlcd gc`` won).
    """
    from sqlalchemy import delete

    t = prediction_segments
    if not retire:
        raise ValueError("nothing to retire")
    # The delete's row count is the check: under concurrency (PostgreSQL's read committed
    # too) a second compaction of the same segments deletes nothing and rolls back.
    wanted = sorted(set(retire))
    deleted = 0
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        deleted += conn.execute(delete(t).where(t.c.id.in_(part))).rowcount
    if deleted != len(wanted):
        raise SegmentsChanged(f"{len(wanted) - deleted} segment(s) retired meanwhile")
    return add_segment(conn, kind="daily", **daily)


def is_registered(conn: Connection, path: str) -> bool:
    """Whether a segment row points at ``path``."""
    t = prediction_segments
    return conn.execute(select(t.c.id).where(t.c.path == path).limit(1)).first() is not None


def pending_deletions(conn: Connection) -> list[dict[str, Any]]:
    """Daily rows whose replaced files may still exist: ``{id, replaces}``."""
    t = prediction_segments
    stmt = select(t.c.id, t.c.replaces).where(t.c.replaces.is_not(None)).order_by(t.c.id)
    return [{"id": int(r[0]), "replaces": list(r[1] or [])} for r in conn.execute(stmt)]


def deletions_done(conn: Connection, segment_id: int) -> None:
    """The replaced files of a daily row are gone: forget them."""
    from sqlalchemy import update

    t = prediction_segments
    conn.execute(update(t).where(t.c.id == segment_id).values(replaces=null()))


def expired_segments(
    conn: Connection, before: float, model: str | None = None
) -> list[dict[str, Any]]:
    """Segments whose newest row is older than ``before``, oldest first."""
    t = prediction_segments
    stmt = select(t).where(t.c.last_at < before).order_by(t.c.last_at, t.c.id)
    if model is not None:
        stmt = stmt.where(t.c.model == model)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def remove_segments(conn: Connection, ids: list[int]) -> int:
    """Unregister segments (their files are the caller's to delete, after the commit)."""
    from sqlalchemy import delete

    t = prediction_segments
    removed = 0
    for start in range(0, len(ids), 500):
        removed += conn.execute(delete(t).where(t.c.id.in_(ids[start : start + 500]))).rowcount
    return removed


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
