"""Live drift and data-quality gauges on ``/metrics``, fed by the prediction-log writer.

Each served version with a stored reference profile gets a
:class:`~mlcd.monitor.live.LiveMonitor`: a rolling window of its last ``window_rows`` rows.
The prediction-log writer thread hands it every batch it drains, so requests never wait on
it, and at most every ``refresh_s`` takes a snapshot: the figures ``/metrics`` shows until
the next one. A scrape only formats the last snapshot.

With several workers each worker keeps its own window (of the rows it answered) and writes
its snapshot to ``<multiprocess dir>/mlcd_live_<pid>.json``; ``/metrics`` merges the files
of the workers that are alive: rows are summed, quality shares weighted by the rows behind
them, and the drift figures are those of the worker whose window drifts most.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcd.serve.predlog import Batch, LogEntry, concat_column
from mlcd.store.locks import process_alive

if TYPE_CHECKING:
    from mlcd.monitor.drift import DriftSettings
    from mlcd.monitor.live import LiveMonitor, LiveSnapshot
    from mlcd.monitor.profile import ReferenceProfile
    from mlcd.serve.holder import Served

log = logging.getLogger("mlcd.serve")

#: Below this many accepted rows in a window, only ``mlcd_monitor_window_rows`` is exported.
MIN_ROWS = 100
#: Refreshes take at most this share of one core: a slow one spaces out the next ones.
MAX_DUTY = 0.02
FILE_PREFIX = "mlcd_live_"

Record = dict[str, Any]


class LiveGauges:
    """Per-version live monitors fed from the prediction log, exported as Prometheus gauges.

    Thread use: :meth:`watch` runs in the holders' threads, :meth:`observe` (a drained
    :class:`~mlcd.serve.predlog.Batch`) in the prediction-log writer thread, :meth:`collect` in whichever thread renders ``/metrics``.

    Args:
        model: the served model's name.
        source: the model source; its ``reference(name, version)`` gives a version's profile
            (a source without that method gives no gauges).
        settings: drift methods and thresholds (``DriftSettings.from_config``), as reports use.
        window_rows: rows in each version's rolling window (per worker).
        refresh_s: recompute the gauges at most this often (less often when a refresh is
            slow: at most ``MAX_DUTY`` of a core goes to refreshing).
        multiprocess_dir: the prometheus-client multiprocess folder when running several
            workers; snapshots are shared through it.
    """

    def __init__(
        self,
        model: str,
        source: Any,
        *,
        settings: DriftSettings,
        window_rows: int = 10_000,
        refresh_s: float = 5.0,
        multiprocess_dir: str | None = None,
    ) -> None:
        if window_rows <= 0:
            raise ValueError("window_rows must be positive")
        self.model = model
        self.source = source
        self.settings = settings
        self.window_rows = window_rows
        self.refresh_s = refresh_s
        self.folder = Path(multiprocess_dir) if multiprocess_dir else None
        self.path = self.folder / f"{FILE_PREFIX}{os.getpid()}.json" if self.folder else None
        self._monitors: dict[int, LiveMonitor] = {}
        self._roles: dict[str, int] = {}
        self._told: set[int] = set()  # versions whose missing gauges were explained in the log
        self._failing: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._dirty = False
        self._swapped = False  # the served versions changed: refresh at the next wake
        self._refreshed = -math.inf
        self._interval = refresh_s
        self._records: dict[str, Record] = {}

    # ------------------------------------------------------------------ holder threads
    def watch(self, role: str, served: Served) -> None:
        """``role`` serves ``served`` from now on: monitor it (if it has a profile), forget
        versions no role serves any more."""
        version = served.version
        with self._lock:
            known = version in self._monitors
        monitor = None if known else self._monitor(served)
        with self._lock:
            if monitor is not None and version not in self._monitors:
                self._monitors[version] = monitor
            self._roles[role] = version
            serving = set(self._roles.values())
            for old in [v for v in self._monitors if v not in serving]:
                del self._monitors[old]
            self._swapped = True

    def _monitor(self, served: Served) -> LiveMonitor | None:
        from mlcd.monitor.live import LiveMonitor

        where = f"{served.name}/{served.version}"
        fetch = getattr(self.source, "reference", None)
        try:
            profile: ReferenceProfile | None = fetch(served.name, served.version) if fetch else None
            if profile is not None:
                for feature in profile.features.values():
                    self.settings.choose(feature)  # a method that cannot apply: say it now
        except Exception as exc:
            self._tell(served.version, f"{where}: no live monitoring gauges: {exc}")
            return None
        if profile is None:
            self._tell(
                served.version,
                f"{where} has no reference profile: no live drift or data-quality gauges for "
                f"it (declare models.{served.name}.reference_data in mlcd.yaml; registration "
                "then stores a profile with the version)",
            )
            return None
        return LiveMonitor(
            profile,
            self.settings,
            window_rows=self.window_rows,
            min_rows=min(MIN_ROWS, self.window_rows),
        )

    def _tell(self, version: int, message: str) -> None:
        if version not in self._told:
            self._told.add(version)
            log.warning(message)

    # ------------------------------------------------------------------ writer thread
    def observe(self, entries: Batch | Sequence[LogEntry]) -> None:
        """Add a drained batch of prediction-log entries to the windows; refresh if due."""
        batch = entries if isinstance(entries, Batch) else Batch.of(entries)
        with self._lock:
            monitors = dict(self._monitors)
        groups: dict[int, list[int]] = {}
        for i, (model, version) in enumerate(zip(batch.model, batch.version, strict=True)):
            if model == self.model and version in monitors:
                groups.setdefault(version, []).append(i)  # type: ignore[arg-type]
        for version, indices in groups.items():
            try:
                _feed(monitors[version], batch.select(indices))
            except Exception as exc:
                self._failed(version, "update", exc)
        if groups:
            self._dirty = True
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        """Recompute the snapshots when rows came and ``refresh_s`` has passed, or at once
        when the served versions changed (a version no longer served leaves ``/metrics``)."""
        now = time.monotonic()
        due = self._dirty and now - self._refreshed >= self._interval
        if not (force or due or self._swapped):
            return
        # Cleared before the work: a change meanwhile asks for the next refresh.
        self._dirty = self._swapped = False
        self._refreshed = now
        started = time.thread_time()
        with self._lock:
            monitors = dict(self._monitors)
        records: dict[str, Record] = {}
        for version, monitor in monitors.items():
            try:
                records[str(version)] = _record(
                    monitor.snapshot(), monitor.profile, self.settings.share_threshold
                )
            except Exception as exc:
                self._failed(version, "snapshot", exc)
        self._records = records
        if self.path is not None:
            self._publish(records)
        # Exact KS p-values on a full window can take a second: then refresh less often.
        self._interval = max(self.refresh_s, (time.thread_time() - started) / MAX_DUTY)

    def _failed(self, version: int, what: str, exc: Exception) -> None:
        key = (version, f"{what}: {type(exc).__name__}")
        if key not in self._failing:  # once per kind of failure, not once per batch
            self._failing.add(key)
            log.warning("%s/%s: live gauges: %s failed: %s", self.model, version, what, exc)

    def _publish(self, records: dict[str, Record]) -> None:
        assert self.path is not None
        temp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            temp.write_text(json.dumps({"model": self.model, "versions": records}))
            os.replace(temp, self.path)
        except OSError as exc:
            self._failed(0, "publishing", exc)

    def close(self) -> None:
        """Take this worker's snapshot out of the shared folder (its gauges leave the sums)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ /metrics
    def collect(self) -> Iterator[Any]:
        """The gauge families (prometheus-client's collector protocol)."""
        from prometheus_client.core import GaugeMetricFamily

        merged = _merge(self._workers())
        labels = ["model", "version"]
        families = {
            key: GaugeMetricFamily(f"mlcd_monitor_{key}", text, labels=labels)
            for key, text in _GAUGES.items()
        }
        score = GaugeMetricFamily(
            "mlcd_monitor_feature_drift_score",
            "The deciding drift statistic of each column over the rolling window: a p-value "
            "for ks and chisquare (lower means more drift), a distance for wasserstein, psi "
            "and jensenshannon (higher means more drift).",
            labels=[*labels, "feature"],
        )
        drifted = GaugeMetricFamily(
            "mlcd_monitor_feature_drifted",
            "1 when the input column drifted over the rolling window, else 0.",
            labels=[*labels, "feature"],
        )
        for version, record in sorted(merged.items()):
            key = [self.model, version]
            families["window_rows"].add_metric(key, record["rows"])
            if not record.get("ready"):
                continue
            for name in _GAUGES:
                if name != "window_rows":
                    families[name].add_metric(key, float(record[name]))
            for feature, value in sorted(record["scores"].items()):
                score.add_metric([*key, feature], value)
            for feature in record["inputs"]:
                if feature in record["scores"] or feature in record["drifted"]:
                    drifted.add_metric([*key, feature], float(feature in record["drifted"]))
        yield from families.values()
        yield score
        yield drifted

    def _workers(self) -> list[dict[str, Record]]:
        """Each live worker's last snapshot (only this one's without a shared folder)."""
        if self.folder is None:
            return [self._records]
        out = []
        for path in self.folder.glob(f"{FILE_PREFIX}*.json"):
            pid = path.stem[len(FILE_PREFIX) :]
            if not pid.isdigit() or not process_alive(int(pid)):
                continue  # a worker that died without closing: its window is gone
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # removed in between (files are replaced whole, never half written)
            if data.get("model") == self.model:
                out.append(data.get("versions", {}))
        return out


