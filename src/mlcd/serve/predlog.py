"""The prediction log: every answered (and rejected) request, written asynchronously to Parquet.

Requests hand an entry to :meth:`PredictionLog.log`, which only appends to a bounded queue
and never blocks: when the queue is full the rows are dropped and counted. A writer thread
drains the queue every ``flush_interval_s`` (or as soon as ``batch_rows`` are waiting),
writes one segment per model, version and day under
``<folder>/model=<name>/date=YYYY-MM-DD/<first_ts>-<uuid>.parquet`` (temp file, then rename)
and registers it in ``prediction_segments``. A segment that cannot be written or registered
is dropped and counted too; the server keeps answering. Columns: docs/architecture.md.
The writer also hands every drained batch to ``on_batch`` (the live monitoring gauges),
so that work stays off the request path as well.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
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
    features: Mapping[str, Any] | None = None  # column -> values (array or list), or None
    predictions: Any = None  # array or list, one per row
    proba: Any = None  # positive-class probability per row (binary classifiers)
    error: str | None = None
    #: the inputs as one float64 matrix, columns in ``features`` order (all-numeric models)
    matrix: Any = None

    @property
    def rows(self) -> int:
        """How many log rows this entry becomes."""
        return len(self.request_ids)


class PredictionLog:
    """A bounded, batched, asynchronous Parquet writer registered in the metadata store.

    Args:
        store: where segments are registered (None: files only, for tools without a store).
        root: the project root; registered paths are relative to it.
        folder: where segments are written (``<state>/predictions``); None writes no
            segments (the entries only go to ``on_batch``).
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
        folder: Path | None,
        *,
        batch_rows: int = 5000,
        flush_interval_s: float = 2.0,
        queue_size: int = 100_000,
        on_drop: Callable[[int], None] | None = None,
        on_write: Callable[[int], None] | None = None,
        on_batch: Callable[[list[LogEntry]], None] | None = None,
    ) -> None:
        self.store = store
        self.root = Path(root)
        self.folder = Path(folder) if folder is not None else None
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.queue_size = queue_size
        self._on_drop = on_drop
        self._on_write = on_write
        self._on_batch = on_batch
        self._queue: deque[LogEntry] = deque()
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

    # ------------------------------------------------------------------ producer side
    def log(self, entry: LogEntry) -> bool:
        """Queue an entry; False (and counted as dropped) when the queue is full or closed."""
        rows = len(entry.request_ids)
        with self._lock:
            if self._stop or self._queued_rows + rows > self.queue_size:
                self.dropped_rows += rows
                accepted = False
            else:
                self._queue.append(entry)
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
        """Start the writer thread."""
        if self._thread is None:
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

    # ------------------------------------------------------------------ writer side
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._drain()
            with self._lock:
                if self._stop and not self._queue:
                    return

    def _drain(self) -> None:
        with self._lock:
            entries = list(self._queue)
            self._queue.clear()
            self._busy = bool(entries)
        try:
            if self._on_batch is not None:
                try:
                    self._on_batch(entries)
                except Exception:  # monitoring must never stop the log
                    log.exception("prediction log: the batch observer failed")
            if entries and self.folder is not None:
                self._write(entries)
        finally:
            with self._lock:
                self._queued_rows -= sum(e.rows for e in entries)
                self._busy = False
                self._idle.notify_all()

    def _write(self, entries: list[LogEntry]) -> None:
        groups: dict[tuple[str, int | None, str], list[LogEntry]] = {}
        for entry in entries:
            day = time.strftime("%Y-%m-%d", time.gmtime(entry.ts))
            groups.setdefault((entry.model, entry.version, day), []).append(entry)
        for (model, version, day), group in groups.items():
            rows = sum(e.rows for e in group)
            try:
                self._write_segment(model, version, day, group)
            except Exception as exc:  # a full disk or a down store must not stop serving
                log.warning("prediction log: dropped %d rows of %s: %s", rows, model, exc)
                with self._lock:
                    self.dropped_rows += rows
                if self._on_drop is not None:
                    self._on_drop(rows)
            else:
                with self._lock:
                    self.written_rows += rows
                    self.segments_written += 1
                if self._on_write is not None:
                    self._on_write(rows)

    def _write_segment(
        self, model: str, version: int | None, day: str, group: list[LogEntry]
    ) -> None:
        import pyarrow.parquet as pq

        from mlcd.digest import hash_file

        assert self.folder is not None
        table = to_table(group)
        first_at = min(e.ts for e in group)
        last_at = max(e.ts for e in group)
        folder = self.folder / f"model={model}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{int(first_at * 1000)}-{uuid.uuid4().hex}.parquet"
        temp = path.with_name(f".{path.name}.tmp")
        try:
            pq.write_table(table, temp, compression="zstd")
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            if temp.exists():
                temp.unlink()
        if self.store is None:
            return
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            relative = path.as_posix()
        digest = str(hash_file(path))
        from mlcd.store import predictions

        try:
            self.store.transact(
                lambda conn: predictions.add_segment(
                    conn,
                    model=model,
                    version=version,
                    path=relative,
                    rows=table.num_rows,
                    first_at=first_at,
                    last_at=last_at,
                    digest=digest,
                )
            )
        except Exception:
            path.unlink(missing_ok=True)  # unregistered rows are invisible: count them dropped
            raise


def to_table(entries: Sequence[LogEntry]) -> Any:
    """One Arrow table of the entries' rows (the prediction-log columns)."""
    import numpy as np
    import pyarrow as pa

    counts = [e.rows for e in entries]
    total = sum(counts)
    request_ids: list[str] = []
    for e in entries:
        request_ids.extend(e.request_ids)
    columns: dict[str, Any] = {
        "request_id": pa.array(request_ids, pa.string()),
        "ts": pa.array(np.repeat([e.ts for e in entries], counts), pa.float64()),
        "model": pa.array(np.repeat([e.model for e in entries], counts).tolist(), pa.string()),
        "version": pa.array([e.version for e in entries for _ in range(e.rows)], pa.int64()),
        "status": pa.array([e.status for e in entries for _ in range(e.rows)], pa.string()),
        "error": pa.array([e.error for e in entries for _ in range(e.rows)], pa.string()),
        "latency_ms": pa.array(np.repeat([e.latency_ms for e in entries], counts), pa.float64()),
    }
    names: list[str] = []
    for e in entries:
        for name in e.features or ():
            if name not in columns and name not in names:
                names.append(name)
    for name in names:
        columns[name] = concat_column([(e.features or {}).get(name) for e in entries], counts)
    columns["prediction"] = concat_column([e.predictions for e in entries], counts)
    columns["proba"] = concat_column([e.proba for e in entries], counts, pa.float64())
    table = pa.table(columns)
    assert table.num_rows == total
    return table


def concat_column(parts: Sequence[Any], counts: Sequence[int], kind: Any = None) -> Any:
    """One Arrow column from per-entry values (arrays or lists; None for rows without)."""
    import numpy as np
    import pyarrow as pa

    if all(p is None for p in parts):
        return pa.nulls(sum(counts), kind or pa.float64())
    arrays = [p for p in parts if p is not None]
    if kind is None and all(isinstance(p, np.ndarray) and p.dtype.kind in "fiub" for p in arrays):
        dtype = np.result_type(*arrays)
        if all(p is not None for p in parts):
            return pa.array(np.concatenate(arrays).astype(dtype, copy=False))
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
