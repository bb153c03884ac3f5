"""Who may call what on ``mlcd serve``: bearer tokens, roles, trusted hosts, security headers.

Three pure ASGI layers sit in front of the app (outermost first):

1. :class:`SecureTransport` adds the security headers to every response and drops a client's
   ``x-request-id`` unless it is well-formed and short (the server then makes its own).
2. Starlette's ``TrustedHostMiddleware`` answers 400 to a ``Host`` header not in
   :func:`allowed_hosts` (DNS rebinding, poisoned absolute URLs).
3. :class:`AuthGate` checks ``Authorization: Bearer <token>`` against the route's need:
   feedback always needs ``feedback``; predict, infer and model metadata need ``predict`` once
   the server is bound beyond loopback (unless ``serve.public_predict``); health, ``/metrics``,
   ``/v2`` and the API docs stay open. 401 for a missing, unknown, expired or revoked token
   (with ``WWW-Authenticate: Bearer``), 403 for a valid token without the role; both counted in
   ``mlcd_serve_auth_failures_total{reason}``.

Tokens come from the metadata store (``mlcd tokens create``) or, for simple setups, from the
environment: ``MLCD_SERVE_TOKEN`` (admin), ``MLCD_PREDICT_TOKEN``, ``MLCD_FEEDBACK_TOKEN``.
A looked-up token is cached for ``ttl_s`` seconds (default 5), so the predict path does not
query the database per request and a revocation takes effect within that time.
Secrets are compared only as SHA-256 digests, with :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mlcd.errors import ConfigError
from mlcd.store.tokens import digest_of, grants, state

if TYPE_CHECKING:
    from mlcd.store import Store

log = logging.getLogger("mlcd.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The token name of the request being handled (the audit actor); None when unauthenticated.
current_actor: ContextVar[str | None] = ContextVar("mlcd_serve_actor", default=None)

#: Static tokens from the environment and the role each one has.
ENV_TOKENS = {
    "MLCD_SERVE_TOKEN": "admin",
    "MLCD_PREDICT_TOKEN": "predict",
    "MLCD_FEEDBACK_TOKEN": "feedback",
}
_MIN_STATIC_LENGTH = 24
REASONS = ("missing", "malformed", "invalid", "expired", "revoked", "forbidden", "unavailable")
_CACHE_MAX = 10_000
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,48}")


@dataclass(frozen=True)
class Identity:
    """A token that was found: its name (the actor), role and lifetime."""

    name: str
    role: str
    digest: str
    expires_at: float | None = None
    revoked: bool = False


def static_tokens(environ: Mapping[str, str]) -> dict[str, Identity]:
    """The environment's tokens by digest (see :data:`ENV_TOKENS`).

    Raises:
        ConfigError: a token shorter than 24 characters (guessable).
    """
    out: dict[str, Identity] = {}
    for variable, role in ENV_TOKENS.items():
        secret = environ.get(variable)
        if not secret:
            continue
        if len(secret) < _MIN_STATIC_LENGTH:
            raise ConfigError(
                f"{variable} is shorter than {_MIN_STATIC_LENGTH} characters",
                hint="use a random secret, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))', or 'mlcd tokens create'",
            )
        digest = digest_of(secret)
        out[digest] = Identity(f"env:{variable}", role, digest)
    return out


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, extra: Sequence[str] = ()) -> list[str]:
    """``Host`` values accepted: localhost, 127.0.0.1, [::1], the bound address, and ``extra``."""
    hosts = ["localhost", "127.0.0.1", "[::1]"]
    if bound not in ("0.0.0.0", "::", ""):
        hosts.append(f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound)
    return list(dict.fromkeys([*hosts, *extra]))


class Refused(Exception):
    """A request without the right token: its status, reason label and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Authenticator:
    """Finds the identity behind a bearer secret: static tokens, then the store, cached."""

    def __init__(
        self,
        store: Store | None,
        static: Mapping[str, Identity] | None = None,
        ttl_s: float = 5.0,
    ) -> None:
        self.store = store
        self.static = dict(static or {})
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    def cached(self, digest: str) -> tuple[bool, Identity | None]:
        """(hit, identity) from the static tokens and the cache, without I/O."""
        found = self.static.get(digest)
        if found is not None:
            return True, found
        entry = self._cache.get(digest)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def lookup(self, digest: str) -> Identity | None:
        """The stored token with this digest (blocking: a database read), and cache it."""
        identity = None
        if self.store is not None:
            from mlcd.store import tokens

            with self.store.read() as conn:
                row = tokens.find(conn, digest)
            if row is not None:
                identity = Identity(
                    row["name"],
                    row["role"],
                    row["digest"],
                    row["expires_at"],
                    row["revoked_at"] is not None,
                )
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()  # a flood of random secrets cannot grow memory
        self._cache[digest] = (time.monotonic() + self.ttl_s, identity)
        return identity

    def verify(self, identity: Identity | None, digest: str, need: Sequence[str]) -> Identity:
        """The identity if it may do one of ``need``.

        Raises:
            Refused: 401 unknown, expired or revoked; 403 the role does not grant it.
        """
        if identity is None or not hmac.compare_digest(identity.digest, digest):
            raise Refused(401, "invalid", "the bearer token is not valid")
        if identity.revoked or identity.expires_at is not None:
            what = state(
                {"revoked_at": 1 if identity.revoked else None, "expires_at": identity.expires_at},
                time.time(),
            )
            if what != "active":
                gone = "been revoked" if what == "revoked" else "expired"
                raise Refused(401, what, f"the bearer token has {gone}: ask for a new one")
        if not any(grants(identity.role, n) for n in need):
            raise Refused(
                403,
                "forbidden",
                f"token {identity.name!r} has the role {identity.role!r}; this endpoint "
                f"needs {' or '.join(repr(n) for n in need)}",
            )
        return identity


