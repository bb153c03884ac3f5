"""Reading a source into a file of the project: SQL through SQLAlchemy, URLs through fsspec."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import hash_bytes, hash_file
from mlcd.errors import UsageError
from mlcd.secrets import mask_text, mask_url

if TYPE_CHECKING:
    import pyarrow as pa

    from mlcd.store import Store

BATCH_ROWS = 50_000
ROW_GROUP_ROWS = 500_000
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Fetched:
    """What a source wrote (or found unchanged)."""

    kind: str
    path: str
    digest: str
    changed: bool
    checked: str  # "read" | "fresh" (the cheap check said nothing moved)
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def expand_env(text: str, what: str) -> str:
    """``${NAME}`` filled from the environment (credentials live there, not in mlcd.yaml).

    Raises:
        UsageError: a named variable is not set.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise UsageError(
                f"{what} names ${{{name}}}, which is not set in the environment",
                hint=f"export {name}=... before running (credentials stay out of mlcd.yaml)",
            )
        return os.environ[name]

    return _ENV.sub(value, text)


def _state_key(path: str) -> str:
    return f"source:{path}"


def _recorded(store: Store, path: str) -> dict[str, Any]:
    from mlcd.store import state

    with store.read() as conn:
        value = state.get(conn, _state_key(path))
    return value if isinstance(value, dict) else {}


def _remember(store: Store, path: str, value: dict[str, Any]) -> None:
    from mlcd.store import state

    store.transact(lambda conn: state.put(conn, _state_key(path), value))


def _on_disk(root: Path, path: str, digest: str | None) -> bool:
    """Whether ``path`` still holds what was written (a file's or a folder's digest)."""
    if not digest:
        return False
    target = root / path
    if target.is_file():
        return hash_file(target).hex == digest
    if target.is_dir():
        return _folder_digest(target) == digest
    return False


def _folder_digest(folder: Path) -> str:
    entries = sorted(
        (p.relative_to(folder).as_posix(), hash_file(p).hex)
        for p in folder.rglob("*")
        if p.is_file()
    )
    return hash_bytes(json.dumps(entries).encode()).hex


def upstream_changed(store: Store, root: Path, item: Mapping[str, Any]) -> bool | None:
    """Whether the source moved since it was last read, by its cheap check alone (nothing is
    downloaded); None when there is no cheap check (a query without ``freshness``) or it was
    never read."""
    path = str(item["path"])
    recorded = _recorded(store, path)
    if not recorded.get("key"):
        return None
    if item["kind"] == "sql":
        if not item.get("freshness"):
            return None
        engine = _engine(item, root)
        try:
            fresh = _freshness(engine, item)
        finally:
            engine.dispose()
        key = hash_bytes(json.dumps([item["query"], fresh], default=str).encode()).hex
    else:
        fs, where = _filesystem(item)
        try:
            listing = _listing(fs, where)
        except FileNotFoundError:
            return True
        key = hash_bytes(json.dumps(listing, sort_keys=True, default=str).encode()).hex
    return bool(key != recorded["key"])


def materialize(store: Store, root: Path, item: Mapping[str, Any]) -> Fetched:
    """Write the source ``item`` (``kind`` ``sql`` or ``url``) to its ``path``."""
    if item["kind"] == "sql":
        return _sql(store, root, item)
    return _url(store, root, item)


# ---------------------------------------------------------------- SQL
def _engine(item: Mapping[str, Any], root: Path) -> Any:
    from sqlalchemy import create_engine

    raw = str(item["url"])
    url = expand_env(raw, f"source {item['path']}: url")
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith(":memory:"):
        file = Path(url[len(prefix) :].split("?")[0])
        if not file.is_absolute():
            file = root / file  # relative to the project, wherever mlcd runs from
            url = prefix + file.as_posix()
        if not file.is_file():  # SQLite would create an empty database and find no table
            raise UsageError(
                f"source {item['path']}: the SQLite database {file} does not exist",
                hint="create it (or fix the url); mlcd reads sources, it never creates them",
            )
    try:
        return create_engine(url)
    except Exception as exc:  # an unparsable URL or a missing driver
        raise UsageError(
            f"source {item['path']}: cannot use database URL {mask_url(raw)}: "
            f"{mask_text(str(exc), [url])}",
            hint="write a SQLAlchemy URL such as postgresql://user@host/db or sqlite:///file.db "
            "(credentials as ${NAME} from the environment)",
        ) from None


def _db_error(item: Mapping[str, Any], exc: Exception, what: str) -> UsageError:
    url = expand_env(str(item["url"]), "url")
    return UsageError(
        f"source {item['path']}: {what} failed on {mask_url(str(item['url']))}: "
        f"{mask_text(str(exc).splitlines()[0], [url])}",
        hint="check the query and that the database answers (the previous data and runs "
        "are untouched)",
    )


def _freshness(engine: Any, item: Mapping[str, Any]) -> Any:
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            value = conn.execute(text(str(item["freshness"]))).scalar()
    except Exception as exc:
        raise _db_error(item, exc, "the freshness query") from None
    return json.loads(json.dumps(value, default=str))


