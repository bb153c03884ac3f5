"""The experiment queue: entries waiting for a worker, claimed at most once at a time.

A worker claims an entry with a conditional ``UPDATE ... SET status='running' WHERE id=:id AND
status='queued'`` inside a write transaction and checks the row count: on SQLite the write
transaction is ``BEGIN IMMEDIATE`` (one writer at a time), on PostgreSQL the candidate row is
read ``FOR UPDATE SKIP LOCKED`` so two workers never wait on, nor take, the same row.

A running entry carries its worker (``host:pid``) and a heartbeat. ``recover`` finds entries
whose worker is gone (a dead pid on this host, or a heartbeat older than ``stale_s``) and puts
them back in the queue once; an entry whose worker died on its second attempt is failed.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, select, update

from mlcd.errors import NotFound
from mlcd.store.sql import now
from mlcd.store.tables import exp_queue

#: Attempts an entry gets: a worker that dies on the first is retried once, then failed.
MAX_ATTEMPTS = 2
#: Statuses of an entry that will not change any more.
ENDED = ("done", "failed", "killed", "skipped", "pruned")


def enqueue(
    conn: Connection,
    *,
    name: str,
    settings: Iterable[str],
    kind: str = "run",
    base: str | None = None,
    options: Mapping[str, Any] | None = None,
    sweep_id: str | None = None,
    trial: int | None = None,
    entry_id: str | None = None,
) -> str:
    """Add an entry in status ``queued``; returns its id."""
    entry_id = entry_id or uuid.uuid4().hex
    conn.execute(
        exp_queue.insert().values(
            id=entry_id,
            name=name,
            kind=kind,
            settings=list(settings),
            base=base,
            options=dict(options or {}),
            sweep_id=sweep_id,
            trial=trial,
            status="queued",
            attempts=0,
            kill_requested=False,
            created_at=now(),
        )
    )
    return entry_id


def claim(conn: Connection, worker: str, sweep_id: str | None = None) -> dict[str, Any] | None:
    """Take the oldest queued entry (of ``sweep_id`` if given) for ``worker``; None if none.

    Call it inside a write transaction (``Store.write``/``transact``).
    """
    query = (
        select(exp_queue.c.id)
        .where(exp_queue.c.status == "queued")
        .order_by(exp_queue.c.created_at, exp_queue.c.id)
        .limit(1)
    )
    if sweep_id is not None:
        query = query.where(exp_queue.c.sweep_id == sweep_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    entry_id = conn.execute(query).scalar()
    if entry_id is None:
        return None
    current = now()
    taken = conn.execute(
        update(exp_queue)
        .where(exp_queue.c.id == entry_id, exp_queue.c.status == "queued")
        .values(
            status="running",
            worker=worker,
            heartbeat_at=current,
            started_at=current,
            attempts=exp_queue.c.attempts + 1,
        )
    )
    if taken.rowcount != 1:  # another worker took it between the read and the update
        return None
    return get(conn, entry_id)


def heartbeat(conn: Connection, entry_id: str, worker: str) -> bool | None:
    """Refresh a running entry's heartbeat; returns whether a kill was requested, or None when
    the entry is no longer ours (requeued by ``recover``, removed)."""
    result = conn.execute(
        update(exp_queue)
        .where(
            exp_queue.c.id == entry_id,
            exp_queue.c.worker == worker,
            exp_queue.c.status == "running",
        )
        .values(heartbeat_at=now())
    )
    if result.rowcount != 1:
        return None
    return bool(
        conn.execute(select(exp_queue.c.kill_requested).where(exp_queue.c.id == entry_id)).scalar()
    )


def update_entry(conn: Connection, entry_id: str, **values: Any) -> None:
    """Set columns of an entry (the worker records the log path, the run, the trial)."""
    conn.execute(update(exp_queue).where(exp_queue.c.id == entry_id).values(**values))


def finish(
    conn: Connection,
    entry_id: str,
    worker: str,
    status: str,
    run_id: str | None = None,
    error: str | None = None,
) -> bool:
    """End our running entry with ``status``; False if it was no longer ours."""
    values: dict[str, Any] = {"status": status, "ended_at": now(), "error": error}
    if run_id is not None:
        values["run_id"] = run_id
    result = conn.execute(
        update(exp_queue)
        .where(
            exp_queue.c.id == entry_id,
            exp_queue.c.worker == worker,
            exp_queue.c.status == "running",
        )
        .values(**values)
    )
    return result.rowcount == 1


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but was not reaped by its parent yet (Linux ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


def _dead(worker: str | None) -> bool:
    from mlcd.store.locks import process_alive

    host, _sep, pid = (worker or "").partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not process_alive(int(pid)) or _zombie(int(pid))


def recover(conn: Connection, stale_s: float) -> list[dict[str, Any]]:
    """Requeue (or fail, after ``MAX_ATTEMPTS``) the running entries whose worker is gone.

    Returns the entries changed, each with its new ``status``.
    """
    cutoff = now() - stale_s
    rows = conn.execute(select(exp_queue).where(exp_queue.c.status == "running")).mappings().all()
    changed = []
    for row in rows:
        if not (_dead(row["worker"]) or (row["heartbeat_at"] or 0.0) < cutoff):
            continue
        why = f"worker {row['worker']} died (attempt {row['attempts']})"
        if row["attempts"] < MAX_ATTEMPTS and not row["kill_requested"]:
            values: dict[str, Any] = {"status": "queued", "worker": None, "error": why}
        else:
            status = "killed" if row["kill_requested"] else "failed"
            values = {"status": status, "ended_at": now(), "error": why}
        result = conn.execute(
            update(exp_queue)
            .where(
                exp_queue.c.id == row["id"],
                exp_queue.c.status == "running",
                exp_queue.c.worker == row["worker"],
            )
            .values(**values)
        )
        if result.rowcount == 1:
            changed.append({**dict(row), **values})
    return changed


def get(conn: Connection, ref: str) -> dict[str, Any]:
    """An entry by id, unique id prefix (4+ characters) or name (the newest of that name).

    Raises:
        NotFound: no such entry, or an ambiguous prefix.
    """
    row = conn.execute(select(exp_queue).where(exp_queue.c.id == ref)).mappings().first()
    if row is None:
        row = (
            conn.execute(
                select(exp_queue)
                .where(exp_queue.c.name == ref)
                .order_by(exp_queue.c.created_at.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    if row is None and len(ref) >= 4:
        rows = (
            conn.execute(select(exp_queue).where(exp_queue.c.id.startswith(ref)).limit(2))
            .mappings()
            .all()
        )
        if len(rows) > 1:
            raise NotFound(
                f"'{ref}' matches several queued experiments",
                hint="give more characters of the id (mlcd exp queue list)",
            )
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(
            f"no queued experiment '{ref}'",
            hint="see the ids and names with: mlcd exp queue list",
        )
    return dict(row)


def entries(
    conn: Connection, statuses: Iterable[str] | None = None, sweep_id: str | None = None
) -> list[dict[str, Any]]:
    """Entries, oldest first, optionally of some statuses or one sweep."""
    query = select(exp_queue).order_by(exp_queue.c.created_at, exp_queue.c.id)
    if statuses is not None:
        query = query.where(exp_queue.c.status.in_(list(statuses)))
    if sweep_id is not None:
        query = query.where(exp_queue.c.sweep_id == sweep_id)
    return [dict(r) for r in conn.execute(query).mappings()]


def name_queued(conn: Connection, name: str) -> bool:
    """Whether a queued or running entry has this name."""
    found = conn.execute(
        select(exp_queue.c.id)
        .where(exp_queue.c.name == name, exp_queue.c.status.in_(("queued", "running")))
        .limit(1)
    ).first()
    return found is not None


def request_kill(conn: Connection, entry_id: str) -> str:
    """Kill an entry: a queued one ends ``killed`` at once; a running one is flagged, and its
    worker stops it at its next heartbeat. Returns the entry's status afterwards."""
    done = conn.execute(
        update(exp_queue)
        .where(exp_queue.c.id == entry_id, exp_queue.c.status == "queued")
        .values(status="killed", ended_at=now(), kill_requested=True)
    )
    if done.rowcount == 1:
        return "killed"
    conn.execute(
        update(exp_queue)
        .where(exp_queue.c.id == entry_id, exp_queue.c.status == "running")
        .values(kill_requested=True)
    )
    return str(conn.execute(select(exp_queue.c.status).where(exp_queue.c.id == entry_id)).scalar())


def remove(conn: Connection, entry_ids: Iterable[str]) -> int:
    """Delete entries that are not running; returns how many were deleted."""
    ids = list(entry_ids)
    if not ids:
        return 0
    result = conn.execute(
        delete(exp_queue).where(exp_queue.c.id.in_(ids), exp_queue.c.status != "running")
    )
    return int(result.rowcount)


def skip_queued(conn: Connection, sweep_id: str, reason: str) -> int:
    """End the still-queued entries of a sweep as ``skipped`` (its budget ran out)."""
    result = conn.execute(
        update(exp_queue)
        .where(exp_queue.c.sweep_id == sweep_id, exp_queue.c.status == "queued")
        .values(status="skipped", ended_at=now(), error=reason)
    )
    return int(result.rowcount)


def set_parent(conn: Connection, run_id: str, parent_id: str) -> None:
    """Make ``run_id`` a child run of ``parent_id`` (a sweep's trials are its children)."""
    from mlcd.store.tables import runs

    conn.execute(update(runs).where(runs.c.id == run_id).values(parent_id=parent_id))
