"""The current window: prediction-log segments over a time range or the last N rows, or a file.

The server writes Parquet segments and registers each in ``prediction_segments`` (see
docs/architecture.md), on the project's disk or on object storage (``s3://...``). A window
picks the segments that overlap it and streams them in chunks of rows (only the columns
needed, time and version filters pushed down), so its size never has to fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
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

    from mlcd.monitor.current import WindowSummary
    from mlcd.monitor.profile import ReferenceProfile

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

    def _whole(self, segment: Segment, whole: bool) -> bool:
        """Whether a remote segment is worth one whole-object GET: read for every column
        asked (not the ``ts``-only pass of ``last N``) and inside the window's time range."""
        from mlcd.logdata.segments import inside

        window = self.window
        return whole and inside(segment.first_at, segment.last_at, window.start, window.end)

    def _read_small(
        self, segment: Segment, columns: list[str] | None, whole: bool = True
    ) -> list[Any] | None:
        """A small segment's batches, read whole (None when its file is missing)."""
        from mlcd.logdata.segments import SegmentMissing, locate, open_dataset

        location = locate(self.root, segment.path)
        try:
            dataset = open_dataset(location, whole=self._whole(segment, whole))
        except SegmentMissing:
            return None
        return list(self._scan(location, dataset, columns))

    def _open(self, segment: Segment, whole: bool = True) -> tuple[Any, Any] | None:
        """A large segment's location and dataset, to be streamed (None when its file is
        missing). A remote one up to ``MLCD_LOG_WHOLE_READ_MAX`` bytes is fetched whole."""
        from mlcd.logdata.segments import SegmentMissing, locate, open_dataset

        location = locate(self.root, segment.path)
        try:
            return location, open_dataset(location, whole=self._whole(segment, whole))
        except SegmentMissing:
            return None

    def _batches(self, columns: list[str] | None, whole: bool = True) -> Iterator[tuple[Any, int]]:
        """``(record batch or None, registered rows of the segments finished so far)``, in
        segment order. Small segments (a server writes one every few seconds) are read whole,
        ``parallel`` at a time, so the storage's latency per file is paid concurrently; large
        ones (daily files) are streamed in batches, the next one opened (for a remote file:
        fetched) while the current one streams, so at most two are held at once."""
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        done = 0
        ahead: deque[tuple[Segment, Future[Any] | None]] = deque()
        todo = iter(self.segments)
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="mlcd-log-read") as pool:

            def refill() -> None:
                while len(ahead) < self.parallel:  # bounded: at most ``parallel`` read whole
                    segment = next(todo, None)
                    if segment is None:
                        return
                    small = segment.rows <= self.chunk_rows
                    job = pool.submit(self._read_small, segment, columns, whole) if small else None
                    ahead.append((segment, job))

            def open_next_large() -> None:
                for index, (segment, job) in enumerate(ahead):
                    if segment.rows > self.chunk_rows:
                        if job is None:
                            ahead[index] = (segment, pool.submit(self._open, segment, whole))
                        return

            refill()
            while ahead:
                segment, job = ahead.popleft()
                if segment.rows <= self.chunk_rows:
                    assert job is not None
                    batches = job.result()
                    refill()
                    if batches is None:
                        self._missing(segment)
                    for batch in batches or ():
                        yield batch, done
                else:
                    opened = job.result() if job is not None else self._open(segment, whole)
                    refill()
                    open_next_large()
                    if opened is None:
                        self._missing(segment)
                    else:
                        location, dataset = opened
                        opened = None
                        for batch in self._scan(location, dataset, columns):
                            yield batch, done
                        dataset = None
                done += segment.rows
                yield None, done

    def _scan(self, location: Any, dataset: Any, columns: list[str] | None) -> Iterator[Any]:
        """The segment's batches inside the window: ``scan``'s rows, cheaper.

        Row groups are pruned from their statistics as ``scan`` does, but rows are filtered
        here, and only in the batches where some row falls outside: Arrow's scanner would
        copy every column of every batch through its filter, even when all rows pass (as in
        a segment the window holds whole).
        """
        import pyarrow.compute as pc

        from mlcd.logdata.segments import SegmentMissing, _unreachable, filter_expression

        window = self.window
        names = dataset.schema.names
        wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
        where = filter_expression(names, window.start, window.end, self.version)
        read = wanted  # and the columns the filter needs
        if where is not None and wanted is not None:
            read = list(dict.fromkeys([*wanted, *(c for c in ("ts", "version") if c in names)]))
        try:
            for fragment in dataset.get_fragments():
                if where is not None:
                    fragment = fragment.subset(where)  # row groups that can hold window rows
                    if not fragment.row_groups:
                        continue
                batches = fragment.to_batches(
                    schema=dataset.schema, columns=read, batch_size=self.chunk_rows,
                    batch_readahead=2, fragment_readahead=1,
                )  # fmt: skip
                for batch in batches:
                    if where is not None and batch.num_rows:
                        inside = self._inside(batch, pc)
                        if inside is not None:
                            batch = batch.filter(inside)
                        if read != wanted:
                            batch = batch.select(wanted)
                    if batch.num_rows:
                        yield batch
        except FileNotFoundError as exc:
            raise SegmentMissing(
                f"prediction log segment {location.display} disappeared while it was read",
                hint="a concurrent 'mlcd log compact' or 'mlcd gc' retired it: run again",
            ) from exc
        except MonitorError:
            raise
        except Exception as exc:
            raise _unreachable(location, exc) from exc

    def _inside(self, batch: Any, pc: Any) -> Any:
        """The rows of ``batch`` inside the window and of the version (None: every row is),
        with the pushed-down filter's kernels (a null or NaN time is outside)."""
        window = self.window
        names = batch.schema.names
        parts = []
        if "ts" in names:
            ts = batch.column("ts")
            if window.start is not None:
                parts.append(pc.greater_equal(ts, window.start))
            if window.end is not None:
                parts.append(pc.less(ts, window.end))
        if self.version is not None and "version" in names:
            parts.append(pc.equal(batch.column("version"), self.version))
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = pc.and_kleene(mask, part)
        mask = pc.fill_null(mask, False)
        return None if pc.all(mask).as_py() else mask

    def _missing(self, segment: Segment) -> None:
        if segment.path not in self.missing:
            self.missing.append(segment.path)

    def _tables(self, cutoff: float, at_cutoff: int) -> Iterator[tuple[Any, int]]:
        """Batches coalesced into Arrow tables of up to ``chunk_rows`` rows (one schema each,
        one contiguous chunk per column)."""
        import pyarrow as pa

        pending: list[Any] = []
        size = 0
        done = 0

        def flush() -> Any:
            table = pa.Table.from_batches(pending).combine_chunks()
            pending.clear()
            return table

        for batch, done in self._batches(self.columns):
            if batch is None:
                continue
            if pending and (
                size + batch.num_rows > self.chunk_rows or batch.schema != pending[0].schema
            ):
                table, size = flush(), 0
                table, at_cutoff = self._last_mask(table, cutoff, at_cutoff)
                if table.num_rows:
                    yield table, done
            pending.append(batch)
            size += batch.num_rows
        if pending:
            table, at_cutoff = self._last_mask(flush(), cutoff, at_cutoff)
            if table.num_rows:
                yield table, done
        yield None, done

    def _last_mask(self, table: Any, cutoff: float, at_cutoff: int) -> tuple[Any, int]:
        """For ``last N``: keep rows newer than the cutoff and the first ``at_cutoff`` at it."""
        if self.window.last is None or "ts" not in table.column_names:
            return table, at_cutoff
        ts = np.asarray(table.column("ts").to_numpy(), dtype=np.float64)
        mask = ts >= cutoff
        equal = np.flatnonzero(ts == cutoff)
        mask[equal[max(at_cutoff, 0) :]] = False
        at_cutoff -= min(len(equal), max(at_cutoff, 0))
        return (table if mask.all() else table.filter(mask)), at_cutoff

    def _cutoff(self) -> tuple[float, int]:
        """For ``last N``: the N-th newest timestamp and how many rows at it are taken.

        Keeps at most 2N timestamps in memory, whatever the window's size.
        """
        assert self.window.last is not None
        n = self.window.last
        top = np.empty(0)
        count = 0
        for batch, _done in self._batches(["ts"], whole=False):  # a column: ranged reads
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

    def tables(self) -> Iterator[Any]:
        """The window's rows as Arrow tables of up to ``chunk_rows`` rows, read ahead in a
        thread (``done_rows`` follows the segments finished)."""
        from mlcd.logdata.segments import prefetch

        cutoff, at_cutoff = (-math.inf, 0)
        if self.window.last is not None:
            cutoff, at_cutoff = self._cutoff()
        self.done_rows = 0
        for table, done in prefetch(self._tables(cutoff, at_cutoff), self.readahead):
            self.done_rows = done
            if table is not None:
                yield table

    def __iter__(self) -> Iterator[pd.DataFrame]:
        """The window's rows as DataFrames (see :meth:`tables`)."""
        for table in self.tables():
            yield table.to_pandas()


