"""Production traffic as training data: the prediction log joined with its feedback labels.

The server logs every request to Parquet segments (``mlcd.serve.predlog``) and keeps the
ground truth clients send later in the ``feedback`` table (one label per request id: a
replaced label overwrites the old one). :func:`read_log_dataset` turns the two into one
table of *inputs as the model saw them*, the label, the time and the version that answered:

* only rows a model answered for real (``status == "ok"``): shadow copies, rejected and
  failed requests are left out;
* one row per request id (the first one logged; a client that re-sent an id with the same
  inputs gets one row);
* rows sorted by time, then request id, columns in a fixed order, so that the same log and
  the same labels always give byte-identical Parquet (:func:`write_dataset`), hence the
  same digest;
* a manifest of what was read — the segments (id, path, digest) that gave rows and a digest
  of the labels joined — travels in the file's metadata, so a dataset says where it came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest, hash_bytes
from mlcd.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from sqlalchemy import Connection

    from mlcd.store import Store

#: Columns the log adds around a request's inputs; of these a dataset keeps the first three.
META_COLUMNS = ("request_id", "ts", "version")
_DROPPED = ("model", "status", "error", "latency_ms", "prediction", "proba")
#: The key under which the manifest is stored in the Parquet schema metadata.
MANIFEST_KEY = b"mlcd.from_log"
_IN_CHUNK = 500


@dataclass(frozen=True)
class SegmentRead:
    """A prediction-log segment that gave rows to a dataset."""

    id: int
    path: str
    digest: str | None
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "digest": self.digest, "rows": self.rows}


@dataclass
class LogDataset:
    """Rows of the log joined with their labels, and the manifest of what was read."""

    model: str
    frame: pd.DataFrame
    label: str
    segments: list[SegmentRead] = field(default_factory=list)
    labels_joined: int = 0
    labels_digest: str = ""
    last_label_at: float | None = None
    #: rows of answered requests found before the label filter and sampling
    answered: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows in the dataset."""
        return len(self.frame)

    @property
    def features(self) -> list[str]:
        """The input columns (every column but the metadata and the label)."""
        return [c for c in self.frame.columns if c not in META_COLUMNS and c != self.label]

    def manifest(self) -> dict[str, Any]:
        """What was read, with nothing that changes from one identical call to the next."""
        ts = self.frame["ts"] if "ts" in self.frame.columns and len(self.frame) else None
        return {
            "model": self.model,
            "rows": self.rows,
            "label": self.label,
            "features": self.features,
            "first_at": None if ts is None else float(ts.min()),
            "last_at": None if ts is None else float(ts.max()),
            "segments": [s.to_dict() for s in self.segments],
            "labels": {
                "joined": self.labels_joined,
                "digest": self.labels_digest,
                "last_received_at": self.last_label_at,
            },
            "settings": dict(self.settings),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.manifest(), "answered": self.answered}


# ---------------------------------------------------------------- reading
def _segments(
    conn: Connection, model: str, since: float | None, until: float | None
) -> list[dict[str, Any]]:
    from mlcd.store.predictions import segments

    return segments(conn, model=model, since=since, until=until)


def _labels(conn: Connection, model: str, until: float | None) -> dict[str, tuple[Any, float]]:
    """``{request_id: (label, received_at)}`` for the model (and labels sent without a model)."""
    from sqlalchemy import or_, select

    from mlcd.store.tables import feedback as f

    stmt = select(f.c.request_id, f.c.label, f.c.received_at).where(
        or_(f.c.model == model, f.c.model.is_(None))
    )
    if until is not None:
        stmt = stmt.where(f.c.received_at <= until)
    return {str(r[0]): (r[1], float(r[2])) for r in conn.execute(stmt)}


