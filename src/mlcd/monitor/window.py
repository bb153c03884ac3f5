"""The current window: prediction-log segments over a time range or the last N rows, or a file.

The server writes Parquet segments and registers each in ``prediction_segments`` (see
docs/architecture.md), on the project's disk or on object storage (``s3://...``). A window
picks the segments that overlap it and streams them in chunks of rows (only the columns
needed, time and version filters pushed down), so its size never has to fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd.durations import parse_duration as parse_duration  # re-exported
from mlcd.durations import parse_since as parse_since  # re-exported
from mlcd.errors import MonitorError, UsageError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Connection

DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Window:
    """Which predictions to look at: ``[start, end)`` in epoch seconds, or the last N."""

    start: float | None = None
    end: float | None = None
    last: int | None = None

    @classmethod
    def parse(cls, since: str | None, last: int | None, now: float, default: str) -> Window:
        """The window for ``--since``/``--last`` (the configured window when neither is given).

        Raises:
            UsageError: both given, or a bad value.
        """
        if since and last:
            raise UsageError("--since and --last cannot be combined", hint="choose one")
        if last is not None:
            if last <= 0:
                raise UsageError(f"--last must be positive (got {last})")
            return cls(end=now, last=last)
        return cls(start=parse_since(since or default, now), end=now)

    def describe(self) -> str:
        """For people: ``last 1000 predictions`` or the UTC range."""
        if self.last is not None:
            return f"last {self.last} predictions"

        def fmt(ts: float | None) -> str:
            return "…" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")

        return f"{fmt(self.start)} → {fmt(self.end)} UTC"

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "last": self.last}


@dataclass(frozen=True)
class Segment:
    """One registered Parquet segment of the prediction log."""

    id: int
    model: str
    version: int | None
    path: str
    rows: int
    first_at: float
    last_at: float


def find_segments(
    conn: Connection, model: str, window: Window, version: int | None = None
) -> list[Segment]:
    """The segments of ``model`` (and ``version``) that can hold rows of ``window``."""
    from sqlalchemy import select

    from mlcd.store.tables import prediction_segments as t

    stmt = select(t).where(t.c.model == model)
    if version is not None:
        stmt = stmt.where((t.c.version == version) | t.c.version.is_(None))
    if window.end is not None:
        stmt = stmt.where(t.c.first_at <= window.end)
    if window.last is None:
        if window.start is not None:
            stmt = stmt.where(t.c.last_at >= window.start)
        rows = conn.execute(stmt.order_by(t.c.first_at, t.c.id)).mappings().all()
        return [_segment(r) for r in rows]
    newest = conn.execute(stmt.order_by(t.c.last_at.desc(), t.c.id.desc())).mappings().all()
    chosen: list[Segment] = []
    total = 0
    for row in newest:
        segment = _segment(row)
        # Segments written by several workers overlap in time: keep taking while one
        # could still hold a row newer than the oldest row taken so far.
        if total >= window.last and segment.last_at < min(s.first_at for s in chosen):
            break
        chosen.append(segment)
        total += segment.rows
    return sorted(chosen, key=lambda s: (s.first_at, s.id))


def _segment(row: Any) -> Segment:
    return Segment(
        int(row["id"]),
        str(row["model"]),
        None if row["version"] is None else int(row["version"]),
        str(row["path"]),
        int(row["rows"]),
        float(row["first_at"]),
        float(row["last_at"]),
    )


@dataclass
class LogReader:
    """Streams the rows of a window from its segments, in chunks, filtered by time/version.

    Segments are read where they are (a path under ``root`` or an fsspec URL such as
    ``s3://...``) through pyarrow datasets: only ``columns``, with the window's time range
    and the version pushed down to the Parquet reader. A thread reads ahead a few chunks
    (bounded), so storage latency overlaps with the caller's work on the current chunk.
    """

    root: Path
    segments: list[Segment]
    window: Window
    version: int | None = None
    columns: list[str] | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    #: segment paths registered in the store but not found in storage
    missing: list[str] = field(default_factory=list)
    #: registered rows of the segments read so far (for progress against ``total_rows``)
    done_rows: int = 0
    #: chunks read ahead of the caller (each at most ``chunk_rows`` rows)
    readahead: int = 2
    #: small segments read at once (each at most ``chunk_rows`` rows)
    parallel: int = 8

    @property
    def total_rows(self) -> int:
        """Registered rows of every segment of the window (before filtering)."""
        return sum(s.rows for s in self.segments)

    def _read_small(self, segment: Segment, columns: list[str] | None) -> list[Any] | None:
        """A small segment's batches, read whole (None when its file is missing)."""
        from mlcd.logdata.segments import SegmentMissing, locate, open_dataset, scan

        location = locate(self.root, segment.path)
        try:
            dataset = open_dataset(location)
        except SegmentMissing:
            return None
        window = self.window
        return list(
            scan(location, columns, start=window.start, end=window.end, version=self.version,
                 batch_rows=self.chunk_rows, dataset=dataset)
        )  # fmt: skip

    def _batches(self, columns: list[str] | None) -> Iterator[tuple[Any, int]]:
        """``(record batch or None, registered rows of the segments finished so far)``, in
        segment order. Small segments (a server writes one every few seconds) are read whole,
        ``parallel`` at a time, so the storage's latency per file is paid concurrently; large
        ones (daily files) are streamed in batches."""
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        from mlcd.logdata.segments import scan

        done = 0
        ahead: deque[tuple[Segment, Future[list[Any] | None] | None]] = deque()
        todo = iter(self.segments)
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="mlcd-log-read") as pool:

            def refill() -> None:
                while len(ahead) < self.parallel:  # bounded: at most ``parallel`` read whole
                    segment = next(todo, None)
                    if segment is None:
                        return
                    small = segment.rows <= self.chunk_rows
                    job = pool.submit(self._read_small, segment, columns) if small else None
                    ahead.append((segment, job))

            refill()
            while ahead:
                segment, job = ahead.popleft()
                if job is not None:
                    batches = job.result()
                    refill()
                    if batches is None:
                        self._missing(segment)
                    for batch in batches or ():
                        yield batch, done
                else:
                    for batch in self._stream(segment, columns, scan):
                        yield batch, done
                    refill()
                done += segment.rows
                yield None, done

    def _stream(self, segment: Segment, columns: list[str] | None, scan: Any) -> Iterator[Any]:
        from mlcd.logdata.segments import SegmentMissing, locate, open_dataset

        location = locate(self.root, segment.path)
        try:
            dataset = open_dataset(location)
        except SegmentMissing:
            self._missing(segment)
            return
        window = self.window
        yield from scan(
            location, columns, start=window.start, end=window.end, version=self.version,
            batch_rows=self.chunk_rows, dataset=dataset,
        )  # fmt: skip

    def _missing(self, segment: Segment) -> None:
        if segment.path not in self.missing:
            self.missing.append(segment.path)

    def _frames(self, cutoff: float, at_cutoff: int) -> Iterator[tuple[Any, int]]:
        """Batches coalesced into DataFrames of up to ``chunk_rows`` rows (one schema each)."""
        import pyarrow as pa

        pending: list[Any] = []
        size = 0
        done = 0

        def flush() -> Any:
            table = pa.Table.from_batches(pending)
            pending.clear()
            return table.to_pandas()

        for batch, done in self._batches(self.columns):
            if batch is None:
                continue
            if pending and (
                size + batch.num_rows > self.chunk_rows or batch.schema != pending[0].schema
            ):
                frame, size = flush(), 0
                frame, at_cutoff = self._last_mask(frame, cutoff, at_cutoff)
                if len(frame):
                    yield frame, done
            pending.append(batch)
            size += batch.num_rows
        if pending:
            frame, at_cutoff = self._last_mask(flush(), cutoff, at_cutoff)
            if len(frame):
                yield frame, done
        yield None, done

    def _last_mask(self, frame: Any, cutoff: float, at_cutoff: int) -> tuple[Any, int]:
        """For ``last N``: keep rows newer than the cutoff and the first ``at_cutoff`` at it."""
        if self.window.last is None or "ts" not in frame.columns:
            return frame.reset_index(drop=True), at_cutoff
        ts = frame["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
        mask = ts >= cutoff
        equal = np.flatnonzero(ts == cutoff)
        mask[equal[max(at_cutoff, 0) :]] = False
        at_cutoff -= min(len(equal), max(at_cutoff, 0))
        return frame[mask].reset_index(drop=True), at_cutoff

    def _cutoff(self) -> tuple[float, int]:
        """For ``last N``: the N-th newest timestamp and how many rows at it are taken.

        Keeps at most 2N timestamps in memory, whatever the window's size.
        """
        assert self.window.last is not None
        n = self.window.last
        top = np.empty(0)
        count = 0
        for batch, _done in self._batches(["ts"]):
            if batch is None or batch.num_columns == 0:
                continue
            ts = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
            ts = ts[~np.isnan(ts)]
            count += ts.size
            top = np.concatenate([top, ts])
            if top.size > 2 * n:
                top = np.partition(top, top.size - n)[-n:]
        if count <= n:
            return -math.inf, count
        kth = float(np.partition(top, top.size - n)[-n])
        return kth, n - int(np.count_nonzero(top > kth))

    def __iter__(self) -> Iterator[pd.DataFrame]:
        from mlcd.logdata.segments import prefetch

        cutoff, at_cutoff = (-math.inf, 0)
        if self.window.last is not None:
            cutoff, at_cutoff = self._cutoff()
        self.done_rows = 0
        for frame, done in prefetch(self._frames(cutoff, at_cutoff), self.readahead):
            self.done_rows = done
            if frame is not None:
                yield frame


def iter_file_chunks(
    path: str | Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: Iterable[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Stream a CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet file in chunks of rows.

    Raises:
        UsageError: the file does not exist or has an unknown extension.
        MonitorError: the file cannot be parsed.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UsageError(
            f"no such file: {path}", hint="pass the path of a CSV or Parquet file that exists"
        )
    name = path.name.lower()
    wanted = list(columns) if columns is not None else None
    if name.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:
            raise MonitorError(
                f"{path} is not a readable Parquet file: {exc}",
                hint="check the file is complete",
            ) from exc
        if wanted is not None:
            wanted = [c for c in wanted if c in handle.schema_arrow.names]
        for batch in handle.iter_batches(batch_size=chunk_rows, columns=wanted):
            yield batch.to_pandas()
        return
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        sep = "\t" if ".tsv" in name else ","
        try:
            reader = pd.read_csv(path, sep=sep, chunksize=chunk_rows, low_memory=False)
            for chunk in reader:
                yield chunk if wanted is None else chunk[[c for c in wanted if c in chunk]]
        except pd.errors.EmptyDataError:
            return
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise MonitorError(
                f"{path} cannot be parsed as {'TSV' if sep == chr(9) else 'CSV'}: {exc}",
                hint="check the delimiter, quoting and encoding (UTF-8)",
            ) from exc
        return
    raise UsageError(
        f"cannot read {path}: unknown file type",
        hint="use a .csv, .csv.gz, .tsv or .parquet file",
    )
