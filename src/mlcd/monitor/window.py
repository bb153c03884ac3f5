"""The current window: prediction-log segments over a time range or the last N rows, or a file.

The server writes Parquet segments and registers each in ``prediction_segments`` (see
docs/architecture.md). A window picks the segments that overlap it and streams them in
chunks of rows (only the columns needed), so its size never has to fit in memory at once.
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
    """Streams the rows of a window from its segments, in chunks, filtered by time/version."""

    root: Path
    segments: list[Segment]
    window: Window
    version: int | None = None
    columns: list[str] | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    #: segment paths registered in the store but not found on disk
    missing: list[str] = field(default_factory=list)

    def _files(self) -> Iterator[tuple[Segment, Any]]:
        import pyarrow.parquet as pq

        for segment in self.segments:
            path = self.root / segment.path
            if not path.is_file():
                if segment.path not in self.missing:
                    self.missing.append(segment.path)
                continue
            try:
                yield segment, pq.ParquetFile(path)
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise MonitorError(
                    f"prediction log segment {path} cannot be read: {exc}",
                    hint="the file is damaged; move it away and delete its row from "
                    "prediction_segments, or restore it from a backup",
                ) from exc

    def _cutoff(self) -> tuple[float, int]:
        """For ``last N``: the N-th newest timestamp and how many rows at it are taken."""
        parts = []
        for _segment, handle in self._files():
            for batch in handle.iter_batches(batch_size=1_000_000, columns=["ts"]):
                ts = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64)
                parts.append(ts[self._time_mask(ts)])
        stamps = np.concatenate(parts) if parts else np.empty(0)
        assert self.window.last is not None
        if stamps.size <= self.window.last:
            return -math.inf, stamps.size
        kth = float(np.partition(stamps, stamps.size - self.window.last)[-self.window.last])
        return kth, self.window.last - int(np.count_nonzero(stamps > kth))

    def _time_mask(self, ts: Any) -> Any:
        mask = np.ones(len(ts), dtype=bool)
        if self.window.start is not None:
            mask &= ts >= self.window.start
        if self.window.end is not None:
            mask &= ts < self.window.end
        return mask

    def __iter__(self) -> Iterator[pd.DataFrame]:
        cutoff, at_cutoff = (-math.inf, 0)
        if self.window.last is not None:
            cutoff, at_cutoff = self._cutoff()
        for _segment, handle in self._files():
            names = handle.schema_arrow.names
            wanted = None if self.columns is None else [c for c in self.columns if c in names]
            for batch in handle.iter_batches(batch_size=self.chunk_rows, columns=wanted):
                frame = batch.to_pandas()
                if "ts" in frame.columns:
                    ts = frame["ts"].to_numpy(dtype=np.float64, na_value=np.nan)
                    mask = self._time_mask(ts)
                    if self.window.last is not None:
                        equal = np.flatnonzero(mask & (ts == cutoff))
                        mask &= ts >= cutoff
                        drop = equal[max(at_cutoff, 0) :]
                        mask[drop] = False
                        at_cutoff -= min(len(equal), max(at_cutoff, 0))
                    frame = frame[mask]
                if self.version is not None and "version" in frame.columns:
                    frame = frame[frame["version"] == self.version]
                if len(frame):
                    yield frame.reset_index(drop=True)


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
