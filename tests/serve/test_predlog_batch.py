"""The prediction log's queue and its Arrow conversion: column by column, nothing per request
left for the cyclic GC, the same rows and values whatever shape the entries have."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mlcd.serve.gauges import _feed
from mlcd.serve.predlog import Batch, LogEntry, PredictionLog, to_table

NAMES = ["a", "b", "c"]


def _ok(i: int, rows: int = 1, version: int = 1) -> LogEntry:
    matrix = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3) + 10 * i
    return LogEntry(
        "m", version, 1_700_000_000.0 + i, 0.5 + i, "ok",
        [f"r{i}-{k}" for k in range(rows)],
        {n: matrix[:, j] for j, n in enumerate(NAMES)},
        np.arange(rows) % 2, np.full(rows, 0.25), matrix=matrix,
    )  # fmt: skip


def _rejected(i: int) -> LogEntry:
    return LogEntry(
        "m", 1, 1_700_000_000.0 + i, 0.1, "rejected", [f"bad{i}"], dict.fromkeys(NAMES),
        error="missing column 'a'",
    )  # fmt: skip


def test_mixed_entries_become_one_row_per_request_id_with_their_values() -> None:
    entries = [_ok(0), _ok(1, rows=3), _rejected(2), _ok(3, rows=2)]
    table = to_table(entries).to_pydict()
    assert table["request_id"] == ["r0-0", "r1-0", "r1-1", "r1-2", "bad2", "r3-0", "r3-1"]
    assert table["status"] == ["ok", "ok", "ok", "ok", "rejected", "ok", "ok"]
    assert table["error"][4] == "missing column 'a'" and table["error"][0] is None
    assert table["latency_ms"] == [0.5, 1.5, 1.5, 1.5, 0.1, 3.5, 3.5]
    assert table["ts"][1:4] == [1_700_000_001.0] * 3
    # Inputs: row k of request i is 10 i + 3 k + column; the rejected row has nulls.
    assert table["a"] == [0.0, 10.0, 13.0, 16.0, None, 30.0, 33.0]
    assert table["c"] == [2.0, 12.0, 15.0, 18.0, None, 32.0, 35.0]
    assert table["prediction"] == [0, 0, 1, 0, None, 0, 1]
    assert table["proba"][:4] == [0.25] * 4 and table["proba"][4] is None
    assert table["version"] == [1] * 7 and table["model"] == ["m"] * 7


def test_inputs_without_a_matrix_keep_their_types_and_nan_stays_a_value() -> None:
    text = LogEntry(
        "m", 2, 1.0, 1.0, "ok", ["t0", "t1"], {"city": ["Oslo", None], "n": [1, 2]}, ["x", "y"]
    )
    nan = np.array([[math.nan, 1.0, 2.0]])
    measured = LogEntry(
        "m", 1, 2.0, 1.0, "ok", ["n0"], {n: nan[:, j] for j, n in enumerate(NAMES)}, np.array([1]),
        matrix=nan,
    )  # fmt: skip
    table = to_table([text]).to_pydict()
    assert table["city"] == ["Oslo", None] and table["n"] == [1, 2]
    assert table["prediction"] == ["x", "y"]
    value = to_table([measured]).to_pydict()["a"][0]
    assert value is not None and math.isnan(value)  # a NaN input is logged as sent


def test_the_queue_keeps_no_gc_tracked_object_per_request(tmp_path: Path) -> None:
    log = PredictionLog(None, tmp_path, tmp_path / "p", batch_rows=10**9, flush_interval_s=60)
    entries = [_ok(i) for i in range(200)]  # warm up every list's growth
    for entry in entries:
        log.log(entry)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5000):
        log.log(_ok(i))
    gc.collect()
    grown = len(gc.get_objects()) - before
    # Each LogEntry (an object, its __dict__, its features dict and ids list) is dropped once
    # queued; what stays is floats, strings and numpy arrays, which the GC does not track.
    assert grown < 50, grown
    assert log.queued_rows == 5200
    log.start()
    log.close()
    files = list((tmp_path / "p").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == log.written_rows == 5200


def test_a_batch_written_across_versions_and_days_splits_into_segments(tmp_path: Path) -> None:
    log = PredictionLog(None, tmp_path, tmp_path / "p")
    day = 86400.0
    for i, (version, ts) in enumerate([(1, 0.0), (2, 10.0), (1, day + 5), (1, 20.0)]):
        entry = _ok(i, version=version)
        log.log(LogEntry(**{**entry.__dict__, "ts": 1_700_006_400.0 + ts}))
    log.start()
    log.close()
    segments = sorted(
        p.relative_to(tmp_path / "p").parts[:2] for p in (tmp_path / "p").rglob("*.parquet")
    )
    assert segments == [
        ("model=m", "date=2023-11-15"),
        ("model=m", "date=2023-11-15"),
        ("model=m", "date=2023-11-16"),
    ]
    rows = {f.name: pq.read_table(f).to_pydict() for f in (tmp_path / "p").rglob("*.parquet")}
    by_version = sorted((sorted(set(t["version"])), len(t["version"])) for t in rows.values())
    assert by_version == [([1], 1), ([1], 2), ([2], 1)]


def test_the_live_window_reads_the_same_rows_from_a_batch() -> None:
    import pandas as pd

    from mlcd.monitor.drift import DriftSettings
    from mlcd.monitor.live import LiveMonitor
    from mlcd.monitor.profile import build_profile

    reference = pd.DataFrame(
        {"a": np.linspace(0, 40, 50), "b": np.linspace(0, 40, 50), "c": np.linspace(0, 40, 50),
         "prediction": np.arange(50) % 2}
    )  # fmt: skip
    monitor = LiveMonitor(build_profile(reference), DriftSettings(), window_rows=100, min_rows=1)
    _feed(monitor, Batch.of([_ok(0, rows=2), _rejected(1), _ok(2), _ok(3)]))
    snap = monitor.snapshot()
    assert snap.rows == 5  # 4 accepted rows and 1 rejected
    assert snap.rejected_share == 1 / 5
    assert snap.missing_share == 0.0  # every accepted row brought all three inputs


def test_logging_takes_the_entry_apart_without_copying_its_arrays() -> None:
    log = PredictionLog(None, Path("."), None)
    entry = _ok(0)
    log.log(entry)
    assert log._queue.matrix[0] is entry.matrix  # the request's matrix, not a copy
    assert log._queue.features[0] is None  # the per-column views are not kept