def _sql(store: Store, root: Path, item: Mapping[str, Any]) -> Fetched:
    path = str(item["path"])
    engine = _engine(item, root)
    try:
        fresh = _freshness(engine, item) if item.get("freshness") else None
        recorded = _recorded(store, path)
        key = hash_bytes(json.dumps([item["query"], fresh], default=str).encode()).hex
        if (
            fresh is not None
            and recorded.get("key") == key
            and _on_disk(root, path, recorded.get("digest"))
        ):
            return Fetched(
                "sql", path, str(recorded["digest"]), False, "fresh", recorded.get("rows")
            )
        digest, rows, changed = _write_parquet(root / path, _query_batches(engine, item))
    finally:
        engine.dispose()
    _remember(store, path, {"key": key, "digest": digest, "rows": rows})
    return Fetched("sql", path, digest, changed, "read", rows)


def _query_batches(engine: Any, item: Mapping[str, Any]) -> Iterator[pa.RecordBatch]:
    """The query's rows as Arrow batches, streamed (server-side cursor where there is one)."""
    import gc

    import pyarrow as pa

    collecting = gc.isenabled()
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        copied = _postgres_copy(engine, str(item["query"]))
        if copied is not None:  # every column of a type COPY's text renders exactly
            try:
                yield from copied
            except UsageError:
                raise
            except Exception as exc:
                raise _db_error(item, exc, "the query") from None
            return
    if engine.dialect.name != "postgresql":
        stream = _sqlalchemy_rows(engine, str(item["query"]))
    else:  # the driver's own server-side cursor: tuples without SQLAlchemy's Row objects
        stream = _postgres_rows(engine, str(item["query"]))
    try:
        columns = next(stream)
        yielded = False
        # Millions of short-lived row tuples, none in a cycle: the cyclic collector would
        # scan them again and again (measured: about half of a 5 M-row read).
        gc.disable()
        for rows in stream:
            arrays = [pa.array(list(values)) for values in zip(*rows, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, names=columns)
            yielded = True
        if not yielded:
            yield pa.RecordBatch.from_pylist(
                [], schema=pa.schema([(c, pa.null()) for c in columns])
            )
    except UsageError:
        raise
    except Exception as exc:
        raise _db_error(item, exc, "the query") from None
    finally:
        if collecting:
            gc.enable()


#: PostgreSQL type OIDs whose CSV text pyarrow reads back exactly, and their Arrow types
_COPY_TYPES = {
    16: "bool",
    20: "int64",
    21: "int16",
    23: "int32",
    700: "float32",
    701: "float64",
    25: "string",
    1043: "string",
    1042: "string",
    1082: "date32",
    1114: "timestamp[us]",
}


class _Chunks:
    """A read-only file over an iterator of byte chunks (what pyarrow's CSV reader pulls)."""

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._parts: list[bytes] = []
        self._held = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        while size < 0 or self._held < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._parts.append(bytes(chunk))
            self._held += len(chunk)
        data = b"".join(self._parts)
        out, rest = (data, b"") if size < 0 else (data[:size], data[size:])
        self._parts = [rest] if rest else []
        self._held = len(rest)
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _postgres_copy(engine: Any, query: str) -> Iterator[pa.RecordBatch] | None:
    """``COPY (query) TO STDOUT`` streamed into pyarrow's CSV reader with the query's column
    types, or None when a column has a type its CSV text would not give back exactly."""
    import pyarrow as pa
    import pyarrow.csv as csv

    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"select * from ({query}) as mlcd_source limit 0")
        description = list(cursor.description or [])
        raw.rollback()
    except Exception:
        raw.close()
        raise
    types = [_COPY_TYPES.get(int(d.type_code)) for d in description]
    names = [d.name for d in description]
    if not names or None in types or len(set(names)) != len(names):
        raw.close()
        return None
    schema = {n: pa.type_for_alias(t) for n, t in zip(names, types, strict=True)}

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            with raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                chunks = iter(copy)
                first = next(chunks, None)
                if first is None:  # no rows: the query's columns, empty
                    yield pa.RecordBatch.from_pylist([], schema=pa.schema(list(schema.items())))
                    return
                reader = csv.open_csv(
                    _Chunks(itertools.chain([first], chunks)),
                    read_options=csv.ReadOptions(column_names=names, block_size=1 << 22),
                    convert_options=csv.ConvertOptions(
                        column_types=schema,
                        strings_can_be_null=True,  # an unquoted empty field is NULL
                        quoted_strings_can_be_null=False,  # "" is the empty string
                        true_values=["t"],
                        false_values=["f"],
                    ),
                )
                yield from reader
            raw.rollback()
        finally:
            raw.close()

    return batches()


def _sqlalchemy_rows(engine: Any, query: str) -> Iterator[Any]:
    """The column names, then lists of row tuples (SQLAlchemy, streaming where it can)."""
    from sqlalchemy import text

    with engine.connect().execution_options(stream_results=True) as conn:
        result = conn.execute(text(query))
        yield list(result.keys())
        for rows in result.partitions(BATCH_ROWS):
            yield [tuple(r) for r in rows]