def summarise_log(
    profile: ReferenceProfile,
    tables: Iterable[Any],
    *,
    max_values: int | None = 1_000_000,
    seed: int = 0,
    on_chunk: Callable[[Any], None] | None = None,
    on_table: Callable[[], None] | None = None,
    lanes: int | None = None,
) -> WindowSummary:
    """:func:`mlcd.monitor.current.summarise_window` for prediction-log rows read as Arrow
    tables (:meth:`LogReader.tables`): the same summary, number for number, without pandas.

    Columns are reduced straight from Arrow buffers; columns of other types than numbers and
    text fall back to pandas one column at a time. The work is spread over ``lanes`` threads
    (one per core by default), each owning some columns (and one the row counts) and taking
    the chunks in order, so a column sees the same chunks as it would alone and no lane
    waits for the others, at most a few chunks apart. ``on_chunk`` gets the accepted rows of
    each chunk as an Arrow table (built only for it), ``on_table`` is called after each
    chunk is handed over (progress).
    """
    from collections import Counter
    from concurrent.futures import Future, ThreadPoolExecutor

    from mlcd.monitor.current import _MAX_ERRORS, WindowSummary
    from mlcd.monitor.profile import LOG_COLUMNS, PREDICTION_COLUMNS
    from mlcd.monitor.summary import ColumnAccumulator, map_columns, workers

    accumulators = {
        name: feature.accumulator(max_values, seed=seed + index)
        for index, (name, feature) in enumerate(profile.features.items())
    }
    used: set[str] = set()
    seen: set[str] = set()
    counts = _RowCounts()
    # Lanes balanced by cost: a numeric column about twice a text one or the row counts.
    lanes = max(1, lanes or workers())
    loads = [0] * lanes
    owners: list[list[ColumnAccumulator | _RowCounts]] = [[] for _ in range(lanes)]
    items: list[ColumnAccumulator | _RowCounts] = [*accumulators.values(), counts]
    for item in items:
        lane = loads.index(min(loads))
        owners[lane].append(item)
        loads[lane] += 2 if isinstance(item, ColumnAccumulator) and item.kind == "numeric" else 1

    def work(items: list[ColumnAccumulator | _RowCounts], table: Any, bad: Any) -> None:
        keep = None
        for item in items:
            if isinstance(item, _RowCounts):
                item.add(table, bad)
                continue
            if item.name not in table.column_names or not counts.accepted(table, bad):
                continue
            if bad is not None and keep is None:
                keep = _invert(bad)
            column = table.column(item.name)
            item.add_arrow(column if keep is None else column.filter(keep))

    pending: list[list[Future[None]]] = []
    executors = [
        ThreadPoolExecutor(1, thread_name_prefix=f"mlcd-monitor-{i}") for i in range(lanes)
    ]
    try:
        for table in tables:
            names = table.column_names
            seen.update(str(c) for c in names)
            used.update(n for n in names if n in accumulators)
            bad = _rejected(table.column("status")) if "status" in names else None
            if bad is not None and not bad.true_count:
                bad = None
            if on_chunk is not None and table.num_rows > (bad.true_count if bad else 0):
                on_chunk(table if bad is None else table.filter(_invert(bad)))
            pending.append(
                [
                    ex.submit(work, items, table, bad)
                    for ex, items in zip(executors, owners, strict=True)
                ]
            )
            if on_table is not None:
                on_table()
            while len(pending) > 2:  # bounded: a few chunks in flight
                for future in pending.pop(0):
                    future.result()
        for futures in pending:
            for future in futures:
                future.result()
    finally:
        for ex in executors:
            ex.shutdown(wait=True, cancel_futures=True)
    summaries = map_columns(
        lambda acc: acc.finish(), [acc for name, acc in accumulators.items() if name in used]
    )
    errors = counts.errors
    if len(errors) > _MAX_ERRORS:
        top = dict(errors.most_common(_MAX_ERRORS - 1))
        top["(other messages)"] = sum(errors.values()) - sum(top.values())
        errors = Counter(top)
    skip = set(LOG_COLUMNS) | set(PREDICTION_COLUMNS)
    rows = counts.rows
    return WindowSummary(
        rows=rows,
        rejected=counts.rejected,
        columns={s.name: s for s in summaries},
        rejection_errors=dict(errors.most_common()),
        first_at=counts.first if math.isfinite(counts.first) else None,
        last_at=counts.last if math.isfinite(counts.last) else None,
        versions=dict(counts.versions),
        missing_columns=[n for n in profile.inputs if n not in seen] if rows else [],
        extra_columns=sorted(c for c in seen if c not in profile.features and c not in skip),
    )