_GAUGES = {
    "window_rows": "Rows in the live monitoring window of each served version (all workers).",
    "drift_share": "Share of the tested input columns that drifted over the rolling window "
    "(the tests and thresholds of mlcd monitor).",
    "dataset_drift": "1 when the drifted share reaches monitor.drift.share_threshold, else 0.",
    "prediction_drift": "1 when a prediction column (prediction, proba) drifted, else 0.",
    "missing_share": "Share of input values missing or invalid over the rolling window.",
    "out_of_range_share": "Share of present input values outside the training range, or "
    "categories the training data never had, over the rolling window.",
    "rejected_share": "Share of the window's rows the server rejected (invalid requests).",
}


def _feed(monitor: LiveMonitor, entries: Batch | Sequence[LogEntry]) -> None:
    """Answered rows (and rows of failed predictions: valid inputs) join the window as
    accepted rows; rejected requests count as rejected rows. ``entries`` are of one version."""
    import numpy as np
    import pandas as pd

    batch = entries if isinstance(entries, Batch) else Batch.of(entries)
    accepted = [
        i
        for i, (status, inputs) in enumerate(zip(batch.status, batch.has_inputs, strict=True))
        if status != "rejected" and inputs
    ]
    rejected = sum(n for n, s in zip(batch.rows, batch.status, strict=True) if s == "rejected")
    if accepted:
        group = batch.select(accepted)
        counts = group.rows
        columns: dict[str, Any] = {}
        names = list(monitor.profile.features)
        if all(m is not None for m in group.matrix):
            # All-numeric inputs: one concatenation of the request matrices instead of one
            # per column (a version's entries share its signature, so the same columns).
            order = group.layouts[(group.model[0], group.version[0])]
            stacked = np.concatenate(group.matrix)
            columns = {n: stacked[:, order.index(n)] for n in names if n in order}
            names = [n for n in names if n not in order]
        for name in names:
            if name == "prediction":
                parts = group.predictions
            elif name == "proba":
                parts = group.proba
            else:
                parts = group.values(name)
            if any(p is not None for p in parts):
                columns[name] = _column(parts, counts)
        monitor.update(pd.DataFrame(columns, index=pd.RangeIndex(sum(counts))))
    if rejected:
        monitor.update(pd.DataFrame(index=pd.RangeIndex(rejected)), rejected=True)


