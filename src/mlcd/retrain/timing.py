"""Durations (``10m``, ``1h``, ``7d``), dates, and cron schedules with explicit missed ticks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlcd import durations
from mlcd.errors import ConfigError


def parse_duration(text: str) -> float:
    """Seconds in ``text`` such as ``90s``, ``10m``, ``1h``, ``7d``, ``2w``.

    Raises:
        ConfigError: not a duration.
    """
    return durations.parse_duration(text, ConfigError)


@dataclass(frozen=True)
class ScheduleCheck:
    """What a cron schedule says at ``now`` given the last tick handled."""

    due: bool
    tick: float | None  # the newest scheduled time <= now, the one to handle
    missed: int  # scheduled times skipped because several elapsed while nobody watched

    def to_dict(self) -> dict[str, object]:
        return {"due": self.due, "tick": self.tick, "missed": self.missed}


def check_schedule(
    expression: str, last_tick: float | None, now: float, max_scan: int = 10_000
) -> ScheduleCheck:
    """Is a run of ``expression`` due? Missed ticks coalesce into one run, and are counted.

    The first check of a schedule (``last_tick`` None) only records the latest tick, so a new
    policy does not retrain at once because of ticks from before it existed.

    Raises:
        ConfigError: an invalid cron expression.
    """
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise ConfigError(
            f"invalid cron expression {expression!r}", hint="e.g. '0 3 * * *' for 03:00 daily"
        )
    current = datetime.fromtimestamp(now, tz=UTC)
    newest = croniter(expression, current).get_prev(float)
    if last_tick is None:
        return ScheduleCheck(due=False, tick=newest, missed=0)
    if newest <= last_tick:
        return ScheduleCheck(due=False, tick=last_tick, missed=0)
    missed = 0
    walker = croniter(expression, datetime.fromtimestamp(last_tick, tz=UTC))
    while walker.get_next(float) < newest and missed < max_scan:
        missed += 1
    return ScheduleCheck(due=True, tick=newest, missed=missed)
