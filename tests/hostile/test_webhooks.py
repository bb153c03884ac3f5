"""Hostile webhook URLs: every disguise of an internal address is refused, redirects are not followed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from mlcd.config import Webhook
from mlcd.errors import ConfigError, MonitorError
from mlcd.monitor.alerts import check_webhook, send_webhook

# Guards against SSRF through an IPv6 spelling of a loopback, private or link-local IPv4
# address (issue 20, item 7): each of these reaches an internal host on a dual-stack network.
DISGUISED = [
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (cloud metadata)
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",  # IPv4-mapped metadata service
    "::127.0.0.1",  # IPv4-compatible (deprecated) loopback
    "64:ff9b::7f00:1",  # NAT64 well-known prefix of 127.0.0.1
    "64:ff9b::c0a8:1",  # NAT64 of 192.168.0.1
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix (RFC 8215)
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo (always a tunnel, never a webhook)
    "fe80::1",  # link-local
    "fc00::1",  # unique local (private)
    "fd12:3456::1",  # unique local (private)
    "::",  # unspecified
    "::1",  # loopback
    "ff02::1",  # multicast, link scope
    "ff0e::1",  # multicast, global scope
    "224.0.0.1",  # IPv4 multicast
    "0.0.0.0",  # IPv4 unspecified
    "100.64.0.1",  # carrier-grade NAT
]


@pytest.mark.parametrize("address", DISGUISED)
def test_webhook_literal_in_a_disguised_internal_form_is_refused(address: str) -> None:
    # Guards against a webhook URL written as an IP literal that hides an internal address.
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(ConfigError, match="private, loopback or link-local") as info:
        check_webhook(f"http://{host}/hook")
    assert "allow_private: true" in (info.value.hint or "")


@pytest.mark.parametrize("address", DISGUISED)
def test_webhook_host_resolving_to_a_disguised_internal_form_is_refused(address: str) -> None:
    # Guards against a public-looking name whose DNS answer is a disguised internal address.
    with pytest.raises(ConfigError, match="private, loopback or link-local"):
        check_webhook(
            "https://hooks.example.com/x", resolver=lambda host, port: ["93.184.215.14", address]
        )


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "2606:4700::1111", "2002:5db8:d70e::", "64:ff9b::5db8:d70e"]
)
def test_webhook_to_a_public_address_in_any_form_is_accepted(address: str) -> None:
    # 6to4 and NAT64 forms of a public address stay usable.
    target = check_webhook("https://hooks.example.com/x", resolver=lambda host, port: [address])
    assert target.addresses == (address,)


class _Redirect(BaseHTTPRequestHandler):
    location = ""
    hits: list[str]

    def do_POST(self) -> None:
        self.hits.append(self.path)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(307 if self.location else 204)
        if self.location:
            self.send_header("Location", self.location)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _server(location: str) -> tuple[HTTPServer, list[str]]:
    hits: list[str] = []
    handler = type("Handler", (_Redirect,), {"location": location, "hits": hits})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@pytest.fixture
def redirect_pair() -> Iterator[tuple[str, list[str], list[str]]]:
    """An internal receiver, and a webhook receiver redirecting to it."""
    inner, inner_hits = _server("")
    outer, outer_hits = _server(f"http://127.0.0.1:{inner.server_port}/internal")
    try:
        yield f"http://127.0.0.1:{outer.server_port}/hook", outer_hits, inner_hits
    finally:
        for server in (inner, outer):
            server.shutdown()
            server.server_close()


def test_webhook_redirect_to_an_internal_address_is_not_followed(
    redirect_pair: tuple[str, list[str], list[str]],
) -> None:
    # Guards against a receiver bouncing the alert (and its payload) to an internal address.
    url, outer_hits, inner_hits = redirect_pair
    with pytest.raises(MonitorError, match="answered HTTP 307"):
        send_webhook(Webhook(url=url, allow_private=True), {"alert": "drift"})
    assert outer_hits == ["/hook"]
    assert inner_hits == []