def _column(parts: list[Any], counts: list[int]) -> Any:
    """One column's values across entries (numpy arrays, lists, or None for rows without)."""
    import numpy as np

    if all(type(p) is np.ndarray for p in parts):
        joined = np.concatenate(parts)  # the usual case, and 10x cheaper than through Arrow
        if joined.dtype.kind in "fiub":
            return joined
    return concat_column(parts, counts).to_pandas()


def _record(snap: LiveSnapshot, profile: ReferenceProfile, share_threshold: float) -> Record:
    """A snapshot as plain JSON-ready values."""
    return {
        "rows": snap.rows,
        "ready": snap.ready,
        "drift_share": snap.drift_share,
        "dataset_drift": float(snap.drift_share >= share_threshold),
        "prediction_drift": float(snap.prediction_drift),
        "missing_share": snap.missing_share,
        "out_of_range_share": snap.out_of_range_share,
        "rejected_share": snap.rejected_share,
        "scores": {k: v for k, v in snap.scores.items() if v is not None and math.isfinite(v)},
        "drifted": list(snap.drifted),
        "inputs": list(profile.inputs),
    }


def _merge(workers: list[dict[str, Record]]) -> dict[str, Record]:
    """One record per version from every worker's: sums, row-weighted shares, worst drift."""
    versions: dict[str, list[Record]] = {}
    for records in workers:
        for version, record in records.items():
            versions.setdefault(version, []).append(record)
    merged: dict[str, Record] = {}
    for version, parts in versions.items():
        if len(parts) == 1:
            merged[version] = parts[0]
            continue
        out: Record = {"rows": sum(p["rows"] for p in parts), "ready": False}
        ready = [p for p in parts if p["ready"]]
        if ready:
            rows = [float(p["rows"]) for p in ready]
            accepted = [n * (1 - p["rejected_share"]) for n, p in zip(rows, ready, strict=True)]
            present = [n * (1 - p["missing_share"]) for n, p in zip(accepted, ready, strict=True)]
            worst = max(ready, key=lambda p: (p["drift_share"], p["rows"]))
            out.update(
                worst,
                rows=out["rows"],
                rejected_share=_weighted(ready, "rejected_share", rows),
                missing_share=_weighted(ready, "missing_share", accepted),
                out_of_range_share=_weighted(ready, "out_of_range_share", present),
                prediction_drift=max(p["prediction_drift"] for p in ready),
            )
        merged[version] = out
    return merged


def _weighted(parts: list[Record], key: str, weights: list[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return 0.0
    return sum(p[key] * w for p, w in zip(parts, weights, strict=True)) / total
