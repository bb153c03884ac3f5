"""The logging session of one run in one process: an in-memory buffer and its background flusher.

``log_metric`` only appends a tuple to a list under a lock; one daemon thread per process
writes every open session's buffer to the metadata store in batches (one transaction,
``executemany``) every ``flush_interval`` seconds, or sooner once ``batch_size`` points are
waiting. ``flush()`` writes synchronously and raises if the store refused; an ``atexit``
hook flushes whatever is left when the process ends normally. A SIGKILL loses at most what was logged since the last flush: the points of
the last ``flush_interval`` seconds (one second by default), never a committed batch.

The flusher thread opens the store itself, so SQLAlchemy and the migrations are imported
off the caller's thread: a stage that calls ``mlcd.log_metric`` pays no import on its loop.
Nothing here imports SQLAlchemy at module level. An embedded SQLite store already at the
schema's head is written through ``mlcd.store.lite`` (the stdlib ``sqlite3``, same SQL, same
rows, same transactions), so a short script never imports SQLAlchemy at all.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcd.errors import MlcdError, TrackingError, UsageError

if TYPE_CHECKING:
    from mlcd.objects import ObjectStore
    from mlcd.store import Store
    from mlcd.store.lite import LiteStore

#: Longest key the store accepts (``tables.KEY``); checked at call time so that one bad key
#: never poisons a whole batch in the background.
KEY_MAX = 250
_STEP_MAX = 2**63 - 1
#: A transaction writes at most this many points, so a huge backlog never holds the
#: database's write lock for long.
_CHUNK = 20_000


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class SessionSettings:
    """Buffering knobs (``MLCD_FLUSH_INTERVAL``, ``MLCD_FLUSH_BATCH`` override the defaults)."""

    flush_interval: float = 1.0
    batch_size: int = 10_000
    max_buffer: int = 1_000_000

    @classmethod
    def from_env(cls) -> SessionSettings:
        """Defaults with the ``MLCD_FLUSH_*`` environment applied."""
        return cls(
            flush_interval=max(0.01, _env_float("MLCD_FLUSH_INTERVAL", 1.0)),
            batch_size=max(1, int(_env_float("MLCD_FLUSH_BATCH", 10_000))),
        )


def check_key(key: object, what: str) -> str:
    """Validate a param, metric or tag name.

    Raises:
        UsageError: not a non-empty string of at most 250 characters.
    """
    if key.__class__ is not str or not 0 < len(key) <= KEY_MAX:  # type: ignore[arg-type]
        raise UsageError(
            f"invalid {what} name {key!r}",
            hint=f"use a non-empty string of at most {KEY_MAX} characters",
        )
    return key  # type: ignore[return-value]


class Session:
    """Buffered writes of params, tags, metrics and artifacts for one run.

    Args:
        run_id: the run every record attaches to (it must exist in the store).
        store_url: the store URL, opened lazily in the flusher thread when ``store`` is None.
        root: the project root (relative store and artifact paths resolve against it).
        artifacts_url: the object store for ``log_artifact``.
        stage: the pipeline stage, recorded on artifacts.
        store: an already opened store (``start_run`` passes the one it created the run in).
        owns_run: end the run (finished/failed) when the session closes.
        owns_store: dispose of the store's connections on close (default: when it opened it).
    """

    def __init__(
        self,
        run_id: str,
        *,
        store_url: str | None = None,
        root: str = ".",
        artifacts_url: str | None = None,
        stage: str | None = None,
        store: Store | LiteStore | None = None,
        owns_run: bool = False,
        name: str | None = None,
        settings: SessionSettings | None = None,
        owns_store: bool | None = None,
    ) -> None:
        self.run_id = run_id
        self.name = name
        self.stage = stage
        self.root = root
        self.store_url = store_url
        self.artifacts_url = artifacts_url
        self.owns_run = owns_run
        self.settings = settings or SessionSettings.from_env()
        self._store: Store | LiteStore | None = store
        self._owns_store = store is None if owns_store is None else owns_store
        self._objects: ObjectStore | None = None
        self._checked_run = store is not None
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._metrics: list[tuple[str, float, int, float]] = []
        self._params: dict[str, Any] = {}
        self._tags: dict[str, Any] = {}
        self._artifacts: list[Any] = []
        self._steps: dict[str, int] = {}
        self._attached = False  # known to the process's flusher thread
        self._retry_at = 0.0
        self._backoff = 0.0
        self._closing = False
        self.closed = False
        self.error: BaseException | None = None
        self.points_written = 0

    # ------------------------------------------------------------------ the hot path
    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Buffer one metric point (see ``mlcd.log_metric``)."""
        if key.__class__ is not str or not 0 < len(key) <= KEY_MAX:
            check_key(key, "metric")
        number = value if value.__class__ is float else _check_value(key, value)
        if number - number != 0.0:
            number = _check_value(key, number)
        stamp = time.time() if timestamp is None else float(timestamp)
        with self._lock:
            if step is None:
                step = self._steps.get(key, -1) + 1
            elif step.__class__ is not int or not -_STEP_MAX <= step <= _STEP_MAX:
                step = _check_step(key, step)
            self._steps[key] = step
            self._metrics.append((key, number, step, stamp))
            pending = len(self._metrics)
        if pending >= self.settings.batch_size:
            self._nudge(pending)
        elif not self._attached:
            self._attach()

    def _nudge(self, pending: int) -> None:
        if not self._attached:
            self._attach()
        _FLUSHER.wake()
        if pending >= self.settings.max_buffer:
            # Back-pressure: a store that cannot keep up must not let memory grow unbounded.
            self.flush()

    # ------------------------------------------------------------------ other records
    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: float | None = None
    ) -> None:
        """Buffer several metric points with the same step and time (all or none)."""
        stamp = time.time() if timestamp is None else float(timestamp)
        checked = [
            (check_key(key, "metric"), _check_value(key, value)) for key, value in metrics.items()
        ]
        if step is not None and (step.__class__ is not int or not -_STEP_MAX <= step <= _STEP_MAX):
            step = _check_step(next(iter(metrics), "?"), step)
        with self._lock:
            steps = self._steps
            for key, number in checked:
                at = steps.get(key, -1) + 1 if step is None else step
                steps[key] = at
                self._metrics.append((key, number, at, stamp))
            pending = len(self._metrics)
        if pending >= self.settings.batch_size:
            self._nudge(pending)
        elif not self._attached:
            self._attach()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Buffer params (a later value for a key replaces the earlier one)."""
        checked = {check_key(k, "param"): v for k, v in params.items()}
        with self._lock:
            self._params.update(checked)
        if not self._attached:
            self._attach()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Buffer tags."""
        checked = {check_key(k, "tag"): v for k, v in tags.items()}
        with self._lock:
            self._tags.update(checked)
        if not self._attached:
            self._attach()

    def add_artifact(self, ref: Any) -> None:
        """Buffer an artifact record (the blob is already in the object store)."""
        with self._lock:
            self._artifacts.append(ref)
        if not self._attached:
            self._attach()

    def objects(self) -> ObjectStore:
        """The object store artifacts go to (opened on first use)."""
        if self._objects is None:
            from mlcd.layout import DEFAULT_ARTIFACTS
            from mlcd.objects import open_object_store

            self._objects = open_object_store(self.artifacts_url or DEFAULT_ARTIFACTS, self.root)
        return self._objects

    # ------------------------------------------------------------------ flushing
    def _attach(self) -> None:
        """Hand the session to the process's flusher thread (started on first use)."""
        with self._lock:
            if self._attached or self.closed:
                return
            self._attached = True
        _register_process_hooks()
        _FLUSHER.attach(self)

    def background_write(self) -> None:
        """One pass of the flusher thread: open the store if needed, write what is pending.

        A failure keeps the records buffered and retries later, backing off to 30 s.
        """
        if self._closing or time.monotonic() < self._retry_at:
            return
        try:
            self.store()  # SQLAlchemy is imported here, on the flusher's thread
            self._write_pending()
            self._backoff = 0.0
        except BaseException as exc:
            self.error = exc
            self._backoff = min(30.0, max(self.settings.flush_interval, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff

    def store(self) -> Store | LiteStore:
        """The metadata store (opened on first use; checks that the run exists)."""
        if self._store is None:
            with self._write_lock:
                if self._store is None:
                    if not self.store_url:
                        raise TrackingError(
                            "no store to log to",
                            hint="set MLCD_STORE, or use mlcd.start_run() inside a project",
                        )
                    self._store = open_store(self.store_url, self.root)
        if not self._checked_run:
            self._check_run(self._store)
        return self._store

    def _check_run(self, store: Store | LiteStore) -> None:
        from mlcd.errors import NotFound

        try:
            with store.read() as conn:
                repo = repository(conn)
                if repo.__name__ == "mlcd.store.lite":
                    if not repo.run_exists(conn, self.run_id):
                        raise NotFound(self.run_id)
                else:
                    repo.get_run(conn, self.run_id)
        except NotFound:
            raise TrackingError(
                f"run {self.run_id} (from MLCD_RUN_ID) does not exist in {store.url}",
                hint="run the stage through 'mlcd run', or unset MLCD_RUN_ID and use "
                "mlcd.start_run()",
            ) from None
        self._checked_run = True

    def flush(self) -> None:
        """Write everything buffered so far; returns once it is committed.

        Raises:
            TrackingError: the store refused the write (the records stay buffered).
        """
        self._flush(None)

    def _flush(self, end: str | None) -> None:
        try:
            self._write_pending(end)
        except MlcdError as exc:
            raise TrackingError(
                f"could not write run {self.run_id[:8]}'s records: {exc.message}",
                hint=exc.hint or "check that the metadata store is reachable",
            ) from exc
        self.error = None

    def _write_pending(self, end: str | None = None) -> None:
        """Write the buffer (and, with ``end``, end the run in the last transaction)."""
        with self._write_lock:
            with self._lock:
                metrics, self._metrics = self._metrics, []
                params, self._params = self._params, {}
                tags, self._tags = self._tags, {}
                artifacts, self._artifacts = self._artifacts, []
            if not (metrics or params or tags or artifacts or end):
                return
            written = 0
            try:
                store = self._store if self._store is not None else self._open_unlocked()
                if not self._checked_run:
                    self._check_run(store)
                first = True
                while first or written < len(metrics):
                    chunk = metrics[written : written + _CHUNK]
                    extras = (params, tags, artifacts) if first else ({}, {}, [])
                    last = written + len(chunk) >= len(metrics)
                    status = end if last else None
                    store.transact(
                        lambda conn, c=chunk, e=extras, s=status: self._write(conn, c, *e, end=s)  # type: ignore[misc]
                    )
                    written += len(chunk)
                    first = False
            except BaseException:
                # Put back what was not committed, ahead of anything logged meanwhile.
                with self._lock:
                    self._metrics[:0] = metrics[written:]
                    if written == 0:
                        self._params = {**params, **self._params}
                        self._tags = {**tags, **self._tags}
                        self._artifacts[:0] = artifacts
                raise
            self.points_written += len(metrics)

    def _open_unlocked(self) -> Store | LiteStore:
        if not self.store_url:
            raise TrackingError("no store to log to", hint="set MLCD_STORE")
        self._store = open_store(self.store_url, self.root)
        return self._store

    def _write(
        self,
        conn: Any,
        metrics: list[tuple[str, float, int, float]],
        params: dict[str, Any],
        tags: dict[str, Any],
        artifacts: list[Any],
        end: str | None = None,
    ) -> None:
        runs = repository(conn)
        if params:
            runs.log_params(conn, self.run_id, params)
        if tags:
            runs.set_tags(conn, self.run_id, tags)
        if metrics:
            runs.log_metric_rows(conn, self.run_id, metrics)
        if artifacts:
            runs.add_artifacts(conn, self.run_id, artifacts)
        if end is not None:
            runs.end_run(conn, self.run_id, end)

    # ------------------------------------------------------------------ closing
    def close(self, status: str | None = None) -> None:
        """Flush, stop the flusher and (for a run this process started) end the run.

        Raises:
            TrackingError: the final write failed.
        """
        if self.closed:
            return
        self._closing = True  # the flusher leaves it alone from now on
        self.closed = True
        try:
            # the last records and the run's end in one transaction
            self._flush(status if self.owns_run else None)
        finally:
            if self._owns_store and self._store is not None:
                self._store.dispose()
            _SESSIONS.discard(self)

    def after_fork(self) -> None:
        """In a forked child: forget the parent's buffer, thread and connections."""
        if self._store is not None:
            _INHERITED.append(self._store)  # never closed here: the parent still uses them
        if self._store is not None:
            self.store_url = self._store.url
        self._store = None
        self._owns_store = True
        self._objects = None
        self.owns_run = False
        self._checked_run = True
        self._reset_buffers()


class _Flusher:
    """The one background thread of a process that writes every open session's buffer.

    One thread, not one per run: a sweep that starts thousands of short runs starts no thread
    per run, and a run that ends writes its last records itself, synchronously.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Held while the thread writes; a fork takes it first, so a child never inherits
        #: SQLAlchemy or SQLite half-way through a write (and their locks held by no thread).
        self.pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._sessions: list[Session] = []
        self._thread: threading.Thread | None = None

    def attach(self, session: Session) -> None:
        """Serve ``session`` from now on; its store is opened on the flusher's thread."""
        with self._lock:
            self._sessions.append(session)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="mlcd-flush", daemon=True)
                self._thread.start()
        self._wake.set()

    def wake(self) -> None:
        """Write now (a batch is full)."""
        self._wake.set()

    def reset_after_fork(self) -> None:
        """In a forked child: no thread runs, no session is served yet."""
        self._lock = threading.Lock()
        self.pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._sessions = []
        self._thread = None

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._sessions = [s for s in self._sessions if not s.closed]
                sessions = list(self._sessions)
            with self.pass_lock:  # a fork waits for the pass (see _before_fork)
                for session in sessions:
                    session.background_write()
            interval = min((s.settings.flush_interval for s in sessions), default=1.0)
            self._wake.wait(interval)
            self._wake.clear()


_FLUSHER = _Flusher()


def _check_value(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"metric {key!r}: value {value!r} is not a number",
            hint="log a float or an int (numpy scalars and 0-d tensors work too)",
        ) from None
    if number - number != 0.0:
        raise UsageError(
            f"metric {key!r} is {number}: only finite numbers are stored",
            hint="skip the point, or log a bounded stand-in (the loss may have diverged)",
        )
    return number


def _check_step(key: str, step: Any) -> int:
    try:
        value = int(step)
    except (TypeError, ValueError):
        raise UsageError(
            f"metric {key!r}: step {step!r} is not an integer", hint="pass an int step"
        ) from None
    if isinstance(step, float) and step != value:
        raise UsageError(f"metric {key!r}: step {step!r} is not a whole number")
    if not -_STEP_MAX <= value <= _STEP_MAX:
        raise UsageError(f"metric {key!r}: step {step!r} is out of range (64-bit integers)")
    return value


# ---------------------------------------------------------------------- process-wide hooks
#: Every open session, so the exit hook can flush them all.
_SESSIONS: set[Session] = set()
#: Stores inherited over fork; kept referenced so their sockets are never closed in the child.
_INHERITED: list[Any] = []
_hooks_installed = False
#: Set when an exception reached the top level, so runs left open end as "failed".
uncaught_error = False


def track(session: Session) -> Session:
    """Register a session for the exit hook."""
    _SESSIONS.add(session)
    _register_process_hooks()
    return session


def _register_process_hooks() -> None:
    global _hooks_installed
    _register_worker_exit()
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_flush_all_at_exit)
    # looked up at each fork: a child replaces the lock, and may fork again
    os.register_at_fork(
        before=lambda: _FLUSHER.pass_lock.acquire(),
        after_in_parent=lambda: _FLUSHER.pass_lock.release(),
        after_in_child=_after_fork_in_child,
    )
    previous: Callable[..., Any] = sys.excepthook

    def _excepthook(*args: Any) -> None:
        global uncaught_error
        uncaught_error = True
        previous(*args)

    sys.excepthook = _excepthook


