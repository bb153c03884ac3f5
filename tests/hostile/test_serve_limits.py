"""Hostile traffic against a real server: huge feedback, bursts of heavy requests, slow clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from mlcd.config import Serve
from mlcd.store import predictions
from tests.serve.conftest import Registry, Running, cancer, cancer_model


@pytest.fixture
def start(registry: Registry, serve: Callable[..., Running]) -> Callable[..., Running]:
    """Register the breast-cancer model and serve it with the given limits."""
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))

    def run(**limits: Any) -> Running:
        return serve(settings=Serve(poll_interval_s=0.2, **limits))

    return run


def _stored_feedback(registry: Registry) -> int:
    with registry.store.read() as conn:
        return len(predictions.feedback_since(conn))


def _labels(count: int) -> list[dict[str, Any]]:
    return [{"request_id": f"invented-{i:08d}", "label": i % 2} for i in range(count)]


def test_oversized_feedback_body_is_413_and_nothing_is_stored(
    start: Callable[..., Running],
    registry: Registry,
) -> None:
    # Guards against memory and database exhaustion through an unbounded feedback body
    # (issue 20, item 3: 59 MB of invented ids were stored).
    server = start(max_body_bytes=10_000)
    body = orjson.dumps(_labels(400))
    assert len(body) > 10_000
    response = server.client.post(
        "/v1/feedback", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": "the request body is larger than the limit of 10000 bytes: send fewer rows "
        "per request (or raise serve.max_body_bytes)",
        "status": 413,
    }

    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies while reading
        for start_at in range(0, len(body), 1000):
            yield body[start_at : start_at + 1000]

    chunked = httpx.post(
        f"{server.url}/v1/feedback", content=chunks(), headers=server.auth, timeout=30
    )
    assert chunked.status_code == 413
    assert _stored_feedback(registry) == 0
    assert server.client.get("/v2/health/ready").status_code == 200


def test_too_many_feedback_labels_is_413_and_nothing_is_stored(
    start: Callable[..., Running],
    registry: Registry,
) -> None:
    # Guards against a feedback request carrying more labels than a predict request may
    # carry rows (issue 20, item 3).
    server = start(max_rows=100)
    too_many = server.client.post("/v1/feedback", json={"labels": _labels(101)})
    assert too_many.status_code == 413
    error = too_many.json()
    assert error["status"] == 413
    assert "101 labels, more than the limit of 100" in error["error"]
    assert "serve.max_rows" in error["error"]
    assert _stored_feedback(registry) == 0
    X, _ = cancer()
    ids = server.client.post(
        "/v1/models/cancer/predict", json=X.head(100).to_dict(orient="records")
    ).json()["request_ids"]
    enough = server.client.post("/v1/feedback", json=[{"request_id": i, "label": 1} for i in ids])
    assert enough.json() == {"stored": 100, "replaced": 0}
    assert _stored_feedback(registry) == 100


def test_burst_of_heavy_requests_gets_fast_503s_and_health_still_answers(
    start: Callable[..., Running],
) -> None:
    # Guards against heavy requests queueing without bound and starving the health probes
    # (issue 20, item 5: 300 x 5,000 rows, no 503, readiness timed out).
    rows = 4000
    server = start(max_rows_in_flight=rows)  # one heavy request at a time
    X, _ = cancer()
    frame = pd.DataFrame(np.resize(X.to_numpy(), (rows, X.shape[1])), columns=X.columns)
    body = orjson.dumps({"columns": list(X.columns), "data": frame.to_numpy().tolist()})
    statuses: list[int] = []
    errors: list[dict[str, Any]] = []
    first = threading.Event()

    def heavy() -> None:
        with httpx.Client(timeout=300) as client:
            response = client.post(
                f"{server.url}/v1/models/cancer/predict",
                content=body,
                headers={"content-type": "application/json"},
            )
        statuses.append(response.status_code)
        if response.status_code != 200:
            errors.append(response.json())
        first.set()

    threads = [threading.Thread(target=heavy) for _ in range(40)]
    for thread in threads:
        thread.start()
    assert first.wait(120), "no heavy request was answered"
    with httpx.Client(timeout=120) as probe:
        ready = probe.get(f"{server.url}/v2/health/ready")
        live = probe.get(f"{server.url}/v2/health/live")
    answered_when_probed = len(statuses)
    for thread in threads:
        thread.join(300)
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert answered_when_probed < 40  # the probes did not wait for the burst to finish
    assert len(statuses) == 40
    assert set(statuses) == {200, 503}
    assert all(e["status"] == 503 and "serve.max_rows_in_flight" in e["error"] for e in errors)
    assert (
        server.client.post(
            "/v1/models/cancer/predict", json=X.head(2).to_dict(orient="records")
        ).status_code
        == 200
    )


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (a read returns end-of-file or a reset)."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_header_trickling_connections_are_closed(start: Callable[..., Running]) -> None:
    # Guards against slowloris: connections that send headers one byte at a time and hold a
    # server slot for ever (issue 20, item 5: 1,000 such connections were never closed).
    server = start(header_timeout_s=1.0)
    port = int(server.url.rsplit(":", 1)[1])
    socks = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setblocking(False)
        sock.send(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(sock)
    open_socks = set(range(len(socks)))
    deadline = time.monotonic() + 60
    try:
        while open_socks and time.monotonic() < deadline:
            for i in list(open_socks):
                try:
                    socks[i].send(b"a")  # one more header byte, never the end of the headers
                except OSError:
                    open_socks.discard(i)
                    continue
                if _closed(socks[i]):
                    open_socks.discard(i)
            time.sleep(0.1)
    finally:
        for sock in socks:
            sock.close()
    assert not open_socks, f"{len(open_socks)} trickling connections were never closed"
    assert server.client.get("/v2/health/live").json() == {"live": True}
    X, _ = cancer()
    answer = server.client.post("/v1/models/cancer/predict", json=X.head(1).to_dict("records"))
    assert answer.status_code == 200


def test_body_trickling_request_gets_408_and_is_closed(start: Callable[..., Running]) -> None:
    # Guards against a client that sends complete headers and then the body one byte at a
    # time, holding the request open for ever.
    server = start(timeout_s=1.0)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/models/cancer/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n["
        )
        answer = b""
        deadline = time.monotonic() + 60
        sock.setblocking(False)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                chunk = None
            except OSError:
                break
            if chunk == b"":
                break  # the server closed the connection
            if chunk:
                answer += chunk
                continue
            try:
                sock.send(b" ")  # one more body byte
            except OSError:
                pass
            time.sleep(0.1)
    head, _sep, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert orjson.loads(body)["error"].startswith("the request body did not arrive within 1 s")
    assert server.client.get("/v2/health/live").status_code == 200
