"""One serving process's part in its fleet: heartbeat, the shared canary verdict, store health.

Any number of ``mlcd serve`` processes (workers of one server, servers on several hosts) that
share a metadata store are one fleet. Each process (a *replica*, ``host:pid``) runs a
:class:`FleetMember` thread that, every ``interval_s``:

* writes a heartbeat: which version each role serves, requests answered and failed, so
  ``mlcd fleet`` and ``GET /v1/fleet`` show the whole fleet from any replica;
* publishes its canary guard's counters (requests, errors, a latency histogram per arm over
  the guard's window) and judges the *fleet's* sums with the guard's rule. The replica that
  first finds the canary clearly worse inserts the switch-off row — its primary key makes
  that happen once — and records the one ``serve.canary_disabled`` event in the same
  transaction; every replica stops its canary share when it sees the row;
* notes whether the store answered. A replica that cannot reach it keeps serving the version
  it has loaded (it cannot load another: packages are resolved and verified through the
  store) and says so in its readiness detail and on ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcd.serve.service import PredictionService
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve.fleet")


def replica_id() -> str:
    """``host:pid``: unique among live processes of a fleet."""
    return f"{socket.gethostname()}:{os.getpid()}"


def metrics_replica(multiprocess: bool) -> str:
    """The ``replica`` label of a fleet member's ``/metrics``: ``host:pid`` of the server, the
    worker's own or, with ``--workers N`` (whose ``/metrics`` sum all workers), the pid of the
    server process that started them."""
    return f"{socket.gethostname()}:{os.getppid()}" if multiprocess else replica_id()


class FleetMember:
    """Keeps one replica in step with the fleet through the metadata store.

    Args:
        store: the metadata store shared by the fleet.
        service: this replica's prediction service.
        interval_s: how often to exchange state with the store.
        url: where this replica answers (shown in the fleet view), if known.
    """

    def __init__(
        self,
        store: Store,
        service: PredictionService,
        *,
        interval_s: float = 2.0,
        url: str | None = None,
    ) -> None:
        self.store = store
        self.service = service
        self.interval_s = interval_s
        self.url = url
        self.replica = replica_id()
        if not getattr(store, "is_sqlite", False):
            service.metrics.replica = metrics_replica(service.metrics.multiprocess_dir is not None)
        self.started_at = time.time()
        self.store_error: str | None = None
        self.store_down_since: float | None = None
        self.last_sync: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Exchange state every ``interval_s`` in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlcd-fleet", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop exchanging; a clean stop removes this replica from the fleet view."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        from mlcd.store import fleet

        try:
            self.store.transact(
                lambda conn: fleet.forget_replica(conn, self.service.name, self.replica),
                attempts=2,
            )
        except Exception as exc:  # the store is down: the row ages out of the view instead
            log.debug("could not leave the fleet view: %s", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sync()
            self._stop.wait(self.interval_s)

    # ------------------------------------------------------------------ state
    @property
    def store_ok(self) -> bool:
        """Whether the last exchange with the store succeeded (True before the first one)."""
        return self.store_error is None

    def health(self) -> dict[str, Any]:
        """The store's part of the readiness detail."""
        if self.store_error is None:
            return {"store": "ok", "replica": self.replica}
        return {
            "store": "unreachable",
            "store_error": self.store_error,
            "store_down_since": self.store_down_since,
            "replica": self.replica,
        }

    def sync(self) -> None:
        """One exchange: heartbeat, canary counters and verdict; never raises."""
        try:
            off = self.store.transact(self._exchange, attempts=2)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
            if self.store_error is None:
                self.store_down_since = time.time()
                log.warning(
                    "the metadata store is unreachable (%s): serving on with %s",
                    message,
                    self._serving(),
                )
            self.store_error = message
            return
        if self.store_error is not None:
            log.warning("the metadata store answers again")
        self.store_error = None
        self.store_down_since = None
        self.last_sync = time.time()
        if off is not None:
            self.service.canary_switched_off(str(off["reason"]))

    def _serving(self) -> str:
        current = self.service.primary.current
        return f"version {current.version}" if current is not None else "no version loaded"

    def _exchange(self, conn: Any) -> dict[str, Any] | None:
        from mlcd.store import fleet

        service = self.service
        versions = {
            role: holder.current.version if holder.current is not None else None
            for role, holder in (
                ("primary", service.primary),
                ("canary", service.canary),
                ("shadow", service.shadow),
            )
            if holder is not None
        }
        fleet.heartbeat(
            conn,
            {
                "model": service.name,
                "replica": self.replica,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "url": self.url,
                "versions": {**versions, "ready": service.ready},
                "requests": service.answered + service.failed,
                "errors": service.failed,
                "started_at": self.started_at,
            },
        )
        return self._judge_canary(conn)

    def _judge_canary(self, conn: Any) -> dict[str, Any] | None:
        """Publish this replica's canary counters and judge the fleet's; the switch-off row."""
        from mlcd.serve.traffic import merged_summary
        from mlcd.store import fleet

        service = self.service
        holder, spec = service.canary, service.canary_spec
        if holder is None or spec is None or holder.current is None:
            return None
        version = holder.current.version
        off = fleet.canary_off(conn, service.name, spec.alias, version)
        if off is not None or service.canary_disabled is not None:
            return off
        guard = service.guard
        for arm, (requests, errors, histogram) in guard.counts().items():
            fleet.publish_arm(
                conn,
                model=service.name,
                version=version,
                replica=self.replica,
                arm=arm,
                requests=requests,
                errors=errors,
                histogram=histogram,
            )
        rows = fleet.arm_stats(conn, service.name, version, since=time.time() - guard.window_s)
        arms = {
            arm: merged_summary(
                [
                    (r["requests"], r["errors"], r["histogram"] or {})
                    for r in rows
                    if r["arm"] == arm
                ]
            )
            for arm in ("canary", "primary")
        }
        verdict = guard.compare(arms["canary"], arms["primary"])
        if verdict is None:
            return None
        replicas = len({r["replica"] for r in rows})
        fleet.switch_off_canary(
            conn,
            model=service.name,
            alias=spec.alias,
            version=version,
            reason=f"{verdict.reason} (fleet of {replicas} replica{'s' * (replicas != 1)})",
            details={"canary": verdict.canary, "primary": verdict.primary, "replicas": replicas},
            decided_by=self.replica,
        )
        return fleet.canary_off(conn, service.name, spec.alias, version)