_worker_pid: int | None = None


def _register_worker_exit() -> None:
    """A multiprocessing child started by fork leaves through ``os._exit``, skipping atexit;
    its exit finalizers do run, so the flush is registered there too."""
    global _worker_pid
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or _worker_pid == os.getpid():
        return
    if multiprocessing.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(None, _flush_all_at_exit, exitpriority=100)
    _worker_pid = os.getpid()


def _flush_all_at_exit() -> None:
    for session in sorted(_SESSIONS, key=lambda s: s.owns_run):  # stage sessions first
        status = "failed" if uncaught_error else "finished"
        try:
            session.close(status)
        except BaseException as exc:
            sys.stderr.write(f"mlcd: {exc}\n")
    _dispose_shared_stores()


def _after_fork_in_child() -> None:
    _FLUSHER.reset_after_fork()
    for session in list(_SESSIONS):
        session.after_fork()
    _INHERITED.extend(_SHARED_STORES.values())
    _SHARED_STORES.clear()


#: Stores shared by the runs ``start_run`` opens in this process, by URL: a sweep of 2,000
#: runs opens (and migration-checks) the database once, not 2,000 times.
_SHARED_STORES: dict[str, Any] = {}
_shared_lock = threading.Lock()


def repository(conn: Any) -> Any:
    """The runs repository for a connection: ``mlcd.store.lite`` for the fast path's,
    ``mlcd.store.runs`` for SQLAlchemy's (the same functions, the same rows)."""
    from mlcd.store import lite

    if isinstance(conn, lite.LiteConn):
        return lite
    from mlcd.store import runs

    return runs


