"""Live performance: feedback labels joined to predictions by request id, incrementally.

Labels arrive late (days after the prediction) and in any order. Each ``mlcd monitor`` run
takes the labels received since the previous run (a cursor on ``feedback.received_at``, kept
in the ``state`` table), finds their predictions in the prediction log and adds each pair to
the :class:`Tally` of its model version and prediction hour. Tallies are sums, so the
metrics of a window do not depend on when or in which order its labels came. A label whose
prediction is not in the log yet (the server flushes its log every few seconds) waits as
pending and is retried on the next run; one older than ``label_horizon`` is dropped and
counted as an orphan. Labels newer than ``settle_s`` wait one run, so a feedback row still
being committed with an older timestamp is never skipped by the cursor.

The feedback endpoint lets a client send a request's label again (the last one wins). So
that a corrected label is never counted twice, each hour also keeps a set of 32-bit hashes
of the request ids it counted; a label whose id is already in its hour makes the monitor
recount that hour from the log and the current labels (exact; a hash collision only costs
a needless recount). Rows the server rejected and shadow predictions are not joined.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcd.monitor.lease import join_lease
from mlcd.monitor.metrics import Tally, Task, is_worse
from mlcd.monitor.window import LogReader, Window, find_segments

if TYPE_CHECKING:
    import pandas as pd

    from mlcd.store import Store

#: Tallies are kept per model version and per hour of prediction time.
BUCKET_S = 3600.0
STATE_PREFIX = "monitor.performance."
DEFAULT_HORIZON_S = 30 * 86400.0
DEFAULT_SETTLE_S = 5.0
_IN_CHUNK = 500


def bucket_key(version: Any, ts: float) -> str:
    """``version|hour-start`` of a prediction."""
    start = int(ts // BUCKET_S * BUCKET_S)
    return f"{'' if version is None else int(version)}|{start}"


def parse_key(key: str) -> tuple[int | None, float]:
    """The version and hour start of a bucket key."""
    version, start = key.split("|")
    return (int(version) if version else None), float(start)


def tally_pairs(frame: pd.DataFrame, task: Task, label: str = "label") -> dict[str, Tally]:
    """Tallies per ``version|hour`` of rows holding ``prediction``, ``label`` (``proba``, ``ts``)."""
    import pandas as pd

    tallies: dict[str, Tally] = {}
    if frame.empty:
        return tallies
    ts = frame["ts"] if "ts" in frame.columns else pd.Series(0.0, index=frame.index)
    versions = (
        frame["version"] if "version" in frame.columns else pd.Series(None, index=frame.index)
    )
    keys = [
        bucket_key(v if pd.notna(v) else None, float(t)) for v, t in zip(versions, ts, strict=True)
    ]
    frame = frame.assign(_key=keys)
    for key, group in frame.groupby("_key", sort=True):
        labels = group[label]
        if task == "regression":
            labels = pd.to_numeric(labels, errors="coerce")
        tally = Tally(task)
        proba = (
            group["proba"].to_numpy(dtype=np.float64, na_value=np.nan) if "proba" in group else None
        )
        tally.add(labels, group["prediction"], proba)
        tallies[str(key)] = tally
    return tallies


def merge_tallies(into: dict[str, Tally], more: Mapping[str, Tally]) -> None:
    """Add ``more`` into ``into`` key by key."""
    for key, tally in more.items():
        into[key] = into[key].merge(tally) if key in into else tally


def id_hashes(request_ids: Any) -> np.ndarray:
    """32-bit hashes of request ids (stable across processes and runs)."""
    import pandas as pd

    values = np.asarray(list(request_ids), dtype=object)
    if values.size == 0:
        return np.empty(0, dtype=np.uint32)
    return (pd.util.hash_array(values) & 0xFFFFFFFF).astype(np.uint32)


def _encode_ids(ids: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(ids, dtype="<u4").tobytes()).decode()


def _decode_ids(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


@dataclass
class JoinState:
    """What the incremental join has done so far for one model (stored in ``state``)."""

    task: Task | None = None
    cursor: float = 0.0
    pending: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, Tally] = field(default_factory=dict)
    #: per bucket, sorted hashes of the request ids counted in it
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    joined: int = 0
    orphaned: int = 0
    recounted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "cursor": self.cursor,
            "pending": self.pending,
            "buckets": {k: v.to_dict() for k, v in self.buckets.items()},
            "ids": {k: _encode_ids(v) for k, v in self.ids.items()},
            "joined": self.joined,
            "orphaned": self.orphaned,
            "recounted": self.recounted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> JoinState:
        if not data:
            return cls()
        return cls(
            task=data.get("task"),
            cursor=float(data.get("cursor", 0.0)),
            pending={str(k): float(v) for k, v in (data.get("pending") or {}).items()},
            buckets={k: Tally.from_dict(v) for k, v in (data.get("buckets") or {}).items()},
            ids={k: _decode_ids(v) for k, v in (data.get("ids") or {}).items()},
            joined=int(data.get("joined", 0)),
            orphaned=int(data.get("orphaned", 0)),
            recounted=int(data.get("recounted", 0)),
        )


@dataclass(frozen=True)
class JoinResult:
    """What one incremental step did."""

    new_labels: int
    joined: int
    pending: int
    orphaned: int
    recounted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _labels(conn: Any, model: str, cursor: float, upto: float, pending: Iterable[str]) -> Any:
    import pandas as pd
    from sqlalchemy import or_, select

    from mlcd.store.tables import feedback as f

    columns = [f.c.request_id, f.c.label, f.c.received_at]
    which = or_(f.c.model == model, f.c.model.is_(None))
    rows = conn.execute(
        select(*columns).where(which, f.c.received_at > cursor, f.c.received_at <= upto)
    ).all()
    ids = list(pending)
    for start in range(0, len(ids), _IN_CHUNK):
        part = ids[start : start + _IN_CHUNK]
        rows += conn.execute(select(*columns).where(which, f.c.request_id.in_(part))).all()
    frame = pd.DataFrame(
        {
            "request_id": [r[0] for r in rows],
            "label": pd.Series([r[1] for r in rows], dtype=object),
            "received_at": [float(r[2]) for r in rows],
        }
    )
    return frame.drop_duplicates("request_id")


_LOG_COLUMNS = ["request_id", "ts", "version", "status", "prediction", "proba"]


def _answered(frame: Any) -> Any:
    """Rows a model answered for real: not rejected, not shadow; one per id and version."""
    if "status" in frame.columns:
        frame = frame[frame["status"].fillna("ok").isin(["ok"])]
    keys = ["request_id", "version"] if "version" in frame.columns else ["request_id"]
    return frame.drop_duplicates(keys)


def _predictions(
    store: Store, root: Path, model: str, window: Window, ids: Any, version: int | None = None
) -> Any:
    """Prediction-log rows of ``window`` whose request id is in ``ids`` (all when None)."""
    import pandas as pd

    with store.read() as conn:
        segments = find_segments(conn, model, window, version)
    reader = LogReader(root, segments, window, version=version, columns=_LOG_COLUMNS)
    wanted = None if ids is None else pd.Index(ids)
    found = []
    for chunk in reader:
        part = chunk if wanted is None else chunk[chunk["request_id"].isin(wanted)]
        if len(part):
            found.append(part)
    if not found:
        return pd.DataFrame(columns=["request_id", "ts", "version", "prediction"])
    return _answered(pd.concat(found, ignore_index=True))


def _recount(store: Store, root: Path, model: str, key: str, task: Task) -> tuple[Tally, Any]:
    """The exact tally of one hour, from the log and the labels stored now."""
    import pandas as pd

    from mlcd.store.predictions import feedback_for

    version, hour = parse_key(key)
    rows = _predictions(store, root, model, Window(hour, hour + BUCKET_S), None, version)
    with store.read() as conn:
        labels = feedback_for(conn, rows["request_id"].astype(str).tolist())
    rows = rows[rows["request_id"].isin(pd.Index(list(labels)))]
    rows = rows.assign(
        label=pd.Series([labels[r] for r in rows["request_id"]], dtype=object, index=rows.index)
    )
    tally = tally_pairs(rows, task).get(key, Tally(task))
    return tally, np.unique(id_hashes(rows["request_id"]))


def load_state(store: Store, model: str) -> JoinState:
    """The stored join state of ``model`` (empty if none)."""
    from mlcd.store import state

    with store.read() as conn:
        return JoinState.from_dict(state.get(conn, STATE_PREFIX + model))


def update_performance(
    store: Store,
    root: str | Path,
    model: str,
    task: Task,
    *,
    now: float | None = None,
    settle_s: float = DEFAULT_SETTLE_S,
    horizon_s: float = DEFAULT_HORIZON_S,
    lease_wait_s: float = 60.0,
) -> tuple[JoinState, JoinResult]:
    """Join the labels received since the last call to their predictions.

    Args:
        store: the metadata store (feedback, prediction_segments, state, locks).
        root: the project root the segment paths are relative to.
        model: the model name.
        task: ``classification`` or ``regression`` (a change of task starts over).
        now: the current time (tests pass it).
        settle_s: labels newer than this wait for the next call.
        horizon_s: a label whose prediction is not found within this long is dropped.
        lease_wait_s: how long to wait for another process joining the same model.

    Returns:
        The new state and what this call did.

    Raises:
        MonitorError: another process kept the join lease past ``lease_wait_s``.
    """
    now = time.time() if now is None else now
    with join_lease(store, model, wait_s=lease_wait_s):
        return _update_locked(store, Path(root), model, task, now, settle_s, horizon_s)


def _update_locked(
    store: Store, root: Path, model: str, task: Task, now: float, settle_s: float, horizon_s: float
) -> tuple[JoinState, JoinResult]:
    from mlcd.store import state

    current = load_state(store, model)
    if current.task not in (None, task):
        current = JoinState()  # the task changed: old tallies mean nothing now
    current.task = task
    upto = now - settle_s
    with store.read() as conn:
        labels = _labels(conn, model, current.cursor, upto, current.pending)
    new_labels = int((labels["received_at"] > current.cursor).sum()) if len(labels) else 0
    joined = orphaned = 0
    dirty: set[str] = set()
    if len(labels):
        # A prediction is logged before its label arrives: only that span can hold it.
        received = labels["received_at"]
        window = Window(float(received.min()) - horizon_s, float(received.max()) + 1.0)
        predictions = _predictions(store, root, model, window, labels["request_id"])
        pairs = predictions.merge(labels, on="request_id", how="inner")
        if len(pairs):
            versions = pairs["version"] if "version" in pairs else [None] * len(pairs)
            pairs = pairs.assign(
                _key=[
                    bucket_key(None if v is None or v != v else v, float(ts))
                    for v, ts in zip(versions, pairs["ts"], strict=True)
                ],
                _hash=id_hashes(pairs["request_id"]),
            )
        for key, group in pairs.groupby("_key", sort=True) if len(pairs) else []:
            known = current.ids.get(str(key), np.empty(0, dtype=np.uint32))
            if np.isin(group["_hash"].to_numpy(), known).any():
                dirty.add(str(key))  # a label came again: recount the hour exactly
                continue
            merge_tallies(current.buckets, tally_pairs(group, task))
            current.ids[str(key)] = np.union1d(known, group["_hash"].to_numpy()).astype(np.uint32)
        for key in sorted(dirty):
            current.buckets[key], current.ids[key] = _recount(store, root, model, key, task)
        joined = len(pairs)
        matched = set(pairs["request_id"]) if len(pairs) else set()
        pending: dict[str, float] = {}
        for rid, received in zip(labels["request_id"], labels["received_at"], strict=True):
            if rid in matched:
                continue
            if received >= now - horizon_s:
                pending[str(rid)] = float(received)
            else:
                orphaned += 1
        current.pending = pending
        current.cursor = max(current.cursor, float(labels["received_at"].max()))
    # Hours older than the horizon and the longest window anyone asks for are dropped.
    oldest = now - max(horizon_s, 90 * 86400.0)
    current.buckets = {k: v for k, v in current.buckets.items() if parse_key(k)[1] >= oldest}
    # Id sets are needed only while a label may still come: up to the horizon.
    current.ids = {k: v for k, v in current.ids.items() if parse_key(k)[1] >= now - horizon_s}
    current.joined += joined
    current.orphaned += orphaned
    current.recounted += len(dirty)
    store.transact(lambda c: state.put(c, STATE_PREFIX + model, current.to_dict()))
    return current, JoinResult(new_labels, joined, len(current.pending), orphaned, len(dirty))


# ---------------------------------------------------------------- the report
@dataclass(frozen=True)
class PerformanceReport:
    """Metrics of the labelled predictions of a window, per period and overall, and the baseline."""

    task: str | None
    labels: int
    predictions: int
    overall: dict[str, float]
    periods: list[dict[str, Any]]
    baseline: dict[str, float]
    metric: str | None = None
    threshold: float | None = None
    min_labels: int = 30
    pending: int = 0
    orphaned: int = 0
    note: str | None = None

    @property
    def coverage(self) -> float:
        """Share of the window's predictions that have a label."""
        return self.labels / self.predictions if self.predictions else 0.0

    @property
    def decay(self) -> bool:
        """Whether the configured metric is past its threshold on enough labels."""
        return self.decay_reason is not None

    @property
    def decay_reason(self) -> str | None:
        """Why performance decayed, or None."""
        if self.metric is None or self.threshold is None or self.labels < self.min_labels:
            return None
        value = self.overall.get(self.metric)
        if value is None or not is_worse(self.metric, value, self.threshold):
            return None
        return (
            f"{self.metric} = {value:.4g} on {self.labels} labels is past the threshold "
            f"{self.threshold:g}"
            + (
                f" (baseline {self.baseline[self.metric]:.4g})"
                if self.metric in self.baseline
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "labels": self.labels,
            "predictions": self.predictions,
            "coverage": self.coverage,
            "overall": self.overall,
            "baseline": self.baseline,
            "metric": self.metric,
            "threshold": self.threshold,
            "min_labels": self.min_labels,
            "decay": self.decay,
            "decay_reason": self.decay_reason,
            "pending": self.pending,
            "orphaned": self.orphaned,
            "note": self.note,
            "periods": self.periods,
        }


def period_for(span_s: float) -> float:
    """Reporting period for a window: hours up to two days, days up to 60, else weeks."""
    if span_s <= 2 * 86400:
        return 3600.0
    if span_s <= 60 * 86400:
        return 86400.0
    return 7 * 86400.0


def flatten_metrics(metrics: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """Numeric entries of a (possibly nested) metrics mapping, nested keys joined by dots."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(flatten_metrics(value, f"{name}."))
    return out


def performance_report(
    tallies: Mapping[str, Tally],
    *,
    task: str | None,
    start: float | None,
    end: float | None,
    version: int | None = None,
    predictions: int = 0,
    baseline: Mapping[str, Any] | None = None,
    metric: str | None = None,
    threshold: float | None = None,
    min_labels: int = 30,
    pending: int = 0,
    orphaned: int = 0,
    note: str | None = None,
) -> PerformanceReport:
    """Aggregate the hourly tallies that fall in ``[start, end)`` into periods and a total."""
    chosen = []
    for key, tally in tallies.items():
        key_version, hour = parse_key(key)
        if version is not None and key_version not in (None, version):
            continue
        if (start is not None and hour + BUCKET_S <= start) or (end is not None and hour >= end):
            continue
        chosen.append((hour, tally))
    chosen.sort(key=lambda item: item[0])
    total: Tally | None = None
    periods: dict[float, Tally] = {}
    first = chosen[0][0] if chosen else 0.0
    last = chosen[-1][0] + BUCKET_S if chosen else BUCKET_S
    span = (end if end is not None else last) - (start if start is not None else first)
    step = period_for(max(span, BUCKET_S))
    for hour, tally in chosen:
        total = tally if total is None else total.merge(tally)
        slot = hour // step * step
        periods[slot] = periods[slot].merge(tally) if slot in periods else tally
    rows = [
        {"start": slot, "end": slot + step, "labels": t.n, "metrics": t.metrics()}
        for slot, t in sorted(periods.items())
    ]
    return PerformanceReport(
        task=task,
        labels=total.n if total else 0,
        predictions=predictions,
        overall=total.metrics() if total else {},
        periods=rows,
        baseline=flatten_metrics(baseline),
        metric=metric,
        threshold=threshold,
        min_labels=min_labels,
        pending=pending,
        orphaned=orphaned,
        note=note,
    )
