"""The prediction log: every answered (and rejected) request, written asynchronously to Parquet.

Requests hand an entry to :meth:`PredictionLog.log`, which only appends to a bounded queue
and never blocks: when the queue is full the rows are dropped and counted. A writer thread
drains the queue every ``flush_interval_s`` (or as soon as ``batch_rows`` are waiting),
writes one segment per model, version and day and registers it in ``prediction_segments``.
A segment that cannot be written or registered is dropped and counted too; the server keeps
answering. Columns: docs/architecture.md. The writer also hands every drained batch to
``on_batch`` (the live monitoring gauges), so that work stays off the request path as well.

Where segments go, and what readers (:mod:`mlcd.logdata`) can rely on:

* the location is a local folder (``<state>/predictions`` by default) or any fsspec URL
  (``monitor.log_location: s3://bucket/prefix``); below it every segment is
  ``model=<name>/date=YYYY-MM-DD/<first ts ms>-<host>-<pid>-<uuid>.parquet``, so replicas on
  any number of hosts writing to one location never collide;
* a segment is immutable and appears whole or not at all: a local one is written to a
  temporary file, fsynced and renamed; a remote one is one PUT of the finished file;
* ``prediction_segments.path`` is the path relative to the project root for a local
  segment (as before: a project folder can move) and the full URL for a remote one;
  ``digest`` is the BLAKE3 of the file's bytes, ``rows``/``first_at``/``last_at`` its rows;
* a segment is registered only after it is stored, so every registered row is readable and
  no row is in two segments. One that cannot be registered because the store does not answer
  (a database outage) is kept and its registration retried before each later write, oldest
  first, so an outage loses no row; past ``max_pending`` waiting segments (or when the server
  stops before the store is back) the oldest file is kept on storage but its rows count as
  dropped and the warning names it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve.predlog")


@dataclass(frozen=True)
class LogEntry:
    """One request's rows: ids, inputs, outputs and how it went."""

    model: str
    version: int | None
    ts: float
    latency_ms: float
    status: str  # ok | rejected | error | shadow
    request_ids: Sequence[str]
    #: column -> values (array or list), or None; with ``matrix``, only its keys are read
    features: Mapping[str, Any] | None = None
    predictions: Any = None  # array or list, one per row
    proba: Any = None  # positive-class probability per row (binary classifiers)
    error: str | None = None
    #: the inputs as one float64 matrix, columns in ``features`` order (all-numeric models)
    matrix: Any = None

    @property
    def rows(self) -> int:
        """How many log rows this entry becomes."""
        return len(self.request_ids)


