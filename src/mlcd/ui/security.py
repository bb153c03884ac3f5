"""Who may see and change what in ``mlcd ui``: the same tokens and roles as ``mlcd serve``.

* Bound to loopback (the default), pages are open and writes are allowed; a token, when one
  is given, names the actor in the audit trail.
* Bound beyond loopback, every page needs a ``read`` token and every write a ``write`` one
  (``admin`` has both): ``mlcd tokens create NAME --role read|write`` or ``MLCD_UI_TOKEN``
  (admin) for simple setups. A browser signs in once (``/login``): the token travels in an
  HttpOnly, SameSite=Strict cookie; scripts send ``Authorization: Bearer``.
* Every state-changing request must come from the UI's own origin (``Origin``, or
  ``Referer`` when a browser sends no ``Origin``): a cross-site form or script gets 403.
* Hosts outside the allowed list get 400 (DNS rebinding); every response carries a
  Content-Security-Policy of ``'self'``, ``X-Frame-Options: DENY`` and ``nosniff``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlcd.serve.auth import Authenticator, Identity, Refused, is_loopback
from mlcd.store.tokens import digest_of, grants

COOKIE = "mlcd_ui_token"
ENV_TOKEN = "MLCD_UI_TOKEN"
_MIN_STATIC_LENGTH = 24

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# plotly.js sets inline styles on the elements it draws: styles may be inline, scripts never.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: plotly's parallel coordinates draw with WebGL through regl, which compiles its shaders'
#: drawing code with ``new Function``: only the compare page allows that (still no inline or
#: foreign script anywhere).
CSP_EVAL = CSP.replace(b"script-src 'self'", b"script-src 'self' 'unsafe-eval'")
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI: the security headers on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        csp = CSP_EVAL if scope["path"] == "/compare" else CSP
        headers = [*HEADERS, (b"content-security-policy", csp)]

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, secured)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the token's identity (None: anonymous on loopback)."""

    identity: Identity | None
    loopback: bool

    @property
    def actor(self) -> str | None:
        """The audit trail's actor: the token's name, else None (the OS user is used)."""
        return None if self.identity is None else self.identity.name

    @property
    def can_write(self) -> bool:
        if self.identity is None:
            return self.loopback
        return grants(self.identity.role, "write")


class Access:
    """Decides reads and writes for the UI (see the module docstring)."""

    def __init__(self, authenticator: Authenticator, host: str) -> None:
        self.authenticator = authenticator
        self.loopback = is_loopback(host)

    @staticmethod
    def static_tokens(environ: Mapping[str, str]) -> dict[str, Identity]:
        """``MLCD_UI_TOKEN`` as an admin token (by digest), if set and long enough."""
        from mlcd.errors import ConfigError

        secret = environ.get(ENV_TOKEN)
        if not secret:
            return {}
        if len(secret) < _MIN_STATIC_LENGTH:
            raise ConfigError(
                f"{ENV_TOKEN} is shorter than {_MIN_STATIC_LENGTH} characters",
                hint="use a random secret, or 'mlcd tokens create NAME --role write'",
            )
        digest = digest_of(secret)
        return {digest: Identity(f"env:{ENV_TOKEN}", "admin", digest)}

    def identify(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Identity | None:
        """The identity behind the request's bearer token or cookie (None when it has none).

        Raises:
            Refused: 401 for a malformed, unknown, expired or revoked token.
        """
        secret = None
        header = headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip() or len(value) > 512:
                raise Refused(401, "malformed", "send the token as 'Authorization: Bearer <token>'")
            secret = value.strip()
        elif cookies.get(COOKIE):
            secret = cookies[COOKIE][:512]
        if secret is None:
            return None
        digest = digest_of(secret)
        hit, identity = self.authenticator.cached(digest)
        if not hit:
            identity = self.authenticator.lookup(digest)
        return self.authenticator.verify(identity, digest, ("read", "write", "admin"))

    def viewer(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> Viewer:
        """Who is reading; beyond loopback a ``read`` token is required.

        Raises:
            Refused: 401 without a valid token where one is needed, 403 without ``read``.
        """
        identity = self.identify(headers, cookies)
        if identity is None and not self.loopback:
            raise Refused(
                401,
                "missing",
                "this UI is reachable beyond this machine: sign in with a token "
                "('mlcd tokens create NAME --role read')",
            )
        if identity is not None and not grants(identity.role, "read"):
            raise Refused(403, "forbidden", f"token {identity.name!r} cannot read the UI")
        return Viewer(identity, self.loopback)

    def writer(self, viewer: Viewer) -> Viewer:
        """The viewer, if it may change things.

        Raises:
            Refused: 401 with no token beyond loopback, 403 for a token without ``write``.
        """
        if viewer.can_write:
            return viewer
        if viewer.identity is None:
            raise Refused(401, "missing", "changes need a token with the role 'write'")
        raise Refused(
            403,
            "forbidden",
            f"token {viewer.identity.name!r} has the role "
            f"{viewer.identity.role!r}; changes need 'write'",
        )


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a state-changing request comes from the UI's own pages.

    The browser's ``Origin`` (or, failing that, ``Referer``) must name the host the request
    was sent to; a request with neither is refused too (no browser sends a form that way).
    """
    host = headers.get("host", "")
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc == host
