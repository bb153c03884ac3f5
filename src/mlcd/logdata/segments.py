"""Prediction-log segments wherever they are: a path under the project or an fsspec URL.

The server registers each segment in ``prediction_segments.path``: a path relative to the
project root for a local log, the full URL (``s3://bucket/prefix/...``) for a log on object
storage. Everything that reads the log goes through :func:`locate` and :func:`scan`, so the
same code reads both: pyarrow datasets over the segment's filesystem (fsspec's, wrapped for
Arrow), with only the columns asked for and the time/version filters pushed down to the
Parquet reader (row groups outside the window are skipped from their statistics).

Credentials and endpoints of a remote log come from the environment, as for every fsspec
user (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...).

A remote segment read from start to end (``open_dataset(..., whole=True)``: the monitor and
the dataset builder, for a segment whose registered time range lies inside the window) is
fetched with one GET of the whole object when it is no larger than
``MLCD_LOG_WHOLE_READ_MAX`` bytes (default 256 MiB; 0 turns it off), and parsed from memory
with the same projection and row-group pruning: a ranged reader sends requests for the
footer and for the column chunks of each row group (ten GETs and four HEADs for a
500,000-row daily file), each paying the storage's latency, and on an S3 server that reads
the whole object for any range (moto) the full object's cost. The buffer lives while the segment is scanned, so a
reader holds at most one object per segment it reads at once. Larger objects, and
``mlcd log compact`` (which opens every segment it merges at once), keep ranged reads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.errors import ConfigError, MonitorError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

#: fsspec protocol -> the mlcd extra that installs its driver
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def is_url(path: str) -> bool:
    """Whether a registered segment path is a URL (else a path, relative to the root)."""
    return "://" in path


@dataclass(frozen=True)
class Location:
    """A segment file on a filesystem Arrow can read."""

    #: a ``pyarrow.fs.FileSystem``
    fs: Any
    #: the path inside ``fs``
    path: str
    #: for messages: the URL or the local path
    display: str
    remote: bool = False


class SegmentMissing(MonitorError):
    """A registered segment whose file is not there."""


_FILESYSTEMS: dict[str, Any] = {}
_FS_LOCK = threading.Lock()


def _handler(fs: Any) -> Any:
    """Arrow's adapter for an fsspec filesystem, reading without fsspec's read-ahead cache:
    Arrow asks for exactly the column chunks it needs (and coalesces them), so a cache
    would fetch the projected-out columns too, and hold them in memory."""
    from pyarrow.fs import FSSpecHandler

    class Handler(FSSpecHandler):  # type: ignore[misc]
        def open_input_file(self, path: str) -> Any:
            from pyarrow import PythonFile

            try:  # no separate existence check: opening a missing file raises anyway
                handle = self.fs.open(path, mode="rb", cache_type="none")
            except TypeError:  # a filesystem without cache types
                handle = self.fs.open(path, mode="rb")
            return PythonFile(handle, mode="r")

    return Handler(fs)


#: ``fsspec`` reads ``s3://`` logs through s3fs instead of Arrow's own S3 client.
S3_CLIENT_ENV = "MLCD_LOG_S3_CLIENT"


def _native_s3(url: str) -> tuple[Any, str] | None:
    """Arrow's C++ S3 client for an ``s3://`` URL (about half the CPU of s3fs per byte read,
    outside the GIL), configured from the environment as boto3 and s3fs are
    (``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, the credential chain);
    None when the URL is not S3, ``MLCD_LOG_S3_CLIENT=fsspec`` asks for s3fs, or this
    pyarrow has no S3 support."""
    import os

    protocol, _, rest = url.partition("://")
    if protocol.lower() not in ("s3", "s3a") or os.environ.get(S3_CLIENT_ENV, "") == "fsspec":
        return None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = ("native-s3", endpoint, region)
    with _FS_LOCK:
        fs = _FILESYSTEMS.get(str(key))
        if fs is None:
            try:
                from pyarrow.fs import S3FileSystem
            except ImportError:
                return None
            options: dict[str, Any] = {}
            if endpoint:
                scheme, _, host = endpoint.partition("://")
                options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
            if region:
                options["region"] = region
            try:
                fs = S3FileSystem(**options)
            except Exception:  # an S3 client Arrow cannot build: read through s3fs
                return None
            _FILESYSTEMS[str(key)] = fs
    return fs, rest


def _remote_fs(url: str) -> tuple[Any, str]:
    native = _native_s3(url)
    if native is not None:
        return native
    import fsspec
    from pyarrow.fs import PyFileSystem

    protocol = url.split("://", 1)[0].lower()
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol, protocol)
        raise ConfigError(
            f"the prediction log at {url} needs a driver for {protocol}:// ({exc.name or exc})",
            hint=f"pip install 'mlcd[{extra}]'",
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"cannot read the prediction log at {url}: {exc}",
            hint="a segment path is a folder path or an fsspec URL (s3://bucket/prefix/...)",
        ) from exc
    with _FS_LOCK:
        wrapped = _FILESYSTEMS.get(protocol)
        if wrapped is None or wrapped.handler.fs is not fs:
            wrapped = PyFileSystem(_handler(fs))
            _FILESYSTEMS[protocol] = wrapped
    return wrapped, path


def locate(root: str | Path, path: str) -> Location:
    """Where a registered segment path points: under ``root``, absolute, or a URL.

    Raises:
        ConfigError: a URL whose filesystem driver is not installed.
    """
    if is_url(path) and not path.startswith("file://"):
        fs, inner = _remote_fs(path)
        return Location(fs, inner, path, remote=True)
    from pyarrow.fs import LocalFileSystem

    local = Path(path.removeprefix("file://"))
    full = local if local.is_absolute() else Path(root) / local
    return Location(LocalFileSystem(), str(full), str(full))


def _unreachable(location: Location, exc: BaseException) -> MonitorError:
    return MonitorError(
        f"prediction log segment {location.display} cannot be read: {type(exc).__name__}: {exc}",
        hint="check that the storage is reachable and the credentials are set "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for an S3-compatible "
        "server)"
        if location.remote
        else "the file is damaged or unreadable; move it away and delete its row from "
        "prediction_segments, or restore it from a backup",
    )


#: Remote segments up to this many bytes are fetched whole (one GET) to be read from start to end.
WHOLE_READ_ENV = "MLCD_LOG_WHOLE_READ_MAX"
DEFAULT_WHOLE_READ_MAX = 256 * 1024 * 1024


def whole_read_max() -> int:
    """The largest remote segment fetched with one whole-object GET (bytes; 0: never).

    Raises:
        ConfigError: ``MLCD_LOG_WHOLE_READ_MAX`` is not a number of bytes.
    """
    import os

    raw = os.environ.get(WHOLE_READ_ENV, "").strip()
    if not raw:
        return DEFAULT_WHOLE_READ_MAX
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"{WHOLE_READ_ENV}={raw!r} is not a number of bytes",
            hint=f"a whole number such as {DEFAULT_WHOLE_READ_MAX} (256 MiB), or 0 to read "
            "every remote segment with ranged requests",
        )
    return value


def inside(first_at: Any, last_at: Any, start: float | None, end: float | None) -> bool:
    """Whether a segment's registered time range lies inside ``[start, end)``: read whole,
    none of its row groups would be pruned, so it is worth one whole-object GET (a segment
    the window cuts keeps ranged reads of the row groups that can hold window rows)."""
    if first_at is None or last_at is None:
        return start is None and end is None
    return (start is None or float(first_at) >= start) and (end is None or float(last_at) < end)


def _missing(location: Location, exc: BaseException) -> SegmentMissing:
    return SegmentMissing(
        f"prediction log segment {location.display} is registered but missing",
        hint="restore the file from a backup, or delete its row from prediction_segments",
    )


def _damaged(location: Location, exc: BaseException) -> MonitorError:
    return MonitorError(
        f"prediction log segment {location.display} cannot be read: it is not a readable "
        f"Parquet file ({exc})",
        hint="the object is damaged or was overwritten; restore it from a backup, or delete "
        "its row from prediction_segments",
    )


def _whole(location: Location, limit: int) -> pa.Buffer | None:
    """The object's bytes with one GET (after the HEAD that gives its size), or None when it
    is larger than ``limit``."""
    with location.fs.open_input_file(location.path) as handle:
        size = handle.size()
        if size > limit:
            return None
        data: pa.Buffer = handle.read_buffer(size)
    if data.size != size:
        raise OSError(f"read {data.size} of {size} bytes")
    return data


def _buffered(location: Location, limit: int) -> ds.Dataset | None:
    """The segment as a dataset over its bytes in memory (None: larger than ``limit``)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        data = _whole(location, limit)
    except Exception as exc:  # Arrow's or the driver's error for a missing key, or any other
        if _is_missing(exc):
            raise _missing(location, exc) from exc
        raise _unreachable(location, exc) from exc
    if data is None:
        return None
    form = ds.ParquetFileFormat()
    try:
        fragment = form.make_fragment(data)
        schema = fragment.physical_schema  # parses the footer
    except (pa.ArrowInvalid, OSError) as exc:
        raise _damaged(location, exc) from exc
    return ds.FileSystemDataset([fragment], schema, form)