class Batch:
    """Queued entries held column by column.

    :meth:`PredictionLog.log` appends an entry's fields here and drops the entry: what stays
    queued per request is numbers, strings and numpy arrays, none of which the cyclic GC
    scans, so a busy server's queue never grows the old generation that a full collection
    walks (one measured full collection with 230k tracked objects: 150 ms, on the event
    loop's thread). The writer and the live gauges read the drained batch with
    :meth:`select` (a subset of entries), :meth:`values` (one input column) and ``layouts``.
    """

    __slots__ = (
        "error", "features", "has_inputs", "latency_ms", "layouts", "matrix", "model",
        "predictions", "proba", "request_ids", "rows", "status", "ts", "version",
    )  # fmt: skip

    def __init__(self) -> None:
        self.model: list[str] = []
        self.version: list[int | None] = []
        self.ts: list[float] = []
        self.latency_ms: list[float] = []
        self.status: list[str] = []
        self.error: list[str | None] = []
        self.rows: list[int] = []
        self.request_ids: list[str] = []  # all entries' ids, flat
        #: per entry: its inputs as one float matrix in ``layouts[(model, version)]`` order
        self.matrix: list[Any] = []
        #: per entry: column -> values, only for inputs without a matrix (else None)
        self.features: list[Mapping[str, Any] | None] = []
        self.has_inputs: list[bool] = []  # the entry named its input columns (maybe all null)
        self.predictions: list[Any] = []
        self.proba: list[Any] = []
        #: the input columns of each (model, version), in matrix order
        self.layouts: dict[tuple[str, int | None], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.model)

    @classmethod
    def of(cls, entries: Sequence[LogEntry]) -> Batch:
        """A batch of these entries."""
        batch = cls()
        for entry in entries:
            batch.add(entry)
        return batch

    def add(self, entry: LogEntry) -> None:
        """Append one entry (cheap: it runs on the request path)."""
        self.model.append(entry.model)
        self.version.append(entry.version)
        self.ts.append(entry.ts)
        self.latency_ms.append(entry.latency_ms)
        self.status.append(entry.status)
        self.error.append(entry.error)
        self.rows.append(len(entry.request_ids))
        self.request_ids.extend(entry.request_ids)
        self.predictions.append(entry.predictions)
        self.proba.append(entry.proba)
        features = entry.features
        self.has_inputs.append(features is not None)
        matrix = entry.matrix
        if features:
            key = (entry.model, entry.version)
            layout = self.layouts.get(key)
            if layout is None or len(layout) != len(features):
                layout = self.layouts[key] = tuple(features)
            if matrix is not None and matrix.shape[1] == len(layout):
                features = None  # the matrix has them all, in the version's layout
            elif matrix is None and all(v is None for v in features.values()):
                features = None  # no inputs (a rejected request): null columns
            else:
                matrix = None
        self.matrix.append(matrix)
        self.features.append(features)

    def select(self, indices: Sequence[int]) -> Batch:
        """The entries at ``indices`` (in that order) as a batch of their own."""
        if len(indices) == len(self) and list(indices) == list(range(len(self))):
            return self
        out = Batch()
        starts = [0]
        for n in self.rows:
            starts.append(starts[-1] + n)
        for name in Batch.__slots__:
            if name in ("request_ids", "layouts"):
                continue
            column = getattr(self, name)
            setattr(out, name, [column[i] for i in indices])
        for i in indices:
            out.request_ids.extend(self.request_ids[starts[i] : starts[i + 1]])
        out.layouts = self.layouts
        return out

    def names(self) -> list[str]:
        """Every input column of the batch, in the order they first appear."""
        names: dict[str, None] = {}
        for key in dict.fromkeys(zip(self.model, self.version, strict=True)):
            names.update(dict.fromkeys(self.layouts.get(key, ())))
        for features in self.features:
            if features:
                names.update(dict.fromkeys(features))
        return list(names)

    def values(self, name: str) -> list[Any]:
        """Per entry, the values of input column ``name`` (an array, a list, or None)."""
        index = {key: {n: j for j, n in enumerate(v)} for key, v in self.layouts.items()}
        out: list[Any] = []
        for i, matrix in enumerate(self.matrix):
            if matrix is not None:
                j = index[(self.model[i], self.version[i])].get(name)
                out.append(None if j is None else matrix[:, j])
            else:
                features = self.features[i]
                out.append(features.get(name) if features else None)
        return out