def _read_segment(
    root: Path, segment: Mapping[str, Any], since: float | None, until: float | None
) -> pa.Table:
    """The answered rows of a segment inside ``[since, until)``, without the columns a dataset
    drops: projection and filters are pushed down to the Parquet reader."""
    import pyarrow as pa

    from mlcd.errors import MonitorError
    from mlcd.logdata.segments import SegmentMissing, inside, locate, open_dataset, scan

    location = locate(root, str(segment["path"]))
    whole = inside(segment.get("first_at"), segment.get("last_at"), since, until)
    try:
        dataset = open_dataset(location, whole=whole)
        columns = [c for c in dataset.schema.names if c not in _DROPPED]
        batches = list(
            scan(location, columns, start=since, end=until, status="ok", dataset=dataset)
        )
    except SegmentMissing as exc:
        raise UsageError(
            f"prediction log segment {segment['path']} (id {segment['id']}) is registered but "
            f"missing from {'storage' if location.remote else root}",
            hint="restore the file from a backup, or run from the project root the server "
            "logged into; a dataset is never built from part of the log silently",
        ) from exc
    except MonitorError as exc:
        raise UsageError(exc.message, hint=exc.hint) from exc
    schema = dataset.schema
    return pa.Table.from_batches(batches, schema=pa.schema([schema.field(c) for c in columns]))


