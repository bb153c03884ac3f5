"""Alerts: webhooks only to allowed public hosts, every alert logged and stored as an event."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from mlcd.config import Alerts, Webhook
from mlcd.errors import ConfigError
from mlcd.monitor.alerts import EVENT_KIND, check_webhook, raise_alert, send_webhook
from mlcd.store import Store, events


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"host": self.headers["Host"], "json": json.loads(body)})
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]], type[_Receiver]]]:
    """A real HTTP server on 127.0.0.1 recording the JSON it is sent."""
    handler = type("Handler", (_Receiver,), {"received": [], "status": 204})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", handler.received, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata service
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_webhook_to_a_private_loopback_or_link_local_address_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="private, loopback or link-local") as info:
        check_webhook(url)
    assert "allow_private: true" in (info.value.hint or "")


def test_webhook_must_be_http_and_on_an_allowed_host() -> None:
    with pytest.raises(ConfigError, match="only http:// and https://"):
        check_webhook("ftp://example.com/x")
    with pytest.raises(ConfigError, match=r"not in monitor\.alerts\.allowed_hosts") as info:
        check_webhook("https://evil.example.org/x", ["hooks.slack.com", "*.example.com"])
    assert "add 'evil.example.org'" in (info.value.hint or "")
    target = check_webhook("http://127.0.0.1/x", ["*.example.com", "127.0.0.1"], True)
    assert target.addresses == ("127.0.0.1",)


def test_allowed_private_webhook_is_delivered_with_its_host_header(receiver: Any) -> None:
    url, received, _ = receiver
    status = send_webhook(Webhook(url=url, allow_private=True), {"hello": "world"})
    assert status == 204
    assert received == [{"host": url.split("/")[2], "json": {"hello": "world"}}]


def test_alert_is_logged_sent_and_stored_even_when_one_webhook_is_refused(
    receiver: Any,
    sqlite_url: str,
    open_store: Callable[..., Store],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received, _ = receiver
    store = open_store(sqlite_url)
    alerts = Alerts(
        webhooks=[Webhook(url="http://10.0.0.7/hook"), Webhook(url=url, allow_private=True)]
    )
    with caplog.at_level(logging.WARNING, logger="mlcd.monitor"):
        outcome = raise_alert(
            store,
            alerts,
            model="churn",
            version=3,
            summary="churn crossed its thresholds",
            reasons=["drift in 4 of 6 features"],
            report_digest="ab" * 32,
        )
    assert outcome.delivered == ["http://127.0.0.1/…"]
    assert "private, loopback or link-local" in outcome.failed["http://10.0.0.7/…"]
    assert received[0]["json"]["reasons"] == ["drift in 4 of 6 features"]
    assert received[0]["json"]["text"].startswith("churn crossed its thresholds")
    assert "drift in 4 of 6 features" in caplog.text
    with store.read() as conn:
        (event,) = events.query(conn, model="churn", kind=EVENT_KIND)
    assert (event["version"], event["report_digest"], event["id"]) == (
        3,
        "ab" * 32,
        outcome.event_id,
    )
    assert event["details"]["failed"] == outcome.failed


def test_webhook_answering_an_error_is_recorded_as_not_delivered(receiver: Any) -> None:
    url, _, handler = receiver
    handler.status = 500
    outcome = raise_alert(
        None,
        Alerts(webhooks=[Webhook(url=url, allow_private=True)]),
        model="m",
        version=None,
        summary="s",
        reasons=["r"],
    )
    assert outcome.delivered == []
    assert "answered HTTP 500" in next(iter(outcome.failed.values()))


def test_unreachable_webhook_is_recorded_as_not_delivered() -> None:
    import socket

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = raise_alert(
        None,
        Alerts(webhooks=[Webhook(url=f"http://127.0.0.1:{port}/", allow_private=True)]),
        model="m",
        version=None,
        summary="s",
        reasons=["r"],
    )
    assert "could not be reached" in next(iter(outcome.failed.values()))
