"""Data windows: learning from production without forgetting what came before.

Two kinds of window are recorded per model (``mlcd.store.windows``), the data kept in the
object store by digest:

* ``eval`` — the held-out data a version was evaluated on when it was registered. The
  no-forgetting gate scores a candidate against the champion on every such window, not only
  on the newest one (backward transfer next to the forward gain).
* ``train`` — the rows of the prediction log a retrain took as *new* (a ``from_log`` input
  with ``replay``). The next retrain gets the rows no window had yet, plus a bounded replay
  sample of the older windows: new knowledge, and a memory of the old.

Everything here is deterministic: the same log, labels and windows give byte-identical files,
so a retrain that sees nothing new restores from the run cache.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.digest import Digest, hash_file
from mlcd.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from mlcd.config import FromLog
    from mlcd.objects import ObjectStore
    from mlcd.store import Store

REPLAY_KEY = b"mlcd.replay"


@dataclass(frozen=True)
class Window:
    """A recorded window (a row of ``data_windows``)."""

    id: int
    model: str
    role: str
    name: str
    digest: str
    rows: int
    first_at: float | None = None
    last_at: float | None = None
    version: int | None = None
    source: str | None = None
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Window:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _read(path: str | os.PathLike[str]) -> pd.DataFrame:
    from mlcd.logdata.tables import read_table

    frame: pd.DataFrame = read_table(path, "window data")
    return frame


def _time_range(frame: pd.DataFrame) -> tuple[float | None, float | None]:
    if "ts" not in frame.columns or not len(frame):
        return None, None
    return float(frame["ts"].min()), float(frame["ts"].max())


def record_window(
    store: Store,
    objects: ObjectStore,
    model: str,
    path: str | os.PathLike[str],
    *,
    role: str = "eval",
    name: str | None = None,
    version: int | None = None,
    source: str | None = None,
) -> tuple[Window, bool]:
    """Store a data file as a window of ``model``; ``(window, created)``.

    The same content recorded again returns the existing window (nothing is duplicated).

    Raises:
        UsageError: the file does not exist or cannot be read as a table.
    """
    from mlcd.store.windows import add_window

    target = Path(path)
    if not target.is_file():
        raise UsageError(
            f"cannot record {target} as a data window: not a file",
            hint="a window is one table file (Parquet, CSV or JSON lines)",
        )
    frame = _read(target)
    digest = str(objects.put_file(target))
    first, last = _time_range(frame)
    row, created = store.transact(
        lambda conn: add_window(
            conn,
            model=model,
            role=role,
            name=name or target.name,
            digest=digest,
            rows=len(frame),
            first_at=first,
            last_at=last,
            version=version,
            source=source or str(path),
        )
    )
    return Window.from_row(row), created


def list_windows(store: Store, model: str, role: str | None = None) -> list[Window]:
    """The model's windows, oldest first."""
    from mlcd.store.windows import list_windows as rows

    with store.read() as conn:
        return [Window.from_row(r) for r in rows(conn, model, role)]


def window_frame(objects: ObjectStore, window: Window) -> pd.DataFrame:
    """The window's rows, read from the object store (verified by digest)."""
    suffix = Path(window.name).suffix or ".parquet"
    with tempfile.TemporaryDirectory(prefix="mlcd-window-") as folder:
        target = Path(folder) / f"window{suffix}"
        objects.get_file(Digest(window.digest), target)
        return _read(target)


# ---------------------------------------------------------------- from_log inputs
@dataclass
class Materialized:
    """What a ``from_log`` input wrote before its stage ran."""

    model: str
    path: str
    digest: str
    rows: int
    changed: bool
    window: Window | None = None
    new_window: bool = False
    replay_path: str | None = None
    replay_digest: str | None = None
    replay_rows: int = 0
    replay_windows: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["window"] = None if self.window is None else self.window.to_dict()
        return out


