"""Compaction and retention of the prediction log.

A server writes one small segment per model, version and day every few seconds, so a busy
day leaves thousands of files (per replica). ``mlcd log compact`` merges the segments of each
model, version and UTC day into one daily Parquet file beside them (same folder or same
object-storage prefix), streamed batch by batch (bounded memory), with row groups small
enough for time push-down. Then, in one transaction, it registers the daily file and
unregisters the segments it holds; only after the commit are their files deleted.

Crash safety: before the commit nothing changed for readers (a daily file written but not
registered is invisible, and its name is derived from the segments it holds, so the next run
overwrites it). After the commit readers see the daily file only; the replaced files still
on storage are listed in the daily row (``replaces``) until they are deleted, so the next
run finishes the deletion. No row is ever lost or seen twice.

Retention (``monitor.log_retention``, enforced by ``mlcd gc``) unregisters segments whose
newest row is older than the retention, then deletes their files. Data windows recorded for
continual learning are copies in the object store (by digest), so they are not affected.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import MonitorError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from mlcd.logdata.segments import Location
    from mlcd.store import Store

#: rows per row group of a daily file (time and version push-down skip whole groups)
ROW_GROUP_ROWS = 131_072
Progress = Callable[..., None]


def day_of(ts: float) -> str:
    """The UTC day ``YYYY-MM-DD`` of a timestamp."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


@dataclass
class CompactedDay:
    """One model/version/day: the segments merged (or that would be) into one file."""

    model: str
    version: int | None
    day: str
    segments: int
    rows: int
    path: str
    status: str = "planned"  # planned | compacted | skipped
    reason: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CompactReport:
    """What ``mlcd log compact`` did."""

    days: list[CompactedDay] = field(default_factory=list)
    #: replaced files deleted (this run's and leftovers of an interrupted one)
    deleted_files: int = 0
    leftovers_cleaned: int = 0
    dry_run: bool = False

    @property
    def compacted(self) -> list[CompactedDay]:
        return [d for d in self.days if d.status == "compacted"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "days": [d.to_dict() for d in self.days],
            "compacted": len(self.compacted),
            "segments_retired": sum(d.segments for d in self.compacted),
            "rows": sum(d.rows for d in self.compacted),
            "deleted_files": self.deleted_files,
            "leftovers_cleaned": self.leftovers_cleaned,
        }


def _groups(
    rows: Iterable[dict[str, Any]], before_day: str | None
) -> dict[tuple[str, int | None, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, int | None, str], list[dict[str, Any]]] = {}
    for row in rows:
        day = day_of(float(row["first_at"]))
        if day_of(float(row["last_at"])) != day:
            continue  # not written by a server (which splits by day): left alone
        if before_day is not None and day >= before_day:
            continue
        version = None if row["version"] is None else int(row["version"])
        groups.setdefault((str(row["model"]), version, day), []).append(row)
    return {k: v for k, v in groups.items() if len(v) > 1}


def _daily_path(first: str, model: str, version: int | None, day: str, ids: list[int]) -> str:
    """Beside the first segment: same folder or prefix, a name derived from what it holds."""
    from mlcd.digest import hash_bytes

    key = hash_bytes(",".join(map(str, sorted(ids))).encode()).hex[:16]
    folder = first.rsplit("/", 1)[0] if "/" in first else ""
    name = f"daily-{day}-v{'' if version is None else version}-{key}.parquet"
    return f"{folder}/{name}" if folder else name


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch with every column of ``schema`` (absent ones null), in its types."""
    import pyarrow as pa

    names = batch.schema.names
    arrays = [
        batch.column(names.index(f.name)).cast(f.type)
        if f.name in names
        else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _write_daily(root: Path, segments: list[dict[str, Any]], target: Location) -> tuple[int, str]:
    """Stream the segments into ``target``; returns (rows, digest).

    Raises:
        UsageError: the segments' columns cannot be merged into one schema.
        MonitorError: a segment cannot be read, or the target cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlcd.digest import hash_file
    from mlcd.logdata.segments import locate, open_dataset, scan

    opened = [(loc, open_dataset(loc)) for loc in (locate(root, str(s["path"])) for s in segments)]
    try:
        schema = pa.unify_schemas([d.schema for _, d in opened], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(f"their columns differ in type: {exc}") from exc
    schema = schema.remove_metadata()
    rows = 0
    local_dir = Path(target.path).parent if not target.remote else None
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".daily-", suffix=".tmp", dir=local_dir)
    os.close(handle)
    temp = Path(name)
    try:
        with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
            buffered: list[pa.RecordBatch] = []
            size = 0
            for location, dataset in opened:
                for batch in scan(location, None, dataset=dataset, batch_rows=ROW_GROUP_ROWS):
                    buffered.append(_conform(batch, schema))
                    size += batch.num_rows
                    rows += batch.num_rows
                    if size >= ROW_GROUP_ROWS:  # small segments make one row group together
                        writer.write_table(pa.Table.from_batches(buffered, schema), size)
                        buffered, size = [], 0
            if buffered:
                writer.write_table(pa.Table.from_batches(buffered, schema), size)
        digest = str(hash_file(temp))
        if target.remote:
            try:
                with temp.open("rb") as source, target.fs.open_output_stream(target.path) as out:
                    while chunk := source.read(8 << 20):
                        out.write(chunk)
            except Exception as exc:
                raise MonitorError(
                    f"cannot write the daily log file {target.display}: {exc}",
                    hint="check that the storage is reachable and writable",
                ) from exc
        else:
            with temp.open("rb+") as out:
                os.fsync(out.fileno())
            os.replace(temp, target.path)
    finally:
        temp.unlink(missing_ok=True)
    return rows, digest


