"""Durations (``30s``, ``15m``, ``1h``, ``7d``, ``2w``) and ``--since`` moments, in one place."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from mlcd.errors import MlcdError, UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str, error: type[MlcdError] = UsageError) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``7d`` or ``2w``.

    Raises:
        ``error`` (UsageError by default; ConfigError for mlcd.yaml values): not a duration.
    """
    match = DURATION.match(str(text))
    if not match:
        raise error(
            f"not a duration: {text!r}",
            hint="write a number and a unit: 30s, 10m, 1h, 7d or 2w",
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_since(text: str, now: float) -> float:
    """The window start for ``--since``: a duration back from ``now``, a date or a datetime.

    Dates and naive datetimes are UTC (``2024-05-01``, ``2024-05-01T12:00``).

    Raises:
        UsageError: neither a duration nor an ISO date.
    """
    if DURATION.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise UsageError(
            f"--since {text!r} is neither a duration nor a date",
            hint="use a duration (1h, 7d) or an ISO date/time (2024-05-01, 2024-05-01T12:00)",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
