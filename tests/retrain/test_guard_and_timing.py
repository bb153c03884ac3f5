"""Retrain guards and schedules: leases across processes, cooldown, budget, missed ticks."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlcd.errors import ConfigError, RetrainError
from mlcd.retrain.guard import STARTED, check_budget, retrain_lock
from mlcd.retrain.timing import check_schedule, parse_duration
from mlcd.store import events


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("7d") == 7 * 86400
    with pytest.raises(ConfigError, match="10m, 1h"):
        parse_duration("ten minutes")


def test_first_schedule_check_records_without_firing() -> None:
    check = check_schedule("0 3 * * *", None, _ts("2026-01-02T12:00:00"))
    assert not check.due and check.tick == _ts("2026-01-02T03:00:00")


def test_schedule_fires_once_per_tick_and_counts_missed_ticks() -> None:
    last = _ts("2026-01-01T03:00:00")
    check = check_schedule("0 3 * * *", last, _ts("2026-01-04T04:00:00"))
    assert check.due and check.tick == _ts("2026-01-04T03:00:00") and check.missed == 2
    again = check_schedule("0 3 * * *", check.tick, _ts("2026-01-04T05:00:00"))
    assert not again.due


def test_invalid_cron_is_config_error() -> None:
    with pytest.raises(ConfigError, match="cron"):
        check_schedule("every day", None, 0.0)


def test_cooldown_and_daily_budget(store_url: str, open_store) -> None:  # type: ignore[no-untyped-def]
    store = open_store(store_url)
    at = 1_000_000.0
    assert check_budget(store, "m", cooldown_s=3600, max_per_day=2, at=at).allowed
    with store.write() as conn:
        events.record(conn, STARTED, model="m", at=at - 100)
    blocked = check_budget(store, "m", cooldown_s=3600, max_per_day=2, at=at)
    assert not blocked.allowed and "cooldown" in blocked.reason
    with store.write() as conn:
        events.record(conn, STARTED, model="m", at=at - 7200)
    spent = check_budget(store, "m", cooldown_s=60, max_per_day=2, at=at)
    assert not spent.allowed and "daily budget" in spent.reason
    assert check_budget(store, "other", cooldown_s=3600, max_per_day=2, at=at).allowed


def _hold(url: str, ready, release) -> None:  # type: ignore[no-untyped-def]
    from mlcd.store import Store

    store = Store(url)
    with retrain_lock(store, "m", owner="holder"):
        ready.set()
        release.wait(60)
    store.dispose()


def test_second_process_cannot_take_a_held_retrain_lock(tmp_path: Path, open_store) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'mlcd.db'}"
    store = open_store(url)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(url, ready, release))
    proc.start()
    try:
        assert ready.wait(60)
        with (
            pytest.raises(RetrainError, match="already running"),
            retrain_lock(store, "m", owner="me"),
        ):
            pass
    finally:
        release.set()
        proc.join(60)
    with retrain_lock(store, "m", owner="me"):  # released by the holder: free again
        pass


def test_crashed_holder_lease_expires(tmp_path: Path, open_store) -> None:  # type: ignore[no-untyped-def]
    from mlcd.store import locks

    store = open_store(f"sqlite:///{tmp_path / 'mlcd.db'}")
    with store.write() as conn:
        locks.acquire(conn, "retrain:m", "dead-process", ttl_s=-1)  # as if it crashed long ago
    with retrain_lock(store, "m", owner="me"):
        pass