class _RowCounts:
    """The window's row-level counts: rows, rejections and their messages, time range and
    versions (what :func:`summarise_window` counts beside the columns)."""

    def __init__(self) -> None:
        from collections import Counter

        self.rows = self.rejected = 0
        self.errors: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.first, self.last = math.inf, -math.inf

    @staticmethod
    def accepted(table: Any, bad: Any) -> bool:
        """Whether ``table`` has rows the server answered."""
        return bool(table.num_rows > (bad.true_count if bad is not None else 0))

    def add(self, table: Any, bad: Any) -> None:
        names = table.column_names
        self.rows += table.num_rows
        if bad is not None:
            self.rejected += bad.true_count
            if "error" in names:
                self.errors.update(_messages(table.column("error").filter(bad)))
        if "ts" in names and table.num_rows:
            ts = np.asarray(table.column("ts").to_numpy(), dtype=np.float64)
            if np.isfinite(ts).any():
                self.first = min(self.first, float(np.nanmin(ts)))
                self.last = max(self.last, float(np.nanmax(ts)))
        if "version" in names:
            self.versions.update(_version_counts(table.column("version")))


def _invert(mask: Any) -> Any:
    import pyarrow.compute as pc

    return pc.invert(mask)


def _is_text(array: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(array.type) or pa.types.is_large_string(array.type))