def open_store(url: str, root: str | os.PathLike[str]) -> Store | LiteStore:
    """The fast path when the store allows it (``mlcd.store.lite.open_fast``), else ``Store``
    (which creates, migrates or refuses the database)."""
    from mlcd.store.lite import open_fast

    fast = open_fast(url, root)
    if fast is not None:
        return fast
    from mlcd.store import Store

    return Store(url, root=root)


def shared_tracking_store(url: str, root: str | os.PathLike[str]) -> Store | LiteStore:
    """``shared_store`` for writing runs: the fast path when the store allows it."""
    from mlcd.store import lite

    path = lite.sqlite_path(url, root)
    if path is None or not lite.enabled():
        return shared_store(url, root)
    key = f"fast:{path}"
    with _shared_lock:
        store = _SHARED_STORES.get(key)
        if store is None:
            store = lite.open_fast(url, root)
            if store is not None:
                _SHARED_STORES[key] = store
                _register_process_hooks()
    return store if store is not None else shared_store(url, root)


def shared_store(url: str, root: str | os.PathLike[str]) -> Store:
    """The process's open store for ``url`` (opened and migrated on first use)."""
    from mlcd.store import Store, normalise_url

    key = normalise_url(url, root)
    with _shared_lock:
        store = _SHARED_STORES.get(key)
        if store is None:
            store = Store(key)
            _SHARED_STORES[key] = store
            _register_process_hooks()
        return store


def _dispose_shared_stores() -> None:
    with _shared_lock:
        stores = list(_SHARED_STORES.values())
        _SHARED_STORES.clear()
    for store in stores:
        try:
            store.dispose()
        except Exception:  # closing at exit: a dead connection has nothing left to lose
            pass
