"""LiveMonitor: rolling-window gauges that agree with the batch report."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from mlcd.monitor.current import summarise_window
from mlcd.monitor.drift import DriftSettings, detect_drift
from mlcd.monitor.live import LiveMonitor
from mlcd.monitor.profile import build_profile
from tests.monitor.conftest import frame


def _reference() -> pd.DataFrame:
    data = frame(5000, 1, columns=4)
    data["city"] = np.random.default_rng(1).choice(["a", "b", "c"], 5000)
    return data


def test_gauges_follow_the_rolling_window() -> None:
    monitor = LiveMonitor(build_profile(_reference()), window_rows=2000, min_rows=500)
    assert not monitor.snapshot().ready
    for seed in range(4):
        monitor.update(frame(500, 10 + seed, columns=4).assign(city="a"))
    calm = monitor.snapshot()
    assert calm.ready and calm.rows == 2000
    assert calm.drifted == ["city"]  # only "a": the category mix moved
    for seed in range(4):  # a full window of shifted rows pushes the calm ones out
        shifted = frame(500, 20 + seed, columns=4, shift={"x0": 1.0, "x1": 1.0, "x2": 1.0})
        monitor.update(
            shifted.assign(city=np.random.default_rng(seed).choice(["a", "b", "c"], 500))
        )
    moved = monitor.snapshot()
    assert moved.drifted == ["x0", "x1", "x2"]
    assert moved.drift_share == pytest.approx(3 / 5)


def test_snapshot_equals_the_batch_report_on_the_same_rows() -> None:
    profile = build_profile(_reference())
    rows = frame(3000, 7, columns=4, shift={"x3": 0.2}).assign(
        city=np.random.default_rng(2).choice(["a", "b", "d"], 3000)
    )
    monitor = LiveMonitor(profile, window_rows=3000)
    for start in range(0, 3000, 250):
        monitor.update(rows.iloc[start : start + 250])
    live = monitor.snapshot()
    batch = detect_drift(profile, summarise_window(profile, [rows]).columns, DriftSettings())
    assert live.scores["x3"] == pytest.approx(
        next(f.score for f in batch.features if f.name == "x3")
    )
    assert live.drift_share == batch.share
    assert live.out_of_range_share > 0  # "d" was never seen


def test_missing_invalid_and_rejected_rows_are_shares_not_errors() -> None:
    monitor = LiveMonitor(build_profile(_reference()), window_rows=1000, min_rows=1)
    good = frame(100, 3, columns=4).assign(city="a")
    good.loc[:9, "x0"] = np.nan
    records = good.astype(object).to_dict("records")
    records[20]["x1"] = "oops"  # a type violation in a list of row dicts
    monitor.update(records)
    monitor.update(pd.DataFrame({"x0": [None] * 100}), rejected=True)
    snap = monitor.snapshot()
    assert snap.rows == 200 and snap.rejected_share == 0.5
    assert snap.missing_share == pytest.approx(11 / (100 * 5))
    monitor.update(pd.DataFrame())  # an empty batch changes nothing
    assert monitor.snapshot().rows == 200


def test_concurrent_updates_and_snapshots_are_safe() -> None:
    monitor = LiveMonitor(build_profile(_reference()), window_rows=5000, min_rows=1)
    errors: list[BaseException] = []

    def feed(seed: int) -> None:
        try:
            for i in range(20):
                monitor.update(frame(100, seed * 100 + i, columns=4).assign(city="b"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    snapshots = [monitor.snapshot() for _ in range(5)]
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(0 <= s.rows <= 5000 for s in snapshots)
    assert monitor.snapshot().rows == 5000