def _rejected(status: Any) -> Any:
    """Rows whose status is ``rejected``, as an Arrow boolean array without nulls (a missing
    status is not a rejection)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if _is_text(status):
        mask = pc.fill_null(pc.equal(status, "rejected"), False)
    else:
        flags = (status.to_pandas() == "rejected").fillna(False)
        mask = pa.array(np.asarray(flags.to_numpy(dtype=bool), dtype=bool))
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask


def _messages(errors: Any) -> Any:
    """The rejection messages' counts (in order of first appearance), or the messages."""
    import pyarrow.compute as pc

    if _is_text(errors):
        counts = pc.value_counts(pc.fill_null(errors, "(no message)"))
        return dict(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )
    return errors.to_pandas().fillna("(no message)").astype(str)


def _version_counts(version: Any) -> dict[str, int]:
    """Rows per version, keyed as pandas prints the value (``1``; ``1.0`` beside nulls)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_integer(version.type) and not version.null_count:
        counts = pc.value_counts(version)
        keys = counts.field("values").to_pylist()
        return {
            str(k): int(n) for k, n in zip(keys, counts.field("counts").to_pylist(), strict=True)
        }
    found = version.to_pandas().value_counts(dropna=True, sort=False)
    return {str(v): int(n) for v, n in found.items()}


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
