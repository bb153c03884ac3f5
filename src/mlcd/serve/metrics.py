"""Prometheus metrics of the server: requests, latency, in-flight, model loads, log drops.

Each app gets its own registry (several apps can live in one test process). With several
uvicorn workers, ``multiprocess_dir`` names the folder prometheus-client shares between them
(``PROMETHEUS_MULTIPROC_DIR``, set before the workers start) and ``/metrics`` sums them.
``mlcd serve`` removes its folder when it stops; :func:`sweep_stale_folders` removes those of
servers that could not (killed with SIGKILL, out of memory, a power cut).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

#: ``mlcd serve --workers N`` makes its multiprocess folder with this prefix (temp folder).
FOLDER_PREFIX = "mlcd-metrics-"
#: prometheus-client's ``<kind>_<pid>.db`` files and the live gauges' ``mlcd_live_<pid>.json``
_PID_FILE = re.compile(r"_(\d+)\.(?:db|json)$")

#: Latency buckets in seconds: fine below 10 ms, where a single-row prediction lands.
BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ServeMetrics:
    """The server's metrics, with label children cached for the hot path."""

    def __init__(self, model: str, multiprocess_dir: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model = model
        self.multiprocess_dir = multiprocess_dir
        #: Set when the server is one replica of a fleet: every sample of ``/metrics`` then
        #: carries ``replica="host:pid"``, so a scraper of several replicas can tell (and sum) them.
        self.replica: str | None = None
        registry = None if multiprocess_dir else CollectorRegistry()
        self.registry = registry
        self.requests = Counter(
            "mlcd_serve_requests",
            "Requests answered, by model version, endpoint and HTTP status.",
            ["model", "version", "endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlcd_serve_request_duration_seconds",
            "Server-side time per request, by model version and endpoint.",
            ["model", "version", "endpoint"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "mlcd_serve_predicted_rows",
            "Rows predicted, by model version.",
            ["model", "version"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "mlcd_serve_in_flight_requests",
            "Requests being processed now.",
            ["model"],
            registry=registry,
            multiprocess_mode="livesum",
        ).labels(model)
        self.model_loads = Counter(
            "mlcd_serve_model_loads",
            "Model version loads, by outcome (loaded, failed).",
            ["model", "version", "role", "outcome"],
            registry=registry,
        )
        self.serving = Gauge(
            "mlcd_serve_model_version",
            "The version each role (primary, canary, shadow) serves now.",
            ["model", "role"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.log_dropped = Counter(
            "mlcd_serve_prediction_log_dropped_rows",
            "Prediction-log rows dropped (queue full or sink down).",
            ["model"],
            registry=registry,
        ).labels(model)
        self.log_written = Counter(
            "mlcd_serve_prediction_log_written_rows",
            "Prediction-log rows written to Parquet segments.",
            ["model"],
            registry=registry,
        ).labels(model)
        self.canary_disabled = Counter(
            "mlcd_serve_canary_disabled",
            "Canaries switched off automatically.",
            ["model"],
            registry=registry,
        ).labels(model)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._collectors: list[Any] = []

    def add_collector(self, collector: Any) -> None:
        """Export a custom collector's families too (the live monitoring gauges)."""
        self._collectors.append(collector)
        if self.registry is not None:
            self.registry.register(collector)

    def observe(self, version: int | None, endpoint: str, status: int, seconds: float) -> None:
        """Count a finished request and its latency."""
        key = (version, endpoint, status)
        child = self._children.get(key)
        if child is None:
            label = "" if version is None else str(version)
            child = (
                self.requests.labels(self.model, label, endpoint, str(status)),
                self.latency.labels(self.model, label, endpoint),
            )
            self._children[key] = child
        child[0].inc()
        child[1].observe(seconds)

    def predicted(self, version: int | None, rows: int) -> None:
        """Count predicted rows."""
        key = ("rows", version)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.rows.labels(self.model, str(version))
        child.inc(rows)

    def loaded(self, role: str, version: int | None, ok: bool) -> None:
        """Count a model load attempt; on success, the role now serves ``version``."""
        label = "" if version is None else str(version)
        self.model_loads.labels(self.model, label, role, "loaded" if ok else "failed").inc()
        if ok and version is not None:
            self.serving.labels(self.model, role).set(version)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            for collector in self._collectors:
                registry.register(collector)
        else:
            assert self.registry is not None
            registry = self.registry
        if self.replica is not None:
            return generate_latest(ReplicaLabelled(registry, self.replica)), CONTENT_TYPE_LATEST
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Mark this worker dead so its live gauges leave the multiprocess sums."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


class ReplicaLabelled:
    """Another collector's families with ``replica`` added to every sample that lacks it."""

    def __init__(self, source: Any, replica: str) -> None:
        self.source = source
        self.replica = replica

    def collect(self) -> Any:
        from prometheus_client.metrics_core import Metric

        for family in self.source.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample
                if "replica" in sample.labels
                else sample._replace(labels={**sample.labels, "replica": self.replica})
                for sample in family.samples
            ]
            yield labelled


def sweep_stale_folders(
    parent: str | os.PathLike[str] | None = None, min_age_s: float = 600.0
) -> list[Path]:
    """Remove the multiprocess folders that servers killed without a chance to clean up left
    in ``parent`` (the temp folder): those older than ``min_age_s`` whose files all belong
    to processes that are gone (or that hold no file at all). A folder with a live worker's
    file, or one younger than ``min_age_s`` (a server starting), is kept.

    Returns:
        The folders removed.
    """
    import shutil
    import tempfile

    removed: list[Path] = []
    now = time.time()
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            if not folder.is_dir() or now - folder.stat().st_mtime < min_age_s:
                continue
            pids = {
                int(match.group(1))
                for name in os.listdir(folder)
                if (match := _PID_FILE.search(name))
            }
        except OSError:
            continue  # removed meanwhile, or not ours to read
        if any(_running(pid) for pid in pids):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, killed but not reaped yet, is not)."""
    from mlcd.store.locks import process_alive

    if not process_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (or gone just now): trust the signal check
    return stat[stat.rindex(")") + 2 :][:1] != "Z"