class PredictionLog:
    """A bounded, batched, asynchronous Parquet writer registered in the metadata store.

    Args:
        store: where segments are registered (None: files only, for tools without a store).
        root: the project root; registered paths of local segments are relative to it.
        folder: where segments are written: a folder (``<state>/predictions``; relative to
            ``root`` when relative) or an fsspec URL (``s3://bucket/prefix``); None writes
            no segments (the entries only go to ``on_batch``).
        batch_rows: write as soon as this many rows wait.
        flush_interval_s: otherwise write at least this often.
        queue_size: rows that may wait; more are dropped and counted.
        on_drop: called with the number of rows dropped (metrics).
        on_write: called with the number of rows written (metrics).
        on_batch: called in the writer thread with each drained batch of entries (an empty
            list when the writer woke with nothing to do), before the batch is written.
    """

    def __init__(
        self,
        store: Store | None,
        root: Path,
        folder: Path | str | None,
        *,
        batch_rows: int = 5000,
        flush_interval_s: float = 2.0,
        queue_size: int = 100_000,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        on_batch: Callable[[Batch], None] | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.max_pending = max_pending
        #: stored segments whose registration waits for the store: (register, rows, where)
        self._pending: list[tuple[Callable[[], None], int, str]] = []
        self.root = Path(root)
        #: the remote location (an fsspec URL without its trailing slash), or None
        self.url: str | None = None
        self.folder: Path | None = None
        if isinstance(folder, str) and "://" in folder and not folder.startswith("file://"):
            self.url = folder.rstrip("/")
        elif folder is not None:
            local = Path(str(folder).removeprefix("file://"))
            self.folder = local if local.is_absolute() else self.root / local
        self._fs: Any = None  # the remote filesystem and the location's path inside it
        self._base = ""
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        self._on_drop = on_drop
        self._on_write = on_write
        self._on_batch = on_batch
        self._queue = Batch()
        self._lock = threading.Lock()
        self._queued_rows = 0
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.written_rows = 0
        self.dropped_rows = 0
        self.segments_written = 0
        self.pending_rows = 0

    # ------------------------------------------------------------------ producer side
    def log(self, entry: LogEntry) -> bool:
        """Queue an entry; False (and counted as dropped) when the queue is full or closed."""
        rows = len(entry.request_ids)
        with self._lock:
            if self._stop or self._queued_rows + rows > self.queue_size:
                self.dropped_rows += rows
                accepted = False
            else:
                self._queue.add(entry)
                self._queued_rows += rows
                accepted = True
                if self._queued_rows >= self.batch_rows:
                    self._wake.set()
        if not accepted and self._on_drop is not None:
            self._on_drop(rows)
        return accepted

    @property
    def queued_rows(self) -> int:
        """Rows waiting to be written."""
        return self._queued_rows

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the writer thread (after importing what it needs: importing pyarrow.parquet
        at the first write held the GIL for the writer thread while requests waited)."""
        if self._thread is None:
            if self.url is not None:
                self._remote()  # a missing driver or a malformed URL fails at start-up
            if self.folder is not None or self.url is not None:
                import pyarrow.parquet  # noqa: F401

                import mlcd.digest
                import mlcd.store.predictions  # noqa: F401
            self._thread = threading.Thread(target=self._run, name="mlcd-predlog", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; True when the queue drained within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self._thread is None:
            self._drain()
            return True
        self._wake.set()
        with self._idle:
            while self._queued_rows or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, stop the writer; later entries are dropped."""
        self.flush(timeout)
        with self._lock:
            self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._register_pending()
        for _register, rows, where in self._pending:
            log.warning(
                "prediction log: %s (%d rows) is stored but not registered: the metadata "
                "store did not answer before the server stopped",
                where,
                rows,
            )
            self._count_dropped(rows)
        self._pending.clear()
        self.pending_rows = 0

    # ------------------------------------------------------------------ writer side
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
            with self._lock:
                if self._stop and not len(self._queue):
                    return

    def _count_dropped(self, rows: int) -> None:
        with self._lock:
            self.dropped_rows += rows
        if self._on_drop is not None:
            self._on_drop(rows)

    def _count_written(self, rows: int) -> None:
        with self._lock:
            self.written_rows += rows
            self.segments_written += 1
        if self._on_write is not None:
            self._on_write(rows)

    def _register_pending(self) -> None:
        """Retry the waiting registrations, oldest first; stop at the first that fails."""
        if not self._pending:
            return
        while self._pending:
            register, rows, _where = self._pending[0]
            try:
                register()
            except Exception:
                return
            self._pending.pop(0)
            self.pending_rows -= rows
            self._count_written(rows)
        log.info("prediction log: every segment kept during the store outage is registered")

    def _keep_pending(self, register: Callable[[], None], rows: int, where: str) -> None:
        if not self._pending:
            log.warning(
                "prediction log: the metadata store does not answer; segments are kept and "
                "registered once it does"
            )
        self._pending.append((register, rows, where))
        self.pending_rows += rows
        while len(self._pending) > self.max_pending:
            _register, old_rows, old_where = self._pending.pop(0)
            self.pending_rows -= old_rows
            log.warning(
                "prediction log: %s (%d rows) stays unregistered: more than %d segments "
                "wait for the store",
                old_where,
                old_rows,
                self.max_pending,
            )
            self._count_dropped(old_rows)

    def _drain(self) -> None:
        if self._pending:
            self._register_pending()
        with self._lock:
            batch = self._queue
            self._queue = Batch()
            self._busy = bool(len(batch))
        try:
            if self._on_batch is not None:
                try:
                    self._on_batch(batch)
                except Exception:  # monitoring must never stop the log
                    log.exception("prediction log: the batch observer failed")
            if len(batch) and (self.folder is not None or self.url is not None):
                self._write(batch)
        finally:
            with self._lock:
                self._queued_rows -= sum(batch.rows)
                self._busy = False
                self._idle.notify_all()

    def _write(self, batch: Batch) -> None:
        days: dict[int, str] = {}
        groups: dict[tuple[str, int | None, str], list[int]] = {}
        for i, key in enumerate(zip(batch.model, batch.version, batch.ts, strict=True)):
            number = int(key[2] // 86400)
            day = days.get(number)
            if day is None:
                day = days[number] = time.strftime("%Y-%m-%d", time.gmtime(number * 86400))
            groups.setdefault((key[0], key[1], day), []).append(i)
        for (model, version, day), indices in groups.items():
            group = batch.select(indices)
            rows = sum(group.rows)
            try:
                registered = self._write_segment(model, version, day, group)
            except Exception as exc:  # a full disk must not stop serving
                log.warning("prediction log: dropped %d rows of %s: %s", rows, model, exc)
                self._count_dropped(rows)
            else:
                if registered:
                    self._count_written(rows)

    def _write_segment(self, model: str, version: int | None, day: str, group: Batch) -> bool:
        """Store one segment and register it; False when its registration waits (outage)."""
        from mlcd.digest import hash_bytes, hash_file

        table = to_table(group)
        first_at = min(group.ts)
        last_at = max(group.ts)
        name = f"{int(first_at * 1000)}-{_replica()}-{uuid.uuid4().hex[:16]}.parquet"
        relative = f"model={model}/date={day}/{name}"
        if self.url is not None:
            data = _parquet_bytes(table)
            digest = str(hash_bytes(data))
            registered = f"{self.url}/{relative}"
            self._put(relative, data)

            def forget() -> None:
                fs, base = self._remote()
                fs.rm_file(f"{base}/{relative}")
        else:
            path = self._write_local(relative, table)
            digest = str(hash_file(path))
            try:
                registered = path.relative_to(self.root).as_posix()
            except ValueError:
                registered = path.as_posix()

            def forget() -> None:
                path.unlink(missing_ok=True)

        if self.store is None:
            return True
        from mlcd.store import predictions

        store = self.store

        def register() -> None:
            store.transact(
                lambda conn: predictions.add_segment(
                    conn,
                    model=model,
                    version=version,
                    path=registered,
                    rows=table.num_rows,
                    first_at=first_at,
                    last_at=last_at,
                    digest=digest,
                ),
                attempts=2,
            )

        try:
            register()
        except Exception as exc:
            from mlcd.errors import StoreError

            if isinstance(exc, StoreError):  # the database did not answer or refused
                self._keep_pending(register, table.num_rows, registered)
                return False
            try:
                forget()  # unregistered rows are invisible: count them dropped
            except Exception as exc2:
                log.warning("prediction log: could not delete %s: %s", registered, exc2)
            raise
        return True

    def _write_local(self, relative: str, table: Any) -> Path:
        import pyarrow.parquet as pq

        assert self.folder is not None
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        try:
            pq.write_table(table, temp, compression="zstd")
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            if temp.exists():
                temp.unlink()
        return path

    def _remote(self) -> tuple[Any, str]:
        """The remote location's fsspec filesystem and its path inside it.

        Raises:
            ConfigError: no driver for the URL's protocol, or a URL fsspec cannot parse.
        """
        if self._fs is None:
            import fsspec

            from mlcd.errors import ConfigError

            assert self.url is not None
            protocol = self.url.split("://", 1)[0].lower()
            try:
                self._fs, self._base = fsspec.core.url_to_fs(self.url)
            except ImportError as exc:
                extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(protocol, protocol)
                raise ConfigError(
                    f"the prediction log location {self.url} needs a driver for {protocol}:// "
                    f"({exc.name or exc})",
                    hint=f"pip install 'mlcd[{extra}]'",
                ) from exc
            except ValueError as exc:
                raise ConfigError(
                    f"the prediction log location {self.url} is not a usable URL: {exc}",
                    hint="monitor.log_location is a folder or an fsspec URL (s3://bucket/prefix)",
                ) from exc
            self._base = self._base.rstrip("/")
        return self._fs, self._base

    def _put(self, relative: str, data: bytes) -> None:
        """One PUT of a finished segment, retried a few times: a storage hiccup of a few
        seconds costs no rows (the queue keeps filling meanwhile, up to ``queue_size``)."""
        fs, base = self._remote()
        for attempt, pause in enumerate((0.5, 1.0, 2.0, None)):
            try:
                fs.pipe_file(f"{base}/{relative}", data)
                return
            except Exception as exc:
                if pause is None:
                    raise
                log.info("prediction log: write %d to %s failed (%s); retrying", attempt + 1,
                         self.url, exc)  # fmt: skip
                time.sleep(pause)


def _replica() -> str:
    """This process's part of a segment name: host and pid (pids differ per worker)."""
    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def _parquet_bytes(table: Any) -> bytes:
    """The table as one zstd-compressed Parquet file, in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def to_table(entries: Batch | Sequence[LogEntry]) -> Any:
    """One Arrow table of the entries' rows (the prediction-log columns).

    Built column by column with a handful of numpy calls, not per row or per entry and
    column: the writer thread holds the GIL while it runs, and the event loop waits for it
    (4,000 single-row entries: 3 µs a row, against 18-23 µs entry by entry).
    """
    import numpy as np
    import pyarrow as pa

    batch = entries if isinstance(entries, Batch) else Batch.of(entries)
    n = len(batch)
    counts = np.array(batch.rows, np.int64)
    total = int(counts.sum())
    single = total == n  # every entry one row (the usual case): no repeats needed

    def per_row(values: list[Any]) -> list[Any]:
        if single:
            return values
        return [v for v, c in zip(values, batch.rows, strict=True) for _ in range(c)]

    def floats(values: list[float]) -> Any:
        array = np.array(values, np.float64)
        return pa.array(array if single else np.repeat(array, counts), pa.float64())

    columns: dict[str, Any] = {
        "request_id": pa.array(batch.request_ids, pa.string()),
        "ts": floats(batch.ts),
        "model": pa.array(per_row(batch.model), pa.string()),
        "version": pa.array(per_row(batch.version), pa.int64()),
        "status": pa.array(per_row(batch.status), pa.string()),
        "error": pa.array(per_row(batch.error), pa.string()),
        "latency_ms": floats(batch.latency_ms),
    }
    names = [name for name in batch.names() if name not in columns]
    stacked = _stacked(batch, counts, names)
    if stacked is not None:
        matrix, missing = stacked
        for j, name in enumerate(names):
            columns[name] = pa.array(matrix[:, j], pa.float64(), mask=missing)
    else:
        for name in names:
            columns[name] = concat_column(batch.values(name), batch.rows)
    columns["prediction"] = concat_column(batch.predictions, batch.rows)
    columns["proba"] = concat_column(batch.proba, batch.rows, pa.float64())
    table = pa.table(columns)
    assert table.num_rows == total
    return table


def _stacked(batch: Batch, counts: Any, names: list[str]) -> Any:
    """All input columns as one float matrix (rows without inputs masked) when every entry
    has its inputs as a matrix in ``names`` order, or none at all; else None."""
    import numpy as np

    if not names or any(batch.features):
        return None
    layout = tuple(names)
    parts: list[Any] = []
    absent: list[bool] = []
    for i, matrix in enumerate(batch.matrix):
        if matrix is None:
            parts.append(np.full((batch.rows[i], len(names)), np.nan))
            absent.append(True)
        elif batch.layouts[(batch.model[i], batch.version[i])] != layout:
            return None
        else:
            parts.append(matrix)
            absent.append(False)
    matrix = np.concatenate(parts).astype(np.float64, copy=False)
    missing = np.repeat(np.array(absent), counts) if any(absent) else None
    return matrix, missing


def concat_column(parts: Sequence[Any], counts: Sequence[int], kind: Any = None) -> Any:
    """One Arrow column from per-entry values (arrays or lists; None for rows without)."""
    import numpy as np
    import pyarrow as pa

    if all(p is None for p in parts):
        return pa.nulls(sum(counts), kind or pa.float64())
    arrays = [p for p in parts if p is not None]
    if all(type(p) is np.ndarray and p.dtype.kind in "fiub" for p in arrays):
        if len(arrays) == len(parts):
            return pa.array(np.concatenate(arrays), kind)
        values = np.concatenate(
            [np.asarray(p, dtype=np.float64) if p is not None else np.full(n, np.nan)
             for p, n in zip(parts, counts, strict=True)]
        )  # fmt: skip
        return pa.array(values, from_pandas=True)
    flat: list[Any] = []
    for part, n in zip(parts, counts, strict=True):
        if part is None:
            flat.extend([None] * n)
        else:
            flat.extend(part.tolist() if isinstance(part, np.ndarray) else part)
    try:
        return pa.array(flat, kind, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep them as text
        return pa.array([None if v is None else str(v) for v in flat], pa.string())