def _delete(location: Location) -> bool:
    """Delete a file; False when it was already gone."""
    try:
        location.fs.delete_file(location.path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return False
        raise
    return True


def _finish_deletions(store: Store, root: Path, report: CompactReport) -> None:
    """Delete the replaced files every daily row still lists (this run's and leftovers)."""
    from mlcd.logdata.segments import locate
    from mlcd.store import predictions

    with store.read() as conn:
        pending = predictions.pending_deletions(conn)
    for row in pending:
        for path in row["replaces"]:
            with store.read() as conn:
                if predictions.is_registered(conn, path):
                    continue  # never delete a file a row points at
            if _delete(locate(root, path)):
                report.deleted_files += 1
        store.transact(partial(predictions.deletions_done, segment_id=row["id"]))


def compact_log(
    store: Store,
    root: str | Path,
    model: str | None = None,
    *,
    before: float | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CompactReport:
    """Merge each model/version/day's segments into one daily file (see the module docs).

    Args:
        store: the metadata store (the segment index).
        root: the project root local segment paths are relative to.
        model: only this model (all by default).
        before: only days before this time's UTC day (default: today, which servers are
            still writing).
        dry_run: report what would be merged, change nothing.
        progress: ``progress(step, done, total)`` per day.

    Raises:
        UsageError: no such model in the log.
    """
    from mlcd.logdata.segments import locate
    from mlcd.store import predictions

    root = Path(root)
    say = progress or (lambda *_args: None)
    cutoff = time.time() if before is None else before
    report = CompactReport(dry_run=dry_run)
    if not dry_run:
        _finish_deletions(store, root, report)
        report.leftovers_cleaned = report.deleted_files
    with store.read() as conn:
        rows = predictions.segments(conn, model=model)
    if model is not None and not rows:
        raise UsageError(
            f"the prediction log has no segments of model '{model}'",
            hint="check the name ('mlcd models list'); a model logs once it is served",
        )
    groups = _groups(rows, day_of(cutoff))
    for index, ((name, version, day), members) in enumerate(sorted(groups.items(), key=str)):
        say("compacting the prediction log", index, len(groups))
        ids = [int(m["id"]) for m in members]
        path = _daily_path(str(members[0]["path"]), name, version, day, ids)
        entry = CompactedDay(
            name, version, day, len(members), sum(int(m["rows"]) for m in members), path
        )
        report.days.append(entry)
        if dry_run:
            continue
        target = locate(root, path)
        try:
            written, digest = _write_daily(root, members, target)
        except UsageError as exc:
            entry.status, entry.reason = "skipped", exc.message
            continue
        except MonitorError as exc:  # a missing segment: never merge part of a day
            entry.status, entry.reason = "skipped", exc.message
            continue
        daily: dict[str, Any] = {
            "model": name,
            "version": version,
            "path": path,
            "rows": written,
            "first_at": min(float(m["first_at"]) for m in members),
            "last_at": max(float(m["last_at"]) for m in members),
            "digest": digest,
            "replaces": [str(m["path"]) for m in members],
        }
        try:
            entry.id = store.transact(partial(predictions.swap_segments, retire=ids, **daily))
        except predictions.SegmentsChanged as exc:
            entry.status, entry.reason = "skipped", f"changed meanwhile: {exc}"
            with store.read() as conn:
                if not predictions.is_registered(conn, path):
                    _delete(target)
            continue
        entry.status, entry.rows = "compacted", written
    say("compacting the prediction log", len(groups), len(groups))
    if not dry_run:
        _finish_deletions(store, root, report)
    return report


# ---------------------------------------------------------------- retention
@dataclass
class RetentionReport:
    """Segments older than the retention: dropped (or that would be)."""

    retention_s: float
    before: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    deleted_files: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "retention_s": self.retention_s,
            "before": self.before,
            "segments": len(self.segments),
            "rows": sum(int(s["rows"]) for s in self.segments),
            "paths": [s["path"] for s in self.segments],
            "deleted_files": self.deleted_files,
            "dry_run": self.dry_run,
        }


def expire_log(
    store: Store,
    root: str | Path,
    retention_s: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """Drop the segments whose newest row is older than ``retention_s``: rows first (one
    transaction), then their files (a crash in between leaves unregistered files, never a row
    pointing at nothing).
    """
    from mlcd.logdata.segments import locate
    from mlcd.store import predictions

    if retention_s <= 0:
        raise UsageError(f"the log retention must be positive (got {retention_s} s)")
    root = Path(root)
    before = (time.time() if now is None else now) - retention_s
    with store.read() as conn:
        expired = predictions.expired_segments(conn, before)
    report = RetentionReport(retention_s, before, expired, dry_run=dry_run)
    if dry_run or not expired:
        return report
    store.transact(lambda conn: predictions.remove_segments(conn, [int(s["id"]) for s in expired]))
    for segment in expired:
        paths = [str(segment["path"]), *(segment.get("replaces") or [])]
        for path in paths:
            if _delete(locate(root, path)):
                report.deleted_files += 1
    return report