def bearer_digest(headers: Sequence[tuple[bytes, bytes]], need: Sequence[str]) -> str:
    """The digest of the request's bearer secret.

    Raises:
        Refused: 401 when the header is missing or not ``Bearer <token>``.
    """
    value = None
    for key, val in headers:
        if key == b"authorization":
            value = val
            break
    if value is None:
        raise Refused(
            401,
            "missing",
            f"this endpoint needs a token with the role {need[0]!r}: send "
            f"'Authorization: Bearer <token>' (create one with 'mlcd tokens create NAME "
            f"--role {need[0]}')",
        )
    scheme, _sep, secret = value.partition(b" ")
    secret = secret.strip()
    if scheme.lower() != b"bearer" or not secret or len(secret) > 512:
        raise Refused(401, "malformed", "send the token as 'Authorization: Bearer <token>'")
    return digest_of(secret.decode("latin-1"))


def failure_counter(registry: Any) -> Callable[[str], None]:
    """``mlcd_serve_auth_failures_total{reason}`` in ``registry``; returns its increment."""
    from prometheus_client import Counter

    counter = Counter(
        "mlcd_serve_auth_failures",
        "Requests refused for a missing, malformed, invalid, expired, revoked or "
        "insufficient token.",
        ["reason"],
        registry=registry,
    )
    children = {reason: counter.labels(reason) for reason in REASONS}
    return lambda reason: children[reason].inc()


class AuthGate:
    """Pure ASGI: refuse requests whose route needs a token they do not carry."""

    def __init__(
        self,
        app: Any,
        authenticator: Authenticator,
        open_predict: bool,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.auth = authenticator
        self.open_predict = open_predict
        self.on_failure = on_failure

    def need(self, method: str, path: str) -> tuple[str, ...] | None:
        """What the route needs, or None when it is open.

        A method the route does not have needs nothing here: the app answers 405, whoever asks.
        """
        scoring = path.endswith(("/predict", "/infer"))
        if path == "/v1/feedback":
            return ("feedback",) if method == "POST" else None
        if path == "/v1/fleet":  # like model metadata: open where predict is open
            if self.open_predict or method not in ("GET", "HEAD"):
                return None
            return ("predict", "read")
        if self.open_predict or not path.startswith(("/v1/models/", "/v2/models/")):
            return None
        if method == "POST" and scoring:
            return ("predict",)
        if method in ("GET", "HEAD") and not scoring:
            return ("predict", "read")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = self.need(scope["method"], scope["path"])
        if need is None:
            await self.app(scope, receive, send)
            return
        try:
            identity = await self.check(scope["headers"], need)
        except Refused as exc:
            if self.on_failure is not None:
                self.on_failure(exc.reason)
            await _refuse(send, exc)
            return
        token = current_actor.set(identity.name)
        scope.setdefault("state", {})["actor"] = identity.name
        try:
            await self.app(scope, receive, send)
        finally:
            current_actor.reset(token)

    async def check(self, headers: Sequence[tuple[bytes, bytes]], need: Sequence[str]) -> Identity:
        """The caller's identity for ``need``; a database read only on a cache miss.

        Raises:
            Refused: the token is missing, invalid, expired, revoked or lacks the role.
        """
        digest = bearer_digest(headers, need)
        hit, identity = self.auth.cached(digest)
        if not hit:
            try:
                identity = await asyncio.to_thread(self.auth.lookup, digest)
            except Exception as exc:
                log.error("token lookup failed: %s", exc)
                raise Refused(503, "unavailable", "tokens cannot be checked now; retry") from exc
        return self.auth.verify(identity, digest, need)


async def _refuse(send: Send, exc: Refused) -> None:
    body = orjson.dumps({"error": exc.message, "status": exc.status})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the body was not read
    ]
    if exc.status == 401:
        challenge = b'Bearer realm="mlcd"'
        if exc.reason != "missing":
            challenge += b', error="invalid_token"'
        headers.append((b"www-authenticate", challenge))
    elif exc.status == 403:
        headers.append((b"www-authenticate", b'Bearer realm="mlcd", error="insufficient_scope"'))
    elif exc.status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_CSP = b"default-src 'none'; frame-ancestors 'none'"
#: Swagger UI and ReDoc load their script and style from jsDelivr and run an inline script.
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.redoc.ly; worker-src blob:; frame-ancestors 'none'"
)


class SecureTransport:
    """Pure ASGI: security headers on every response; only safe client request ids."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        for key, value in headers:
            if key == b"x-request-id" and not _REQUEST_ID.fullmatch(value):
                scope["headers"] = [h for h in headers if h[0] != b"x-request-id"]
                break
        extra = [*_HEADERS, (b"content-security-policy",
                             _DOCS_CSP if scope["path"] in ("/docs", "/redoc") else _CSP)]  # fmt: skip
        if scope.get("scheme") == "https":
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, secured)