def write_if_changed(table: pa.Table, target: Path) -> tuple[str, bool]:
    """Write ``table`` as Parquet to ``target`` unless the file already has these bytes.

    Returns the file's digest and whether it was (re)written. An unchanged file keeps its
    mtime, so the stat cache and the run cache see it as the same dep.
    """
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    temp = Path(name)
    try:
        pq.write_table(table, temp, compression="zstd")
        digest = hash_file(temp)
        if target.is_file() and hash_file(target).hex == digest.hex:
            return digest.hex, False
        with open(temp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(temp, target)
        return digest.hex, True
    finally:
        temp.unlink(missing_ok=True)


def materialize(
    store: Store,
    objects: ObjectStore,
    root: Path,
    spec: FromLog,
    *,
    label: str,
    path: str,
    replay_path: str | None = None,
    now: float | None = None,
) -> Materialized:
    """Write a ``from_log`` input (and its replay sample) for a stage about to be judged.

    Without ``replay``: the whole labelled log (``spec`` filters) at ``path``. With it: the
    rows no ``train`` window holds yet become a new window (recorded, stored by digest) and
    are written at ``path``; with nothing new, the newest window is written again (same
    bytes). ``replay_path`` gets a sample of the older windows (:func:`replay_sample`).
    """
    import time

    from mlcd.durations import parse_since
    from mlcd.logdata.dataset import read_log_dataset, to_arrow

    key = None if spec.since else _log_state(store, spec, label)
    unchanged = _unchanged(store, root, key, path, replay_path, spec.model)
    if unchanged is not None:
        return unchanged
    since = parse_since(spec.since, now or time.time()) if spec.since else None
    dataset = read_log_dataset(
        store,
        root,
        spec.model,
        since=since,
        labelled_only=spec.labelled_only,
        sample=spec.sample,
        stratify=spec.stratify,
        seed=spec.seed,
        label=label,
    )
    target = root / path
    if spec.replay is None:
        digest, changed = write_if_changed(to_arrow(dataset), target)
        _remember(store, key, path, digest, dataset.rows, None)
        return Materialized(spec.model, path, digest, dataset.rows, changed)
    assert replay_path is not None
    windows = list_windows(store, spec.model, "train")
    seen: set[str] = set()
    frames: list[tuple[Window, pd.DataFrame]] = []
    for window in windows:
        frame = window_frame(objects, window)
        frames.append((window, frame))
        seen.update(str(r) for r in frame.get("request_id", []))
    fresh = dataset.frame[~dataset.frame["request_id"].astype(str).isin(seen)]
    newest: Window | None = windows[-1] if windows else None
    created = False
    if len(fresh):
        dataset.frame = fresh.reset_index(drop=True)
        digest, changed = write_if_changed(to_arrow(dataset), target)
        newest, created = record_window(
            store,
            objects,
            spec.model,
            target,
            role="train",
            name=f"{spec.model}-train-{len(windows) + 1}.parquet",
            source=f"from_log:{spec.model}",
        )
        if created:
            frames.append((newest, dataset.frame))
    elif newest is not None:
        digest, changed = _restore(objects, newest, target)
    else:  # nothing labelled yet: an empty table with the log's columns
        digest, changed = write_if_changed(to_arrow(dataset), target)
    older = [(w, f) for w, f in frames if newest is None or w.id != newest.id]
    memory = replay_sample(
        [f for _, f in older], spec.replay.size, spec.replay.mix, spec.replay.seed
    )
    if not len(memory.columns) and len(dataset.frame.columns):
        memory = dataset.frame.iloc[:0]
    replay_table = _with_metadata(
        memory,
        {
            "windows": [w.id for w, _ in older],
            "size": spec.replay.size,
            "mix": spec.replay.mix,
            "seed": spec.replay.seed,
        },
    )
    replay_digest, _ = write_if_changed(replay_table, root / replay_path)
    rows = newest.rows if newest is not None and not len(fresh) else len(dataset.frame)
    if created:  # the key covered the windows before this one: take it again
        key = _log_state(store, spec, label)
    _remember(store, key, path, digest, rows, replay_digest)
    return Materialized(
        spec.model,
        path,
        digest,
        rows,
        changed,
        newest,
        created,
        replay_path,
        replay_digest,
        len(memory),
        [w.id for w, _ in older],
    )


def _log_state(store: Store, spec: FromLog, label: str) -> str:
    """A digest of everything a from_log input depends on, read with three cheap queries: the
    log's segments, the label count and newest label time, and the recorded train windows."""
    import json

    from mlcd.digest import hash_bytes
    from mlcd.store import predictions
    from mlcd.store.windows import list_windows as window_rows

    with store.read() as conn:
        segments = [
            [s["id"], s["digest"], s["rows"]] for s in predictions.segments(conn, model=spec.model)
        ]
        labels = predictions.feedback_state(conn, spec.model)
        windows = [w["id"] for w in window_rows(conn, spec.model, "train")]
    document = [spec.model_dump(), label, segments, labels, windows]
    return hash_bytes(json.dumps(document, sort_keys=True, default=str).encode()).hex


def _state_key(path: str) -> str:
    return f"from_log:{path}"


def _unchanged(
    store: Store, root: Path, key: str | None, path: str, replay_path: str | None, model: str
) -> Materialized | None:
    """The last materialisation, when the log, labels and windows did not move since and the
    files on disk are still the ones written then (else None: build again)."""
    from mlcd.store import state

    if key is None:
        return None
    with store.read() as conn:
        last = state.get(conn, _state_key(path))
    if not isinstance(last, dict) or last.get("key") != key:
        return None
    files = [(path, last.get("digest"))]
    if replay_path is not None:
        files.append((replay_path, last.get("replay_digest")))
    for relative, digest in files:
        target = root / relative
        if not digest or not target.is_file() or hash_file(target).hex != digest:
            return None
    return Materialized(
        model,
        path,
        str(last["digest"]),
        int(last.get("rows", 0)),
        False,
        replay_path=replay_path,
        replay_digest=last.get("replay_digest"),
    )


def _remember(
    store: Store, key: str | None, path: str, digest: str, rows: int, replay_digest: str | None
) -> None:
    from mlcd.store import state

    if key is None:
        return
    value = {"key": key, "digest": digest, "rows": rows, "replay_digest": replay_digest}
    store.transact(lambda conn: state.put(conn, _state_key(path), value))


def _restore(objects: ObjectStore, window: Window, target: Path) -> tuple[str, bool]:
    if target.is_file() and hash_file(target).hex == window.digest:
        return window.digest, False
    objects.get_file(Digest(window.digest), target)
    return window.digest, True


def _with_metadata(frame: pd.DataFrame, info: dict[str, Any]) -> pa.Table:
    import json

    import pyarrow as pa

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    raw = json.dumps(info, sort_keys=True).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), REPLAY_KEY: raw})


