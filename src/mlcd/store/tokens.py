"""Repository of HTTP bearer tokens: created once, listed without secrets, revoked by name.

A token is ``mlcd_`` followed by 32 random bytes (``secrets.token_urlsafe``). Only its SHA-256
is stored. A fast unsalted hash is enough here, unlike for passwords: the secret has 256 bits
of entropy, so there is no dictionary to try and no point in slowing each guess down; a stolen
table of digests does not give back a usable token. A fast hash also keeps the server's check
to a microsecond or two.

Roles: ``admin`` may do everything; ``write`` includes ``read``; ``predict`` and ``feedback``
are separate grants (a ``predict`` token cannot send labels, a ``feedback`` token cannot
predict where predicting needs a token).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import Connection, select

from mlcd.errors import NotFound, UsageError
from mlcd.store.events import actor, record
from mlcd.store.sql import now
from mlcd.store.tables import tokens

#: Every role, in the order ``mlcd tokens create --role`` lists them.
ROLES = ("predict", "feedback", "read", "write", "admin")
#: What each role grants (besides itself).
_GRANTS: dict[str, frozenset[str]] = {
    "predict": frozenset({"predict"}),
    "feedback": frozenset({"feedback"}),
    "read": frozenset({"read"}),
    "write": frozenset({"write", "read"}),
    "admin": frozenset(ROLES),
}
PREFIX = "mlcd_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


def grants(role: str, need: str) -> bool:
    """Whether a token of ``role`` may do what needs ``need``."""
    granted = _GRANTS.get(role)
    return granted is not None and need in granted


def digest_of(secret: str) -> str:
    """The stored form of a secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def create(conn: Connection, name: str, role: str, expires_at: float | None = None) -> str:
    """Store a new token and return its secret (shown once; only its digest is kept).

    A name may be reused once its previous token is revoked or expired.

    Raises:
        UsageError: a bad name or role, or a live token of that name exists.
    """
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"token name {name!r} is not valid",
            hint="use up to 100 letters, digits, '.', '_', '@' or '-', starting with a letter "
            "or digit (e.g. 'ci-feedback')",
        )
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"choose one of {', '.join(ROLES)}")
    at = now()
    if expires_at is not None and expires_at <= at:
        raise UsageError("the expiry is in the past", hint="give a positive duration, e.g. 30d")
    existing = conn.execute(select(tokens).where(tokens.c.name == name)).mappings().first()
    if existing is not None:
        if state(existing, at) == "active":
            raise UsageError(
                f"a token named {name!r} exists and is active",
                hint=f"choose another name, or run 'mlcd tokens revoke {name}' first",
            )
        conn.execute(tokens.delete().where(tokens.c.name == name))
    secret = PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        tokens.insert().values(
            name=name,
            role=role,
            digest=digest_of(secret),
            created_at=at,
            created_by=actor(),
            expires_at=expires_at,
        )
    )
    record(conn, "token.create", reason=f"token {name!r} with role {role}", at=at)
    return secret


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    """Every token, by name, with its state; never the digest nor the secret."""
    at = now()
    rows = conn.execute(select(tokens).order_by(tokens.c.name)).mappings().all()
    return [
        {
            "name": r["name"],
            "role": r["role"],
            "created_at": r["created_at"],
            "created_by": r["created_by"],
            "expires_at": r["expires_at"],
            "revoked_at": r["revoked_at"],
            "state": state(r, at),
        }
        for r in rows
    ]


def revoke(conn: Connection, name: str) -> None:
    """Revoke a token now (a running server notices within its cache time, a few seconds).

    Raises:
        NotFound: no token has that name.
    """
    at = now()
    result = conn.execute(
        tokens.update()
        .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    if result.rowcount == 0:
        found = conn.execute(select(tokens.c.name).where(tokens.c.name == name)).first()
        if found is None:
            raise NotFound(f"no token named {name!r}", hint="see 'mlcd tokens list'")
        return  # already revoked: nothing to do
    record(conn, "token.revoke", reason=f"token {name!r}", at=at)


def find(conn: Connection, digest: str) -> dict[str, Any] | None:
    """The token whose secret has this digest (any state), or None."""
    row = conn.execute(select(tokens).where(tokens.c.digest == digest)).mappings().first()
    return dict(row) if row is not None else None


def state(row: Any, at: float) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= at:
        return "expired"
    return "active"
