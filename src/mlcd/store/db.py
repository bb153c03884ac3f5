"""Opening the metadata store: engines, SQLite tuning, and safe automatic migrations.

SQLite runs in WAL mode with a long busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the database lock instead of failing with
"database is locked" when a read transaction tries to upgrade. Migrations run under a lock
(a file lock beside the SQLite file, an advisory lock on PostgreSQL) so that two processes
opening a new store at once never both migrate.

A SQLite file in a folder mlcd cannot write (a read-only checkout, a read-only mount, a
CI cache restored without write permission) is opened read-only: reads work (``runs list``,
``status``, ``models list``), and a write transaction is refused with a ``StoreError`` that
says what could not be recorded, instead of SQLite's "attempt to write a readonly database"
halfway through a command. WAL mode needs the ``-shm`` file beside the database; when it is
absent and cannot be created the file is opened ``immutable`` (nobody can change it there).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from mlcd.errors import ConfigError, StoreError
from mlcd.secrets import mask_text, remember, secrets_in_url

T = TypeVar("T")

#: The Alembic revision the code expects; bump it with every new migration.
HEAD = "0008"
_BUSY_TIMEOUT_MS = 60_000
_ADVISORY_KEY = 0x6D6C6364  # "mlcd"


def normalise_url(url: str, root: str | os.PathLike[str] = ".") -> str:
    """Resolve a relative SQLite path against ``root`` and pick the psycopg 3 driver.

    Raises:
        ConfigError: the scheme is not SQLite or PostgreSQL.
    """
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path(root).absolute() / path
        return f"sqlite:///{path}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+"):
        return url
    raise ConfigError(
        f"unsupported store URL {url!r}",
        hint="use 'sqlite:///.mlcd/mlcd.db' (the default) or 'postgresql://user@host:5432/db'",
    )


def _read_only(db_path: Path) -> bool:
    """Whether an existing SQLite file, or the folder it lives in, cannot be written."""
    if not db_path.is_file():
        return False
    return not (os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK))


def _connect_read_only(db_path: Path) -> Any:
    """A read-only connection; ``immutable`` when WAL's ``-shm`` file cannot be made."""
    import sqlite3
    from urllib.parse import quote

    uri = f"file:{quote(str(db_path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)