def replay_sample(
    frames: Sequence[pd.DataFrame], size: int, mix: str = "uniform", seed: int = 0
) -> pd.DataFrame:
    """A bounded, deterministic memory of past windows.

    ``uniform``: the ``size`` rows with the smallest seeded hash over all windows — the same
    rows a reservoir sample would keep, and a growing history keeps the rows it had chosen.
    ``per_window``: an equal share of ``size`` for each window (a small window gives what it
    has; the rest goes to the others), so an old regime keeps its weight.

    Rows are keyed by ``request_id`` when the frames have one, else by their content.
    """
    import math

    import pandas as pd

    parts = [f for f in frames if len(f)]
    if not parts:
        return pd.DataFrame()
    keyed = [_keyed(f, seed).assign(_window=i) for i, f in enumerate(parts)]
    if mix == "uniform":
        chosen = pd.concat(keyed).nsmallest(min(size, sum(map(len, keyed))), "_order")
    elif mix == "per_window":
        order = sorted(range(len(keyed)), key=lambda i: (len(keyed[i]), i))
        shares: dict[int, int] = {}
        left = size
        for position, index in enumerate(order):
            share = math.floor(left / (len(order) - position))
            shares[index] = min(len(keyed[index]), share)
            left -= shares[index]
        chosen = pd.concat(
            [k.nsmallest(shares[i], "_order") for i, k in enumerate(keyed) if shares[i]]
        )
    else:
        raise UsageError(f"replay mix must be 'uniform' or 'per_window', got {mix!r}")
    sort = [c for c in ("ts", "request_id") if c in chosen.columns] or ["_window", "_order"]
    chosen = chosen.sort_values([*sort, "_order"], kind="stable")
    return chosen.drop(columns=["_order", "_window"]).reset_index(drop=True)


def _keyed(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    import pandas as pd

    key = f"mlcd{seed:012d}"[-16:]
    if "request_id" in frame.columns:
        values = pd.util.hash_pandas_object(
            frame["request_id"].astype(str), index=False, hash_key=key
        )
    else:
        values = pd.util.hash_pandas_object(frame, index=False, hash_key=key)
    return frame.assign(_order=values.to_numpy())