def fleet_view(member: FleetMember) -> dict[str, Any]:
    """Every replica of this model from the store, each marked alive or stale."""
    from mlcd.store import fleet

    with member.store.read() as conn:
        rows = fleet.replicas(conn, member.service.name)
    replicas = describe(rows, member.interval_s)
    return {"model": member.service.name, "fleet": True, "replica": member.replica,
            "replicas": replicas, "totals": totals(replicas)}  # fmt: skip


def describe(rows: list[dict[str, Any]], interval_s: float) -> list[dict[str, Any]]:
    """Replica rows with their age and ``alive`` (seen within three exchange intervals)."""
    now = time.time()
    out = []
    for row in rows:
        age = max(0.0, now - float(row["seen_at"]))
        out.append({**row, "age_s": round(age, 3), "alive": age <= 3 * interval_s})
    return out


def totals(replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet as one service, from the alive replicas' rows: how many, their summed
    requests and errors (since each started), the error rate, and how many serve each
    primary version (more than one key: an alias move is still spreading)."""
    alive = [r for r in replicas if r["alive"]]
    requests = sum(int(r["requests"]) for r in alive)
    errors = sum(int(r["errors"]) for r in alive)
    versions: dict[str, int] = {}
    for row in alive:
        version = (row.get("versions") or {}).get("primary")
        key = "none" if version is None else str(version)
        versions[key] = versions.get(key, 0) + 1
    return {
        "alive": len(alive),
        "stale": len(replicas) - len(alive),
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "primary_versions": versions,
    }


class FleetCollector:
    """``/metrics`` families of this replica: whether its store answers, labelled by replica."""

    def __init__(self, member: FleetMember) -> None:
        self.member = member

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        member = self.member
        labels = ["model", "replica"]
        values = [member.service.name, member.replica]
        up = GaugeMetricFamily(
            "mlcd_serve_store_up",
            "1 while this replica's last exchange with the metadata store succeeded.",
            labels=labels,
        )
        up.add_metric(values, 1.0 if member.store_ok else 0.0)
        yield up
        down = GaugeMetricFamily(
            "mlcd_serve_store_down_seconds",
            "How long the metadata store has been unreachable from this replica (0 if it answers).",
            labels=labels,
        )
        since = member.store_down_since
        down.add_metric(values, 0.0 if since is None else max(0.0, time.time() - since))
        yield down