def _sqlite_tuning(engine: Engine, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if read_only:
            cursor.close()
            return
        for attempt in range(50):
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
                break
            except Exception:  # a concurrent creator holds the lock: wait and retry
                time.sleep(0.02 * (attempt + 1))
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("mlcd_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _is_transient(exc: BaseException) -> bool:
    message = str(exc).lower()
    return any(
        marker in message
        for marker in (
            "database is locked",
            "database table is locked",
            "could not serialize",
            "deadlock detected",
            "unique constraint failed: models.name",
        )
    )


class Store:
    """The metadata store: an engine plus read and write transactions.

    Args:
        url: ``sqlite:///path`` (relative to ``root``) or ``postgresql://...``.
        root: the project root relative SQLite paths are resolved against.
        migrate: apply pending migrations on open (safe under concurrency).
    """

    def __init__(self, url: str, root: str | os.PathLike[str] = ".", migrate: bool = True) -> None:
        self.url = normalise_url(url, root)
        remember(*secrets_in_url(self.url))  # never printed, whatever a driver quotes
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        self.read_only = False
        if self.is_sqlite:
            db_path = Path(self.url.removeprefix("sqlite:///"))
            self._db_path: Path | None = db_path
            self.read_only = _read_only(db_path)
            if self.read_only:
                kwargs["creator"] = lambda: _connect_read_only(db_path)
            else:
                try:
                    db_path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the metadata store folder {db_path.parent}: "
                        f"{exc.strerror or exc}",
                        hint="run mlcd in a writable checkout, or point 'store:' (or "
                        "MLCD_STORE) at a database you can write",
                    ) from exc
                kwargs["connect_args"] = {
                    "timeout": _BUSY_TIMEOUT_MS / 1000,
                    "check_same_thread": False,
                }
        else:
            self._db_path = None
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(self.url, **kwargs)
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs a driver ({exc.name})",
                hint="pip install 'mlcd[postgres]'",
            ) from exc
        except (ValueError, ArgumentError) as exc:  # a port that is not a number, ...
            raise ConfigError(
                f"the store URL {mask_text(self.url)} is not valid: "
                f"{mask_text(str(exc), secrets_in_url(self.url))}",
                hint="write it as 'postgresql://user:password@host:5432/db' (percent-encode "
                "special characters of the password) or 'sqlite:///.mlcd/mlcd.db'",
            ) from None
        if self.is_sqlite:
            _sqlite_tuning(self.engine, read_only=self.read_only)
        if migrate:
            self.migrate()

    # ------------------------------------------------------------ transactions
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            raise self._wrap(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success.

        Raises:
            StoreError: the store was opened read-only, or the database failed.
        """
        if self.read_only:
            raise self.read_only_error()
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(mlcd_write=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise self._wrap(exc) from exc

    def transact(self, work: Callable[[Connection], T], attempts: int = 8) -> T:
        """Run ``work`` in a write transaction, retrying transient lock and serialisation errors."""
        for attempt in range(attempts):
            try:
                with self.write() as conn:
                    return work(conn)
            except StoreError as exc:
                if attempt == attempts - 1 or not _is_transient(exc.__cause__ or exc):
                    raise
                time.sleep(min(2.0, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def read_only_error(self) -> StoreError:
        """The error for a write to a store that was opened read-only."""
        return StoreError(
            f"the metadata store {self._db_path} is read-only (the file or its folder "
            "cannot be written): nothing (a run, a metric, a model version) can be recorded",
            hint="run it in a writable checkout, or point 'store:' (or MLCD_STORE) at a "
            "database you can write; read-only commands (runs list, status, models list) work",
        )

    def _wrap(self, exc: DBAPIError) -> StoreError:
        where = self._db_path or self.engine.url.render_as_string(hide_password=True)
        if isinstance(exc, OperationalError) and not self.is_sqlite:
            hint = "check that PostgreSQL is running and the URL in 'store:' is right"
        else:
            hint = "if this persists, run 'mlcd doctor' or check the database file's permissions"
        # the driver's own message may quote the connection string: no password in it
        detail = mask_text(str(exc.orig), secrets_in_url(self.url))
        return StoreError(f"metadata store {where}: {detail}", hint=hint)

    # ------------------------------------------------------------ migrations
    def current_revision(self) -> str | None:
        """The applied Alembic revision, or None for a new database."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None

    def migrate(self) -> None:
        """Bring the schema to ``HEAD``; a no-op (one query) when it already is."""
        if self.current_revision() == HEAD:
            return
        if self.read_only:
            raise StoreError(
                f"the metadata store {self._db_path} is read-only and its schema is not the "
                f"one this mlcd needs ({self.current_revision()} instead of {HEAD})",
                hint="open the project once where it can be written, so the schema is "
                "migrated, or use the mlcd version that wrote it",
            )
        try:
            self._migrate_locked()
        except DBAPIError as exc:
            raise self._wrap(exc) from exc

    def _migrate_locked(self) -> None:
        if self.is_sqlite:
            from filelock import FileLock

            assert self._db_path is not None
            with FileLock(str(self._db_path) + ".migrate.lock", timeout=120):
                self._upgrade_locked()
        else:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
                try:
                    conn.commit()
                    self._upgrade_locked()
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                    conn.commit()

    def _upgrade_locked(self) -> None:
        if self.current_revision() == HEAD:  # another process migrated while we waited
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def check_database(url: str, root: str | os.PathLike[str] = ".") -> tuple[list[str], str | None]:
    """Problems of the database itself, without changing it, and its schema revision.

    SQLite: the file is opened read-only and ``PRAGMA integrity_check`` runs over every page.
    PostgreSQL: a connection is made and the revision read. Nothing is migrated.

    Returns:
        ``(problems, revision)``: each problem a sentence; the revision is None when the
        database has no schema yet (or cannot be read).

    Raises:
        ConfigError: the URL is not a supported store URL.
    """
    full = normalise_url(url, root)
    if full.startswith("sqlite:///"):
        return _check_sqlite(Path(full.removeprefix("sqlite:///")))
    store = Store(url, root=root, migrate=False)
    try:
        with store.read() as conn:
            conn.execute(text("SELECT 1"))
        return [], store.current_revision()
    except StoreError as exc:
        return [f"cannot reach the metadata store: {exc.message}"], None
    finally:
        store.dispose()


def _check_sqlite(db_path: Path) -> tuple[list[str], str | None]:
    import sqlite3

    if not db_path.exists():
        return [], None
    try:
        conn = _connect_read_only(db_path)
    except sqlite3.Error as exc:
        return [f"{db_path} cannot be opened: {exc}"], None
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
        if rows != ["ok"]:
            return [f"{db_path} is damaged: " + "; ".join(rows[:5])], None
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return [], None  # no schema yet: created on first use
        return [], str(row[0]) if row else None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        return [f"{db_path} is damaged: {exc}"], None
    finally:
        conn.close()
