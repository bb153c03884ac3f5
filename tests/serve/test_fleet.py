"""A fleet: three ``mlcd serve`` processes in separate folders on one PostgreSQL store and S3.

Each replica is a real subprocess with its own project folder, sharing only the metadata store
(PostgreSQL, reached through a TCP relay the test can cut, which is what a replica sees when
the database goes away) and the artifacts (a moto S3 server on 127.0.0.1). A small
round-robin client spreads requests over the three.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.serve.conftest import cancer, cancer_model, free_port
from tests.serve.models import FlakyModel

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.s3]

URL = "/v1/models/cancer/predict"
REPO = Path(__file__).resolve().parents[2]


def _until(condition: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Relay:
    """A TCP relay to PostgreSQL: ``cut()`` closes every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:  # accepted while being cut
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        self.open = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass


@dataclass
class Replica:
    port: int
    folder: Path
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/v2/health/ready", timeout=10).json())


@dataclass
class Fleet:
    publisher: Path
    env: dict[str, str]
    store_url: str
    replicas: list[Replica] = field(default_factory=list)
    relay: Relay | None = None

    def project(self) -> Any:
        from mlcd.project import Project

        return Project.open(self.publisher)


@pytest.fixture
def fleet(
    tmp_path: Path, pg_url: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    """The publisher's project (registers versions) and the environment replicas share."""
    import boto3
    from tests.conftest import run_cli

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "PYTHONPATH": str(REPO),  # the test's python models unpickle in the replicas
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"fleet-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    publisher = tmp_path / "publisher"
    assert run_cli(["init", str(publisher)], cwd=tmp_path).returncode == 0
    _configure(publisher, pg_url, f"s3://{bucket}/objects")
    state = Fleet(publisher, env, pg_url)
    state.env["MLCD_ARTIFACTS"] = f"s3://{bucket}/objects"
    try:
        yield state
    finally:
        for replica in state.replicas:
            if replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait(30)
        if state.relay is not None:
            state.relay.cut()


def _configure(folder: Path, store: str, artifacts: str) -> None:
    log = artifacts.rsplit("/", 1)[0] + "/predictions"  # the fleet's log, on S3 too
    with open(folder / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(
            f"\nstore: {store}\nartifacts: {artifacts}\n"
            "serve:\n  poll_interval_s: 0.5\n  fleet_interval_s: 0.5\n"
            f"monitor:\n  log_location: {log}\n"
        )


def _register(
    fleet: Fleet, model: Any, sample: pd.DataFrame, alias: str | None, **save: Any
) -> int:
    from mlcd.registry import register_from_path, save_model, set_alias

    folder = fleet.publisher / "packages" / uuid.uuid4().hex[:8]
    save_model(model, folder, sample_input=sample, **save)
    with fleet.project() as project:
        version = register_from_path(project.store, project.objects, "cancer", folder)
        number = int(version.version.version)
        if alias:
            set_alias(project.store, "cancer", alias, number)
    shutil.rmtree(folder)
    return number


def _start(fleet: Fleet, count: int, *extra: str, store_url: str | None = None) -> None:
    """``count`` replicas, each in its own folder (its own .mlcd state), on free ports."""
    from tests.conftest import run_cli

    for i in range(count):
        folder = fleet.publisher.parent / f"replica-{len(fleet.replicas)}"
        assert run_cli(["init", str(folder)], cwd=fleet.publisher.parent).returncode == 0
        _configure(folder, store_url or fleet.store_url, fleet.env["MLCD_ARTIFACTS"])
        port = free_port()
        log = open(folder / "serve.log", "w", encoding="utf-8")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--port", str(port),
             "--log-level", "warning", *extra],
            cwd=folder,
            env={**os.environ, **fleet.env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        log.close()  # the child has its own copy
        fleet.replicas.append(Replica(port, folder, process))
        del i
    for replica in fleet.replicas:
        _until(lambda r=replica: _is_ready(r), timeout=120, what=f"replica {replica.port} ready")


def _is_ready(replica: Replica) -> bool:
    if replica.process.poll() is not None:
        output = (replica.folder / "serve.log").read_text(encoding="utf-8")
        raise AssertionError(f"replica on {replica.port} exited:\n{output}")
    try:
        return httpx.get(replica.url + "/v2/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


class RoundRobin:
    """Client threads sending single-row requests to the replicas in turn."""

    def __init__(self, replicas: list[Replica], records: list[dict[str, Any]], threads: int = 3):
        self.replicas = replicas
        self.records = records
        self.statuses: Counter[int] = Counter()
        self.answers: list[tuple[int, int]] = []  # (replica index, version)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(s,)) for s in range(threads)]

    def __enter__(self) -> RoundRobin:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _loop(self, seed: int) -> None:
        clients = [httpx.Client(base_url=r.url, timeout=30) for r in self.replicas]
        i = seed
        try:
            while not self.stop.is_set():
                index = i % len(clients)
                try:
                    response = clients[index].post(URL, json=[self.records[i % len(self.records)]])
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"replica {index}: {exc!r}")
                    i += 1
                    continue
                i += 1
                with self.lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.answers.append((index, int(response.json()["version"])))
                    else:
                        self.failures.append(f"replica {index}: {response.text[:200]}")
        finally:
            for client in clients:
                client.close()

    def count(self, version: int | None = None) -> int:
        with self.lock:
            return sum(1 for _, v in self.answers if version is None or v == version)


def _replica_requests(text: str) -> int:
    """The predict requests answered 200 in one replica's ``/metrics``, all carrying that
    replica's label (``host:pid``) and no other."""
    from prometheus_client.parser import text_string_to_metric_families

    total, replicas = 0.0, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("mlcd_"):
                replicas.add(sample.labels.get("replica"))
            if sample.name == "mlcd_serve_requests_total" and sample.labels["status"] == "200":
                total += sample.value
    assert len(replicas) == 1 and None not in replicas, replicas
    return int(total)


def test_an_alias_move_reaches_every_replica_with_no_failed_request(fleet: Fleet) -> None:
    from mlcd.registry import set_alias

    X, _ = cancer()
    _register(fleet, cancer_model(), X.head(100), "champion")
    v2 = _register(fleet, cancer_model(c=0.01), X.head(100), None)
    _start(fleet, 3)
    records = X.head(50).to_dict(orient="records")
    with RoundRobin(fleet.replicas, records) as load:
        _until(lambda: load.count() >= 150, what="150 answers before the move")
        with fleet.project() as project:
            set_alias(project.store, "cancer", "champion", v2)
        moved = time.monotonic()
        _until(
            lambda: all(r.ready()["version"] == v2 for r in fleet.replicas),
            what="every replica on the new version",
        )
        switched_s = time.monotonic() - moved
        _until(lambda: load.count(v2) >= 150, what="150 answers from the new version")
    assert not load.failures and set(load.statuses) == {200}, load.failures[:5]
    per_replica = Counter(index for index, version in load.answers if version == v2)
    assert set(per_replica) == {0, 1, 2}  # every replica answered with the new version
    print(f"every replica served v{v2} {switched_s:.2f} s after the move (poll interval 0.5 s)")

    # The fleet view, from any replica: three live replicas, each on v2, with their traffic.
    def view_on_v2() -> bool:
        view = httpx.get(fleet.replicas[0].url + "/v1/fleet", timeout=10).json()
        alive = [r for r in view["replicas"] if r["alive"]]
        return len(alive) == 3 and {r["versions"]["primary"] for r in alive} == {v2}

    _until(view_on_v2, what="the fleet view to show three live replicas on the new version")
    _until(
        lambda: (
            sum(
                r["requests"]
                for r in httpx.get(fleet.replicas[1].url + "/v1/fleet", timeout=10).json()[
                    "replicas"
                ]
            )
            >= load.count()
        ),
        what="the fleet's request counts to catch up",
    )
    # Every replica's /metrics carries its replica label; summed over the fleet, the answered
    # requests are exactly what the client got, and each sum is that replica's in the view.
    view = httpx.get(fleet.replicas[2].url + "/v1/fleet", timeout=10).json()
    answered = 0
    for replica in fleet.replicas:
        answered += _replica_requests(httpx.get(replica.url + "/metrics", timeout=10).text)
    assert answered == load.count()
    assert view["totals"]["alive"] == 3 and view["totals"]["primary_versions"] == {str(v2): 3}
    assert view["totals"]["errors"] == 0 and view["totals"]["requests"] >= load.count()
    from tests.conftest import run_cli

    listed = run_cli(["fleet", "cancer", "--json"], cwd=fleet.publisher, env=fleet.env)
    assert listed.returncode == 0, listed.stderr
    import json

    assert len([r for r in json.loads(listed.stdout)["replicas"] if r["alive"]]) == 3
    assert json.loads(listed.stdout)["totals"]["alive"] == 3
    shown = run_cli(["fleet", "cancer"], cwd=fleet.publisher, env=fleet.env)
    assert "fleet: 3 alive, 0 stale" in shown.stdout and f"3 on v{v2}" in shown.stdout

    # Stopped cleanly, the replicas have flushed their logs to S3: one row per answered request.
    for replica in fleet.replicas:
        replica.process.send_signal(signal.SIGTERM)
    for replica in fleet.replicas:
        replica.process.wait(60)
    import pyarrow.parquet as pq
    import s3fs

    from mlcd.store import predictions

    with fleet.project() as project, project.store.read() as conn:
        segments = predictions.segments(conn, model="cancer")
    assert segments and all(s["path"].startswith("s3://") for s in segments)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    logged = pd.concat(
        [
            pq.read_table(s["path"].removeprefix("s3://"), filesystem=fs).to_pandas()
            for s in segments
        ]
    )
    ok = logged[logged["status"] == "ok"]
    assert len(ok) == load.count() and ok["request_id"].is_unique
    names = [s["path"].rsplit("/", 1)[1] for s in segments]
    for replica in fleet.replicas:  # every replica wrote its own segments, none collided
        assert any(f"-{replica.process.pid}-" in name for name in names), names


def test_a_failing_canary_is_switched_off_once_for_the_fleet(fleet: Fleet) -> None:
    from mlcd.store import events

    frame = pd.DataFrame({"x": [0.0, 1.0]})
    _register(fleet, FlakyModel(limit=10.0), frame, "champion", trusted=True, flavor="python")
    bad = _register(
        fleet, FlakyModel(limit=0.5), frame, "challenger", trusted=True, flavor="python"
    )
    _start(fleet, 3, "--trust", "--canary", "challenger:50")
    records = [{"x": 0.2}, {"x": 0.9}]  # the canary fails on half of what it gets
    with RoundRobin(fleet.replicas, records) as load:
        _until(
            lambda: all(
                httpx.get(r.url + "/v1/models/cancer", timeout=10).json()["canary"]["disabled"]
                for r in fleet.replicas
            ),
            timeout=120,
            what="every replica to stop its canary",
        )
        after = load.count()
        _until(lambda: load.count() >= after + 60, what="60 answers after the switch-off")
    with fleet.project() as project, project.store.read() as conn:
        found = events.query(conn, model="cancer", kind="serve.canary_disabled")
    assert len(found) == 1, found  # decided once for the fleet, not once per replica
    assert found[0]["version"] == bad and "fleet of" in found[0]["reason"]
    assert (
        found[0]["details"]["canary"]["error_rate"] > found[0]["details"]["primary"]["error_rate"]
    )
    assert 500 in load.statuses  # the canary did fail before it was stopped


def test_a_replica_that_loses_the_store_keeps_serving_and_says_so(fleet: Fleet) -> None:
    from urllib.parse import urlsplit

    X, _ = cancer()
    _register(fleet, cancer_model(), X.head(100), "champion")
    parts = urlsplit(fleet.store_url)
    fleet.relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    relayed = fleet.store_url.replace(f":{parts.port}/", f":{fleet.relay.port}/")
    _start(fleet, 3, store_url=relayed)
    records = X.head(50).to_dict(orient="records")
    with RoundRobin(fleet.replicas, records) as load:
        _until(lambda: load.count() >= 100, what="100 answers before the outage")
        fleet.relay.cut()  # PostgreSQL is gone for every replica
        before = load.count()
        _until(
            lambda: all(r.ready().get("store") == "unreachable" for r in fleet.replicas),
            what="every replica to report the store outage",
        )
        _until(lambda: load.count() >= before + 150, what="150 answers during the outage")
    assert not load.failures and set(load.statuses) == {200}, load.failures[:5]
    for replica in fleet.replicas:
        detail = replica.ready()
        assert detail["ready"] is True and detail["version"] == 1
        assert "store_error" in detail and detail["store_down_since"] is not None
        metrics = httpx.get(replica.url + "/metrics", timeout=10).text
        assert any(
            line.startswith("mlcd_serve_store_up{") and line.endswith(" 0.0")
            for line in metrics.splitlines()
        ), metrics
    for replica in fleet.replicas:
        replica.process.send_signal(signal.SIGTERM)
    for replica in fleet.replicas:
        code = replica.process.wait(60)
        # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
        assert code in (0, -signal.SIGTERM), (replica.folder / "serve.log").read_text(
            encoding="utf-8"
        )


def test_the_prediction_log_keeps_what_it_writes_during_a_store_outage(
    tmp_path: Path, pg_url: str
) -> None:
    """Segments written while the store is away are registered once it answers again."""
    from urllib.parse import urlsplit

    from mlcd.serve.predlog import LogEntry, PredictionLog
    from mlcd.store import Store, predictions

    parts = urlsplit(pg_url)
    target = (parts.hostname or "127.0.0.1", parts.port or 5432)
    relay = Relay(target)
    port = relay.port
    store = Store(pg_url.replace(f":{parts.port}/", f":{port}/"))
    log = PredictionLog(store, tmp_path, tmp_path / "predictions", flush_interval_s=0.1)
    log.start()
    try:

        def entry(i: int) -> LogEntry:
            ids = [f"r{i}-{k}" for k in range(3)]
            return LogEntry("m", 1, time.time(), 1.0, "ok", ids, {"x": [1.0, 2.0, 3.0]}, [0, 1, 0])

        log.log(entry(0))
        assert log.flush() and log.written_rows == 3
        relay.cut()  # the database goes away
        for i in range(1, 5):
            log.log(entry(i))
            assert log.flush()
        assert (log.pending_rows, log.dropped_rows) == (12, 0)
        relay = Relay(target, port)  # ...and comes back on the same address
        _until(lambda: log.flush() and log.pending_rows == 0, what="the kept segments registered")
        assert (log.written_rows, log.dropped_rows) == (15, 0)
        direct = Store(pg_url)
        try:
            with direct.read() as conn:
                assert predictions.logged_rows(conn, "m") == 15
        finally:
            direct.dispose()
    finally:
        log.close()
        relay.cut()
        store.dispose()
