"""The embedded SQLite store's hot paths on the stdlib ``sqlite3``, without SQLAlchemy.

Importing SQLAlchemy takes longer than everything ``mlcd.start_run(); log_metric(...)`` or
``mlcd runs list`` do with the database, so the few statements those need (check the schema
revision, create a run, write params, tags, metrics and artifacts, end the run, read the
newest runs) run here, on SQL that ``mlcd.store.lite_gen`` compiled from the SQLAlchemy
tables into ``mlcd.store.lite_sql`` (a test regenerates it and compares: one source of truth).

The connection is set up like ``mlcd.store.db.Store``'s: WAL, ``synchronous = NORMAL``,
foreign keys on, a 60 s busy timeout, and ``BEGIN IMMEDIATE`` for every write transaction, so
both paths give the same durability and queue on the same lock. Only a writable database file
whose schema is already at ``HEAD`` opens here: a new, unmigrated, newer or read-only database
goes to ``Store`` (``open_fast`` returns None), which migrates it or refuses it with its own
clear errors. PostgreSQL and every other query (filters, orderings, the registry) always use
``Store``.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from mlcd.errors import StoreError
from mlcd.store.lite_sql import HEAD, RUN_COLUMNS, SQL
from mlcd.store.records import STATUSES, ArtifactRef, as_number, latest_points, now

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 60_000
#: Set (to anything but "" or "0") to always take the SQLAlchemy path (tests, debugging).
DISABLE_ENV = "MLCD_NO_FAST_STORE"


def sqlite_path(url: str, root: str | os.PathLike[str] = ".") -> Path | None:
    """The absolute database path of a ``sqlite:///`` URL (as ``normalise_url`` resolves it),
    else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return path if path.is_absolute() else Path(root).absolute() / path


def enabled() -> bool:
    """Whether the fast path may be used (``MLCD_NO_FAST_STORE`` unset)."""
    return os.environ.get(DISABLE_ENV, "") in ("", "0")


def open_fast(url: str, root: str | os.PathLike[str] = ".") -> LiteStore | None:
    """A ``LiteStore`` when ``url`` is a writable SQLite file at schema ``HEAD``, else None
    (then open ``Store``: it creates, migrates or refuses the database)."""
    path = sqlite_path(url, root)
    if path is None or not enabled() or not path.is_file():
        return None
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return None  # Store opens it read-only and words the refusal of a write
    try:
        store = LiteStore(path)
    except sqlite3.Error:
        return None  # damaged, locked for longer than the timeout...: Store says what
    try:
        if store.revision() == HEAD:
            return store
    except sqlite3.Error:
        pass
    store.dispose()
    return None


def _args(name: str, values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values[p] for p in SQL[name][1])


