"""Alerts: a webhook POST, a log line and an ``events`` row for every alert.

Webhook URLs come from ``monitor.alerts.webhooks`` and must pass three checks before a byte
is sent: the scheme is http or https; the host is in ``monitor.alerts.allowed_hosts`` when
that list is not empty (``*.example.com`` matches sub-domains); and every address the host
resolves to is a public one — private, loopback, link-local (cloud metadata services live
at 169.254.169.254), multicast, reserved and unspecified addresses are refused unless the
webhook says ``allow_private: true``, and so is an IPv6 address that embeds such an IPv4
address (IPv4-mapped, IPv4-compatible, 6to4, NAT64) or is a Teredo tunnel. The request then goes to the address that was checked
(the Host header and TLS name stay the URL's), so a DNS answer that changes between check
and connect cannot redirect it; redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlcd.errors import ConfigError, MonitorError

if TYPE_CHECKING:
    from mlcd.config import Alerts, Webhook
    from mlcd.store import Store

log = logging.getLogger("mlcd.monitor")
EVENT_KIND = "monitor.alert"
_TIMEOUT_S = 10.0

Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IP literals resolve to themselves)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MonitorError(
            f"webhook host {host!r} does not resolve: {exc}",
            hint="check the host name in monitor.alerts.webhooks",
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: site-local translators
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _embedded(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through a translation or a tunnel."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client): both are reached
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _is_private(address: str) -> bool:
    """Whether ``address``, or an IPv4 address it embeds (mapped, 6to4, Teredo, NAT64), is not
    a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None or ip in _NAT64_LOCAL:
            return True  # a tunnel or a local translator: never a webhook receiver
        if ip in _NAT64:
            candidates = []  # the prefix itself counts as reserved; judge the IPv4 behind it
        candidates.extend(_embedded(ip))
    return any(
        not c.is_global
        or c.is_multicast
        or c.is_reserved
        or c.is_unspecified
        or c.is_loopback
        or c.is_link_local
        or c.is_private
        for c in candidates
    )


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def redact(url: str) -> str:
    """A webhook URL fit for logs: scheme and host only (paths often carry tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


@dataclass(frozen=True)
class Target:
    """A webhook URL that passed the checks, and the addresses it may be sent to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def check_webhook(
    url: str,
    allowed_hosts: Sequence[str] = (),
    allow_private: bool = False,
    resolver: Resolver = resolve,
) -> Target:
    """Check a webhook URL against the rules in the module docstring.

    Raises:
        ConfigError: the URL is refused (bad scheme, host not allowed, private address).
        MonitorError: the host does not resolve.
    """
    parts = urlsplit(url)
    where = f"monitor.alerts.webhooks: {redact(url)}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: only http:// and https:// URLs with a host can receive alerts",
            hint="write the webhook as https://host/path",
        )
    host = parts.hostname
    if allowed_hosts and not _host_allowed(host, allowed_hosts):
        raise ConfigError(
            f"{where}: host {host!r} is not in monitor.alerts.allowed_hosts "
            f"({', '.join(allowed_hosts)})",
            hint=f"add {host!r} to monitor.alerts.allowed_hosts if it is meant to get alerts",
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = tuple(resolver(host, port))
    if not addresses:
        raise MonitorError(f"{where}: host {host!r} resolves to no address")
    if not allow_private:
        private = [a for a in addresses if _is_private(a)]
        if private:
            raise ConfigError(
                f"{where}: refused, {host!r} resolves to a private, loopback or link-local "
                f"address ({', '.join(private)})",
                hint="alerts go to public hosts only; set 'allow_private: true' on this "
                "webhook if the internal address is intended",
            )
    return Target(url, host, port, addresses)


def send_webhook(
    webhook: Webhook,
    payload: dict[str, Any],
    allowed_hosts: Sequence[str] = (),
    resolver: Resolver = resolve,
    timeout_s: float = _TIMEOUT_S,
) -> int:
    """POST ``payload`` as JSON to a checked webhook; returns the HTTP status.

    Raises:
        ConfigError: the URL is refused.
        MonitorError: no address answered, or the answer was not 2xx.
    """
    import httpx

    target = check_webhook(webhook.url, allowed_hosts, webhook.allow_private, resolver)
    parts = urlsplit(target.url)
    body = json.dumps(payload, default=str).encode()
    default_port = 443 if parts.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    last_error: Exception | None = None
    for address in target.addresses:
        literal = f"[{address}]" if ":" in address else address
        pinned = urlunsplit(
            (parts.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, "")
        )
        try:
            with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as c:
                response = c.post(
                    pinned,
                    content=body,
                    headers={"Host": host_header, "Content-Type": "application/json"},
                    extensions={"sni_hostname": target.host},
                )
        except httpx.HTTPError as exc:
            last_error = exc
            continue
        if response.is_success:
            return response.status_code
        raise MonitorError(
            f"webhook {redact(target.url)} answered HTTP {response.status_code}",
            hint="check the webhook URL and that the receiver accepts JSON POSTs",
        )
    raise MonitorError(
        f"webhook {redact(target.url)} could not be reached: {last_error}",
        hint="check the receiver is up and reachable from this machine",
    )


@dataclass(frozen=True)
class AlertOutcome:
    """Where an alert went: the event id, and each webhook delivered or not (and why)."""

    event_id: int | None
    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "delivered": self.delivered, "failed": self.failed}


def raise_alert(
    store: Store | None,
    alerts: Alerts,
    *,
    model: str,
    version: int | None,
    summary: str,
    reasons: Sequence[str],
    report_digest: str | None = None,
    details: dict[str, Any] | None = None,
    resolver: Resolver = resolve,
) -> AlertOutcome:
    """Log an alert, send it to every configured webhook and record it as an event.

    A webhook that is refused or fails does not stop the others; the outcome and the event
    say which did not get it and why.
    """
    log.warning("%s: %s", summary, "; ".join(reasons))
    payload = {
        "source": "mlcd",
        "kind": EVENT_KIND,
        "text": f"{summary}: " + "; ".join(reasons),
        "model": model,
        "version": version,
        "summary": summary,
        "reasons": list(reasons),
        "report_digest": report_digest,
        **(details or {}),
    }
    delivered: list[str] = []
    failed: dict[str, str] = {}
    for webhook in alerts.webhooks:
        name = redact(webhook.url)
        try:
            send_webhook(webhook, payload, alerts.allowed_hosts, resolver)
            delivered.append(name)
        except (ConfigError, MonitorError) as exc:
            log.error("alert not delivered to %s: %s", name, exc.message)
            failed[name] = exc.message
    event_id = None
    if store is not None:
        from mlcd.store import events

        event_details = {"reasons": list(reasons), "delivered": delivered, "failed": failed}
        event_id = store.transact(
            lambda conn: events.record(
                conn,
                EVENT_KIND,
                model=model,
                version=version,
                reason=summary,
                report_digest=report_digest,
                details=event_details,
            )
        )
    return AlertOutcome(event_id, delivered, failed)