def _postgres_rows(engine: Any, query: str) -> Iterator[Any]:
    """The column names, then lists of row tuples from a named (server-side) cursor."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor(name="mlcd_source")
        try:
            cursor.execute(query)
            rows = cursor.fetchmany(BATCH_ROWS)
            yield [d[0] for d in cursor.description]
            while rows:
                yield rows
                rows = cursor.fetchmany(BATCH_ROWS)
        finally:
            cursor.close()
        raw.rollback()
    finally:
        raw.close()


def _write_parquet(target: Path, batches: Iterator[pa.RecordBatch]) -> tuple[str, int, bool]:
    """Stream batches into a Parquet file next to ``target``; replace it only if the bytes
    differ. Returns (digest, rows, changed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temp = Path(name)
    rows = 0
    writer = None
    pending: list[pa.RecordBatch] = []

    def flush() -> None:
        # Row groups of about half a million rows: a smaller file than one group per batch,
        # memory still bounded by the rows held.
        if pending and writer is not None:
            writer.write_table(pa.Table.from_batches(pending, schema=writer.schema))
            pending.clear()

    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(temp, batch.schema, compression="zstd")
            elif batch.schema != writer.schema:
                batch = pa.Table.from_batches([batch]).cast(writer.schema).to_batches()[0]
            pending.append(batch)
            rows += batch.num_rows
            if sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS:
                flush()
        flush()
        if writer is not None:
            writer.close()
        digest = hash_file(temp).hex
        if target.is_file() and hash_file(target).hex == digest:
            return digest, rows, False
        with open(temp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(temp, target)
        return digest, rows, True
    finally:
        temp.unlink(missing_ok=True)


# ---------------------------------------------------------------- URLs (fsspec)
def _url(store: Store, root: Path, item: Mapping[str, Any]) -> Fetched:

    path = str(item["path"])
    raw = str(item["url"])
    url = expand_env(raw, f"source {path}: url")
    try:
        fs, where = _filesystem(item)
        listing = _listing(fs, where)
    except FileNotFoundError:
        raise UsageError(
            f"source {path}: nothing at {mask_url(raw)}",
            hint="check the URL (a file or a prefix ending with /)",
        ) from None
    except Exception as exc:
        raise UsageError(
            f"source {path}: cannot list {mask_url(raw)}: {mask_text(str(exc), [url])}",
            hint="check the URL, the credentials in the environment and the options",
        ) from None
    key = hash_bytes(json.dumps(listing, sort_keys=True, default=str).encode()).hex
    recorded = _recorded(store, path)
    if recorded.get("key") == key and _on_disk(root, path, recorded.get("digest")):
        return Fetched("url", path, str(recorded["digest"]), False, "fresh")
    target = root / path
    single = len(listing) == 1 and listing[0][0] == ""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=_parent(target)))
    try:
        if single:
            fs.get_file(where, str(staging / "file"))
            fetched = staging / "file"
            digest = hash_file(fetched).hex
        else:
            for relative, _info in listing:
                dest = staging / "dir" / relative
                dest.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(f"{where.rstrip('/')}/{relative}", str(dest))
            fetched = staging / "dir"
            fetched.mkdir(exist_ok=True)
            digest = _folder_digest(fetched)
        changed = not _on_disk(root, path, digest)
        if changed:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(fetched, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remember(store, path, {"key": key, "digest": digest})
    return Fetched("url", path, digest, changed, "read")


def _filesystem(item: Mapping[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem and path of a ``url`` source, ``${NAME}`` filled in."""
    import fsspec

    path = str(item["path"])
    url = expand_env(str(item["url"]), f"source {path}: url")
    options = _expand_all(dict(item.get("options") or {}), f"source {path}: options")
    fs, where = fsspec.core.url_to_fs(url, **options)
    return fs, str(where)


def _expand_all(value: Any, what: str) -> Any:
    """``${NAME}`` filled in every string of nested options."""
    if isinstance(value, str):
        return expand_env(value, what)
    if isinstance(value, dict):
        return {k: _expand_all(v, f"{what}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_all(v, what) for v in value]
    return value


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _listing(fs: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """``[(relative path, {size, etag/mtime})]`` of a file (relative "") or of a prefix."""
    info = fs.info(where)
    if info.get("type") != "directory":
        return [("", _cheap(info))]
    found = fs.find(where, detail=True)
    base = where.rstrip("/") + "/"
    out = []
    for name, detail in sorted(found.items()):
        if detail.get("type") == "directory":
            continue
        relative = name[len(base) :] if name.startswith(base) else name.rsplit("/", 1)[-1]
        out.append((relative, _cheap(detail)))
    if not out:
        raise FileNotFoundError(where)
    return out


def _cheap(info: Mapping[str, Any]) -> dict[str, Any]:
    """What says an object changed without reading it: size and ETag (or mtime)."""
    keep = {"size": info.get("size")}
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "md5"):
        if key in info:
            keep[key] = str(info[key])
    return keep