def _label_series(values: Sequence[Any]) -> pd.Series:
    """Label values in one column type (numbers stay numbers; mixed values become text)."""
    import pandas as pd
    import pyarrow as pa

    try:
        array = pa.array(list(values), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pd.Series(array.to_pandas(), dtype=None)


def read_log_dataset(
    store: Store,
    root: str | Path,
    model: str,
    *,
    since: float | None = None,
    until: float | None = None,
    labelled_only: bool = False,
    sample: int | None = None,
    stratify: str | None = None,
    seed: int = 0,
    label: str = "label",
    progress: Callable[..., None] | None = None,
) -> LogDataset:
    """The prediction log of ``model`` joined with its feedback, as a training table.

    Args:
        store: the metadata store (prediction segments and feedback).
        root: the project root the segment paths are relative to.
        model: the model name.
        since: only predictions made at or after this time (epoch seconds).
        until: only predictions made before, and labels received at or before, this time.
        labelled_only: drop rows without a label.
        sample: keep this many rows, chosen by a seeded hash of the request id (so a growing
            log keeps the rows it had chosen before).
        stratify: with ``sample``, split it equally across this column's values; alone, keep
            as many rows of each value as the rarest value has.
        seed: the sample's seed.
        label: the name of the label column (the model's ``target``).
        progress: ``progress(step, done, total)`` while segments are read (rows).

    Returns:
        The dataset with its manifest.

    Raises:
        UsageError: bad arguments, a segment missing or damaged, or ``label`` clashing with
            an input column.
    """
    import pandas as pd
    import pyarrow as pa

    if sample is not None and sample <= 0:
        raise UsageError(f"--sample must be a positive number of rows (got {sample})")
    root = Path(root)
    say = progress or (lambda *_args: None)
    with store.read() as conn:
        registered = _segments(conn, model, since, until)
        labels = _labels(conn, model, until)
    import pyarrow.compute as pc

    tables: list[pa.Table] = []
    reads: list[SegmentRead] = []
    known = pa.array(list(labels), pa.string())
    total = sum(int(s["rows"]) for s in registered)
    done = 0
    for segment in registered:
        say("reading the prediction log", done, total)
        table = _read_segment(root, segment, since, until)
        done += int(segment["rows"])
        if labelled_only and table.num_rows:
            ids = table.column("request_id").cast(pa.string())
            table = table.filter(pc.fill_null(pc.is_in(ids, value_set=known), False))
        if not table.num_rows:
            continue
        tables.append(table)
        reads.append(
            SegmentRead(
                int(segment["id"]), str(segment["path"]), segment.get("digest"), table.num_rows
            )
        )
    if tables:
        merged = pa.concat_tables(tables, promote_options="permissive")
        frame = merged.to_pandas()
    else:
        frame = pd.DataFrame({"request_id": pd.Series([], dtype=object), "ts": [], "version": []})
    if label in frame.columns:
        raise UsageError(
            f"the label column {label!r} is also an input column of {model}'s log",
            hint="choose another label column name (--label NAME, or models.<name>.target)",
        )
    answered = len(frame)
    # One row per request id: the first one logged (stable sort keeps segment order on ties).
    frame = frame.sort_values(["ts"], kind="stable").drop_duplicates("request_id", keep="first")
    found = [labels.get(str(rid)) for rid in frame["request_id"]]
    frame = frame.assign(**{label: _label_series([f[0] if f else None for f in found]).values})
    if labelled_only:  # a boolean Series: an empty list would select no *columns*
        frame = frame[pd.Series([f is not None for f in found], index=frame.index, dtype=bool)]
    frame = _sample(frame, sample, stratify, seed)
    frame = frame.sort_values(["ts", "request_id"], kind="stable").reset_index(drop=True)
    features = sorted(c for c in frame.columns if c not in META_COLUMNS and c != label)
    frame = frame[[*META_COLUMNS, *features, label]]
    if "version" in frame.columns:
        frame["version"] = frame["version"].astype("Int64")
    ids = [str(r) for r in frame["request_id"]]
    joined = sorted((rid, labels[rid]) for rid in ids if rid in labels)
    labels_text = json.dumps([[rid, value[0]] for rid, value in joined], default=str)
    return LogDataset(
        model=model,
        frame=frame,
        label=label,
        segments=reads,
        labels_joined=len(joined),
        labels_digest=hash_bytes(labels_text.encode()).hex,
        last_label_at=max((v[1] for _, v in joined), default=None),
        answered=answered,
        settings={
            "labelled_only": labelled_only,
            "sample": sample,
            "stratify": stratify,
            "seed": seed,
        },
    )


def _sample(frame: pd.DataFrame, sample: int | None, stratify: str | None, seed: int) -> Any:
    """Rows chosen by the smallest seeded hashes of their request ids."""
    import pandas as pd

    if sample is None and stratify is None:
        return frame
    key = f"mlcd{seed:012d}"[-16:]
    order = pd.util.hash_pandas_object(
        frame["request_id"].astype(str), index=False, hash_key=key
    ).to_numpy()
    frame = frame.assign(_order=order)
    if stratify is None:
        assert sample is not None
        chosen = frame.nsmallest(min(sample, len(frame)), "_order", keep="first")
        return chosen.drop(columns="_order")
    if stratify not in frame.columns:
        raise UsageError(
            f"cannot stratify on {stratify!r}: no such column",
            hint=f"columns: {', '.join(map(str, frame.columns.drop('_order')))}",
        )
    groups = frame.groupby(frame[stratify].astype(str), sort=True, dropna=False)
    sizes = groups.size()
    if sample is None:
        per = {name: int(sizes.min()) for name in sizes.index}
    else:
        # Equal shares; a group smaller than its share gives the rest to the others.
        per, left, names = {}, sample, sorted(sizes.index, key=lambda n: (sizes[n], n))
        for position, name in enumerate(names):
            share = math.floor(left / (len(names) - position))
            per[name] = min(int(sizes[name]), share)
            left -= per[name]
    parts = [g.nsmallest(per[name], "_order", keep="first") for name, g in groups]
    out = pd.concat(parts) if parts else frame.iloc[:0]
    return out.drop(columns="_order")


# ---------------------------------------------------------------- writing
def to_arrow(dataset: LogDataset) -> pa.Table:
    """The dataset as an Arrow table with its manifest in the schema metadata."""
    import pyarrow as pa

    table = pa.Table.from_pandas(dataset.frame, preserve_index=False)
    manifest = json.dumps(dataset.manifest(), sort_keys=True, default=str).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), MANIFEST_KEY: manifest})


def write_dataset(dataset: LogDataset, path: str | Path) -> Digest:
    """Write the dataset as Parquet (temp file, then rename); returns the file's digest.

    The same rows and manifest always give the same bytes, so the same digest.
    """
    import os

    import pyarrow.parquet as pq

    from mlcd.digest import hash_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp")
    try:
        pq.write_table(to_arrow(dataset), temp, compression="zstd")
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
    return hash_file(target)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a dataset written by :func:`write_dataset` (None for other files)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(MANIFEST_KEY)
    return None if raw is None else dict(json.loads(raw))
