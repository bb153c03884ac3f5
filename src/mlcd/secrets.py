"""Secrets out of every output: passwords in URLs, tokens in queries and webhook paths.

Store and remote URLs carry passwords (``postgresql://mlcd:PASSWORD@db/mlcd``), object-store
URLs keys (``s3://KEY:SECRET@bucket``), webhooks a token in their path
(``https://hooks.slack.com/services/T0/B0/XXXXXXXX``) or query (``?token=...``). mlcd prints
URLs in many places (``config show``, ``doctor``, errors, push/pull reports) and stores some
in events; rather than trusting each place to remember, the CLI masks everything it writes
(``mask_text`` on stdout and stderr) and the store masks what it records. ``***`` replaces
what is hidden; the rest of the URL stays, so the message still says which server it is.

Patterns alone miss a secret that does not look like one (a short webhook token, a password
quoted by a driver without its URL), so the secrets of the configuration are also
*remembered* when it is loaded (:func:`remember_config`) and hidden literally wherever they
appear afterwards in this process.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
#: ``scheme://user:password@`` (the user stays, the password goes; it may hold ``@``/``:``).
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s/]+)(?=@)")
#: ``?token=...`` / ``&password=...`` and other secret-looking query parameters.
_QUERY = re.compile(
    r"(?P<head>[?&;](?:[a-z0-9_\-]*(?:token|password|passwd|pwd|secret|signature|sig|key|"
    r"credential|auth)[a-z0-9_\-]*)=)(?P<secret>[^&\s#'\"]+)",
    re.IGNORECASE,
)
#: ``Authorization: Bearer xxx`` and ``Bearer xxx`` as printed.
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=\-]{8,})")
#: An http(s) URL (its path may hold a webhook token).
_URL = re.compile(r"\bhttps?://[^\s'\"<>]+", re.IGNORECASE)
_TOKEN_SEGMENT = re.compile(r"^(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_\-]{20,}$")
_HEX = re.compile(r"^[0-9a-f]+$")
#: Webhook URLs: everything after these path markers (or the whole path on a ``hook`` host)
#: is the credential.
_HOOK_PATH = re.compile(r"(?i)^(.*?/(?:webhooks?|webhookb2|hooks))(/.+)$")
#: Words of a key whose value is a secret wherever it appears in a document.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
        "signature",
        "passphrase",
    }
)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("secret", "key"),
        ("account", "key"),
        ("sas", "token"),
    }
)
_HOOK_WORDS = frozenset({"webhook", "webhooks", "hook", "hooks"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
#: Environment variables whose values are secrets (their values are masked in outputs).
_SECRET_ENV = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|ACCESS_KEY)", re.IGNORECASE)
_MIN_KNOWN = 6
_REMEMBERED: set[str] = set()


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
    if "hook" in host.lower():  # hooks.slack.com, *.webhook.office.com: the path is the key
        return f"{scheme}://{host}/{MASK}{query}" if path else url
    hook = _HOOK_PATH.match("/" + path)
    if hook:
        return f"{scheme}://{host}{hook.group(1)}/{MASK}{query}"
    parts = [MASK if _TOKEN_SEGMENT.match(p) and not _HEX.match(p) else p for p in path.split("/")]
    return f"{scheme}://{host}/{'/'.join(parts)}{query}"


def mask_url(url: str) -> str:
    """``url`` with its password, secret query values and token-like path segments masked."""
    return mask_text(url)


def _key_is_secret(key: str) -> tuple[bool, bool]:
    """(the value of ``key`` is a secret, ``key`` names a webhook)."""
    words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", key).lower()) if w]
    secret = any(w in _SECRET_WORDS for w in words) or any(
        pair in _SECRET_PAIRS for pair in itertools.pairwise(words)
    )
    return secret, any(w in _HOOK_WORDS for w in words)


def secrets_in_url(url: str, webhook: bool = False) -> list[str]:
    """The literal secrets of one URL: its password (as written and decoded), its secret
    query values and, for a webhook, its whole path and query."""
    from urllib.parse import unquote

    found: list[str] = []
    for match in _USERINFO.finditer(url):
        found += [match.group("secret"), unquote(match.group("secret"))]
    for match in _QUERY.finditer(url):
        found.append(match.group("secret"))
    if webhook and "://" in url:
        rest = url.split("://", 1)[1]
        _, slash, path = rest.partition("/")
        if slash and path:
            found.append("/" + path)
    return [s for s in found if len(s) >= _MIN_KNOWN]


def secrets_in(document: Any, webhook: bool = False) -> list[str]:
    """The literal secrets of a configuration document (nested dicts and lists): the values
    of secret-named keys, URL passwords and secret query values, webhook paths."""
    found: list[str] = []
    if isinstance(document, Mapping):
        for key, value in document.items():
            secret, hook = _key_is_secret(str(key))
            if secret and isinstance(value, str):
                found.append(value)
            else:
                found += secrets_in(value, webhook or hook)
    elif isinstance(document, list | tuple):
        for value in document:
            found += secrets_in(value, webhook)
    elif isinstance(document, str):
        found += secrets_in_url(document, webhook)
    return [s for s in found if len(s) >= _MIN_KNOWN]


def remember(*secrets: str) -> None:
    """Hide these literal strings in everything masked from now on, in this process."""
    _REMEMBERED.update(s for s in secrets if s and len(s) >= _MIN_KNOWN)


def remembered(also: Iterable[str] = ()) -> list[str]:
    """What was :func:`remember`-ed, with ``also``, longest first."""
    return sorted({*_REMEMBERED, *also}, key=len, reverse=True)


def remember_config(document: Any) -> None:
    """Remember the secrets of a loaded configuration (see :func:`secrets_in`)."""
    remember(*secrets_in(document))


def known_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never be printed: secret-named ``MLCD_*``/cloud variables, the
    passwords inside ``MLCD_STORE`` / ``MLCD_ARTIFACTS`` / ``MLCD_REMOTE``, and what was
    :func:`remember`-ed (longest first, so a secret containing another is hidden whole)."""
    environ = os.environ if environ is None else environ
    found = set(_REMEMBERED)
    for name, value in environ.items():
        if not value:
            continue
        if _SECRET_ENV.search(name) and name.startswith(("MLCD_", "AWS_", "AZURE_", "GOOGLE_")):
            found.add(value)
        if name in ("MLCD_STORE", "MLCD_ARTIFACTS", "MLCD_REMOTE"):
            found.update(secrets_in_url(value))
    return sorted((s for s in found if len(s) >= _MIN_KNOWN), key=len, reverse=True)


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


def _mask_hook(value: str) -> str:
    """A webhook URL: scheme and host only."""
    if "://" not in value:
        return value
    scheme, _, rest = value.partition("://")
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    return f"{scheme}://{host}/{MASK}" if rest != host else value


def mask_obj(value: Any, known: Iterable[str] = (), webhook: bool = False) -> Any:
    """A JSON-like document with secret-named keys' values, webhook URLs' paths and secrets
    in strings masked.

    Args:
        value: dicts, lists and scalars.
        known: literal secrets to hide in every string.
        webhook: ``value`` sits under a webhook key (its URLs keep only scheme and host).
    """
    known = list(known)
    if isinstance(value, Mapping):
        masked = {}
        for k, v in value.items():
            secret, hook = _key_is_secret(str(k))
            if secret and isinstance(v, str) and v:
                masked[k] = MASK
            else:
                masked[k] = mask_obj(v, known, webhook or hook)
        return masked
    if isinstance(value, list | tuple):
        return [mask_obj(v, known, webhook) for v in value]
    if isinstance(value, str):
        return mask_text(_mask_hook(value) if webhook else value, known)
    return value