def open_dataset(location: Location, *, whole: bool = False) -> ds.Dataset:
    """The segment as a pyarrow dataset (reads the Parquet footer only).

    With ``whole`` (a caller about to read the segment from start to end), a remote segment
    no larger than :func:`whole_read_max` is fetched with one GET and read from memory.

    Raises:
        SegmentMissing: the file is not there.
        MonitorError: the storage cannot be reached or the file is not Parquet.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    if whole and location.remote:
        limit = whole_read_max()
        if limit > 0:
            buffered = _buffered(location, limit)
            if buffered is not None:
                return buffered
    try:
        return ds.dataset(location.path, filesystem=location.fs, format="parquet")
    except FileNotFoundError as exc:
        raise _missing(location, exc) from exc
    except Exception as exc:  # driver errors (botocore, aiohttp) and Arrow's own
        if _is_missing(exc):
            raise _missing(location, exc) from exc
        if isinstance(exc, pa.ArrowInvalid):  # read, but not Parquet
            raise _damaged(location, exc) from exc
        raise _unreachable(location, exc) from exc


def _is_missing(exc: BaseException) -> bool:
    text = str(exc)
    return (
        isinstance(exc, FileNotFoundError)
        or "NoSuchKey" in text
        or "Not Found" in text
        or "Path does not exist" in text  # Arrow's own S3 client
    )


def filter_expression(
    names: Sequence[str],
    start: float | None = None,
    end: float | None = None,
    version: int | None = None,
    status: str | None = None,
) -> Any:
    """The pushed-down predicate ``start <= ts < end``, ``version == v``, ``status == s`` on
    the columns the segment has (None when nothing applies)."""
    import pyarrow.dataset as ds

    parts = []
    if "ts" in names:
        if start is not None:
            parts.append(ds.field("ts") >= start)
        if end is not None:
            parts.append(ds.field("ts") < end)
    if version is not None and "version" in names:
        parts.append(ds.field("version") == version)
    if status is not None and "status" in names:
        parts.append(ds.field("status") == status)
    expression = None
    for part in parts:
        expression = part if expression is None else expression & part
    return expression


def scan(
    location: Location,
    columns: Iterable[str] | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    version: int | None = None,
    status: str | None = None,
    batch_rows: int = 131_072,
    dataset: ds.Dataset | None = None,
) -> Iterator[pa.RecordBatch]:
    """The segment's rows in record batches: only ``columns`` (those it has), only rows
    inside the window, of the version and status asked for.

    Raises:
        SegmentMissing: the file is not there.
        MonitorError: the storage cannot be reached or the file is damaged.
    """
    data = dataset if dataset is not None else open_dataset(location)
    names = data.schema.names
    wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in names]
    where = filter_expression(names, start, end, version, status)
    try:
        # A small read-ahead: the caller's own thread reads ahead too (``prefetch``).
        batches = data.to_batches(
            columns=wanted, filter=where, batch_size=batch_rows, batch_readahead=2,
            fragment_readahead=1,
        )  # fmt: skip
        for batch in batches:
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


_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """Run ``items`` in a thread, ``depth`` items ahead of the consumer (bounded memory):
    reading the next batches from storage overlaps with summarising the current ones.
    An exception in the producer is raised in the consumer."""
    box: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            box.put(exc)

    thread = threading.Thread(target=produce, name="mlcd-log-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get_nowait()
            except queue.Empty:
                thread.join(0.05)
