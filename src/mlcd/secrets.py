"""Secrets out of every output: passwords in URLs, tokens in queries and webhook paths.

Store and remote URLs carry passwords (``postgresql://mlcd:PASSWORD@db/mlcd``), object-store
URLs keys (``s3://KEY:SECRET@bucket``), webhooks a token in their path
(``https://hooks.slack.com/services/T0/B0/XXXXXXXX``) or query (``?token=...``). mlcd prints
URLs in many places (``config show``, ``doctor``, errors, push/pull reports) and stores some
in events; rather than trusting each place to remember, the CLI masks everything it writes
(``mask_text`` on stdout and stderr) and the store masks what it records. ``***`` replaces
what is hidden; the rest of the URL stays, so the message still says which server it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
#: ``scheme://user:password@`` (the user stays, the password goes).
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)")
#: ``?token=...`` / ``&password=...`` and other secret-looking query parameters.
_QUERY = re.compile(
    r"(?P<head>[?&;](?:[a-z_\-]*(?:token|password|passwd|pwd|secret|signature|sig|key|"
    r"credential|auth)[a-z_\-]*)=)(?P<secret>[^&\s#'\"]+)",
    re.IGNORECASE,
)
#: ``Authorization: Bearer xxx`` and ``Bearer xxx`` as printed.
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})")
#: A long random-looking path segment of an http(s) URL (webhook tokens).
_URL = re.compile(r"\bhttps?://[^\s'\"<>]+", re.IGNORECASE)
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_\-]{20,}$")
_HEX = re.compile(r"^[0-9a-f]+$")
#: Keys whose values are secrets wherever they appear in a document.
_SECRET_KEYS = re.compile(
    r"(password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)",
    re.IGNORECASE,
)
#: Environment variables whose values are secrets (their values are masked in outputs).
_SECRET_ENV = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|ACCESS_KEY)", re.IGNORECASE)
_MIN_KNOWN = 6


def _segments(match: re.Match[str]) -> str:
    url = match.group(0)
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if not slash:
        return url
    query = ""
    for mark in ("?", "#"):
        if mark in path:
            path, _, tail = path.partition(mark)
            query = mark + tail + query
            break
    parts = [
        MASK if _TOKEN_SEGMENT.match(p) and not _HEX.match(p) else p for p in path.split("/")
    ]
    return f"{scheme}://{host}/{'/'.join(parts)}{query}"


def mask_url(url: str) -> str:
    """``url`` with its password, secret query values and token-like path segments masked."""
    return mask_text(url)


def known_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never be printed: secret-named ``MLCD_*``/cloud variables, and the
    passwords inside ``MLCD_STORE`` / ``MLCD_ARTIFACTS`` / ``MLCD_REMOTE``."""
    environ = os.environ if environ is None else environ
    found = []
    for name, value in environ.items():
        if not value:
            continue
        if _SECRET_ENV.search(name) and name.startswith(("MLCD_", "AWS_", "AZURE_", "GOOGLE_")):
            found.append(value)
        if name in ("MLCD_STORE", "MLCD_ARTIFACTS", "MLCD_REMOTE"):
            match = _USERINFO.search(value)
            if match:
                found.append(match.group("secret"))
    return [s for s in found if len(s) >= _MIN_KNOWN]


def mask_text(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every secret this module recognises replaced by ``***``.

    Args:
        text: any output.
        known: literal secrets to hide wherever they appear (e.g. :func:`known_secrets`).
    """
    if not text:
        return text
    for secret in known:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
        text = _URL.sub(_segments, text)
    if "=" in text:
        text = _QUERY.sub(lambda m: m.group("head") + MASK, text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: m.group("head") + MASK, text)
    return text


def mask_obj(value: Any, known: Iterable[str] = ()) -> Any:
    """A JSON-like document with secret-named keys' values and secrets in strings masked."""
    known = list(known)
    if isinstance(value, Mapping):
        return {
            k: (
                MASK
                if isinstance(k, str) and _SECRET_KEYS.search(k) and isinstance(v, str) and v
                else mask_obj(v, known)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_obj(v, known) for v in value]
    if isinstance(value, str):
        return mask_text(value, known)
    return value