class LiteConn:
    """One transaction's cursor; the functions below take it where ``runs`` takes a
    SQLAlchemy ``Connection``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def run(self, name: str, values: Mapping[str, Any]) -> sqlite3.Cursor:
        return self.raw.execute(SQL[name][0], _args(name, values))

    def run_many(self, name: str, rows: Iterable[Mapping[str, Any]]) -> None:
        self.raw.executemany(SQL[name][0], [_args(name, row) for row in rows])


class LiteStore:
    """A writable SQLite metadata store at schema ``HEAD``, on one ``sqlite3`` connection
    shared by the threads of the process (a lock serialises its transactions)."""

    is_sqlite = True
    read_only = False

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self.url = f"sqlite:///{db_path}"
        self._lock = threading.RLock()
        conn = sqlite3.connect(
            str(db_path),
            timeout=_BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            isolation_level=None,  # we issue BEGIN ourselves
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:  # a concurrent creator holds the lock
                time.sleep(0.02 * (attempt + 1))
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        self._conn: sqlite3.Connection | None = conn

    def revision(self) -> str | None:
        """The applied Alembic revision (None: no schema)."""
        with self.read() as conn:
            try:
                row = conn.raw.execute(SQL["revision"][0]).fetchone()
            except sqlite3.OperationalError:
                return None
        return None if row is None else str(row[0])

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[LiteConn]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"metadata store {self._db_path}: the store was closed")
            conn = self._conn
            try:
                conn.execute(begin)
                try:
                    yield LiteConn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._wrap(exc) from exc

    def read(self) -> Any:
        """A read transaction."""
        return self._transaction("BEGIN")

    def write(self) -> Any:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success."""
        return self._transaction("BEGIN IMMEDIATE")

    def transact(self, work: Callable[[LiteConn], T], attempts: int = 8) -> T:
        """Run ``work`` in a write transaction, retrying a transient lock error."""
        for attempt in range(attempts):
            try:
                with self.write() as conn:
                    return work(conn)
            except StoreError as exc:
                cause = str(exc.__cause__ or exc).lower()
                if attempt == attempts - 1 or "database is locked" not in cause:
                    raise
                time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"metadata store {self._db_path}: {exc}",
            hint="if this persists, run 'mlcd doctor' or check the database file's permissions",
        )

    def dispose(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# ---------------------------------------------------------------- the runs repository's subset
# Same signatures, rows and semantics as the functions of ``mlcd.store.runs``.
def create_run(
    conn: LiteConn,
    *,
    name: str | None = None,
    kind: str = "manual",
    parent_id: str | None = None,
    git_commit: str | None = None,
    git_dirty: bool | None = None,
    user: str | None = None,
    run_id: str | None = None,
    started_at: float | None = None,
) -> str:
    """Insert a running run; returns its id."""
    run_id = run_id or uuid.uuid4().hex
    conn.run(
        "insert_run",
        {
            "id": run_id,
            "name": name,
            "kind": kind,
            "status": "running",
            "parent_id": parent_id,
            "started_at": started_at or now(),
            "git_commit": git_commit,
            "git_dirty": git_dirty,
            "user": user,
            "heartbeat_at": now(),
        },
    )
    return run_id


def end_run(conn: LiteConn, run_id: str, status: str = "finished") -> None:
    """Mark a run ended with ``status``."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    conn.run("end_run", {"status": status, "ended_at": now(), "run_id": run_id})


def run_exists(conn: LiteConn, run_id: str) -> bool:
    """Whether a run with exactly this id exists."""
    return conn.run("run_exists", {"run_id": run_id}).fetchone() is not None


def log_params(conn: LiteConn, run_id: str, params: Mapping[str, Any]) -> None:
    """Set params (a later value for the same key replaces the earlier one)."""
    conn.run_many(
        "upsert_param",
        (
            {
                "run_id": run_id,
                "key": str(k),
                "value": None if v is None else str(v),
                "value_num": as_number(v),
            }
            for k, v in params.items()
        ),
    )


def set_tags(conn: LiteConn, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set tags on a run."""
    conn.run_many(
        "upsert_tag",
        (
            {"run_id": run_id, "key": str(k), "value": None if v is None else str(v)}
            for k, v in tags.items()
        ),
    )


def log_metric_rows(
    conn: LiteConn, run_id: str, rows: Sequence[tuple[str, float, int, float]]
) -> None:
    """Append ``(key, value, step, timestamp)`` points; keep the latest per key."""
    if not rows:
        return
    names = SQL["insert_metric"][1]
    assert names == ("run_id", "key", "value", "step", "timestamp"), names
    conn.raw.executemany(
        SQL["insert_metric"][0], [(run_id, k, float(v), int(s), t) for k, v, s, t in rows]
    )
    conn.run_many(
        "upsert_latest_metric",
        (
            {"run_id": run_id, "key": k, "value": float(v), "step": int(s), "timestamp": t}
            for k, v, s, t in latest_points(rows).values()
        ),
    )


def add_artifacts(conn: LiteConn, run_id: str, refs: Iterable[ArtifactRef]) -> None:
    """Record files read, written or logged by a run."""
    conn.run_many(
        "insert_artifact",
        (
            {
                "run_id": run_id,
                "stage": r.stage,
                "role": r.role,
                "path": r.path,
                "digest": r.digest,
                "size": r.size,
            }
            for r in refs
        ),
    )


def newest_runs(conn: LiteConn, limit: int, offset: int = 0) -> list[tuple[Any, ...]]:
    """The newest runs' rows (``RUN_COLUMNS``), newest first, ties by id: ``search``'s order
    without a filter."""
    rows = conn.run("newest_runs", {"limit": limit, "offset": offset}).fetchall()
    dirty = RUN_COLUMNS.index("git_dirty")
    return [
        (*row[:dirty], None if row[dirty] is None else bool(row[dirty]), *row[dirty + 1 :])
        for row in rows
    ]


def run_data(conn: LiteConn, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """``(0 params | 1 metrics | 2 tags, run_id, key, text, number)`` rows of runs ``ids``."""
    found: list[tuple[Any, ...]] = []
    sql, names = SQL["run_data"]
    for start in range(0, len(ids), 5000):
        chunk = list(ids[start : start + 5000])
        marks = ", ".join("?" * len(chunk))
        found.extend(conn.raw.execute(sql.format(ids=marks), chunk * len(names)).fetchall())
    return found


# ---------------------------------------------------------------- the experiment queue's subset
# Same signatures, rows and semantics as ``mlcd.store.queue``'s (``mlcd exp run --queue``).
def enqueue(
    conn: LiteConn,
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
    """Add an entry in status ``queued``; returns its id (JSON columns as SQLAlchemy's
    ``JSON`` type writes them on SQLite: ``json.dumps``)."""
    entry_id = entry_id or uuid.uuid4().hex
    conn.run(
        "insert_queue_entry",
        {
            "id": entry_id,
            "name": name,
            "kind": kind,
            "settings": json.dumps(list(settings)),
            "base": base,
            "options": json.dumps(dict(options or {})),
            "sweep_id": sweep_id,
            "trial": trial,
            "status": "queued",
            "attempts": 0,
            "kill_requested": False,
            "created_at": now(),
        },
    )
    return entry_id


def name_queued(conn: LiteConn, name: str) -> bool:
    """Whether a queued or running entry has this name."""
    found = conn.run(
        "name_queued",
        {"name": name, "queued": "queued", "running": "running", "limit": 1, "offset": 0},
    )
    return found.fetchone() is not None


def queue_entry(conn: LiteConn, entry_id: str) -> dict[str, Any]:
    """The entry of this exact id as ``mlcd.store.queue.get`` returns it (JSON decoded,
    ``kill_requested`` a bool).

    Raises:
        NotFound: no entry has this id.
    """
    cursor = conn.run("queue_entry", {"id": entry_id})
    row = cursor.fetchone()
    if row is None:
        from mlcd.errors import NotFound

        raise NotFound(f"no queued experiment '{entry_id}'")
    entry = dict(zip([d[0] for d in cursor.description], row, strict=True))
    for key in ("settings", "options"):
        if entry[key] is not None:
            entry[key] = json.loads(entry[key])
    entry["kill_requested"] = bool(entry["kill_requested"])
    return entry


def run_tagged(conn: LiteConn, key: str, value: str) -> bool:
    """Whether some run has the tag ``key`` = ``value``."""
    found = conn.run("run_tagged", {"key": key, "value": value, "limit": 1, "offset": 0})
    return found.fetchone() is not None


def queue_repository(conn: Any) -> Any:
    """``enqueue`` and ``name_queued`` for a connection of either path: this module for a
    ``LiteConn`` (from ``open_fast(...).transact``), else ``mlcd.store.queue``."""
    if isinstance(conn, LiteConn):
        import sys

        return sys.modules[__name__]
    from mlcd.store import queue

    return queue
