"""Windows over the prediction log and over files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcd.errors import MonitorError, UsageError
from mlcd.monitor.window import (
    LogReader,
    Window,
    find_segments,
    iter_file_chunks,
    parse_duration,
    parse_since,
)
from tests.monitor.conftest import PredictionLogDir

NOW = 1_750_000_000.0


def test_since_accepts_durations_dates_and_datetimes() -> None:
    assert parse_since("1h", NOW) == NOW - 3600
    assert parse_since("7d", NOW) == NOW - 7 * 86400
    assert parse_since("90s", NOW) == NOW - 90
    assert parse_since("2024-05-01", NOW) == datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    assert (
        parse_since("2024-05-01T12:30", NOW) == datetime(2024, 5, 1, 12, 30, tzinfo=UTC).timestamp()
    )
    assert parse_duration("2w") == 14 * 86400


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-1h", ""])
def test_bad_since_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_since(text, NOW)
    assert "1h, 7d" in (info.value.hint or "")


def test_since_and_last_cannot_be_combined() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        Window.parse("1h", 10, NOW, "7d")
    with pytest.raises(UsageError, match="must be positive"):
        Window.parse(None, 0, NOW, "7d")
    assert Window.parse(None, None, NOW, "1d") == Window(NOW - 86400, NOW)


def _rows(start: float, count: int, version: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": start + np.arange(count, dtype=float),
            "x": np.arange(count, dtype=float),
            "version": version,
        }
    )


def test_time_window_reads_only_rows_inside_it_in_chunks(log_dir: PredictionLogDir) -> None:
    log_dir.write("m", 1, _rows(NOW - 5000, 1000))  # ends before the window
    log_dir.write("m", 1, _rows(NOW - 3000, 2000))  # overlaps the window start
    log_dir.write("m", 2, _rows(NOW - 1000, 500, version=2))
    log_dir.write("other", 1, _rows(NOW - 1000, 500))
    window = Window(NOW - 2000, NOW)
    with log_dir.store.read() as conn:
        segments = find_segments(conn, "m", window)
    assert len(segments) == 2
    chunks = list(LogReader(log_dir.root, segments, window, chunk_rows=300))
    assert max(len(c) for c in chunks) <= 300
    ts = np.concatenate([c["ts"].to_numpy() for c in chunks])
    assert ts.size == 1000 + 500 and ts.min() >= NOW - 2000
    only_v2 = LogReader(log_dir.root, segments, window, version=2)
    assert sum(len(c) for c in only_v2) == 500


def test_last_n_takes_the_newest_rows_across_overlapping_segments(
    log_dir: PredictionLogDir,
) -> None:
    log_dir.write("m", 1, _rows(NOW - 100, 50))  # ts NOW-100 .. NOW-51
    log_dir.write("m", 1, _rows(NOW - 60, 50))  # overlaps: NOW-60 .. NOW-11
    log_dir.write("m", 1, pd.DataFrame({"ts": [NOW - 20.0] * 4, "x": 0.0, "version": 1}))
    window = Window(end=NOW, last=30)
    with log_dir.store.read() as conn:
        segments = find_segments(conn, "m", window)
    rows = pd.concat(list(LogReader(log_dir.root, segments, window)))
    assert len(rows) == 30
    newest = np.sort(
        np.concatenate([NOW - 100 + np.arange(50), NOW - 60 + np.arange(50), [NOW - 20.0] * 4])
    )[-30:]
    assert np.array_equal(np.sort(rows["ts"].to_numpy()), newest)


def test_segment_missing_on_disk_is_reported_and_skipped(log_dir: PredictionLogDir) -> None:
    gone = log_dir.write("m", 1, _rows(NOW - 100, 10))
    log_dir.write("m", 1, _rows(NOW - 50, 10))
    gone.unlink()
    window = Window(NOW - 1000, NOW)
    with log_dir.store.read() as conn:
        reader = LogReader(log_dir.root, find_segments(conn, "m", window), window)
    assert sum(len(c) for c in reader) == 10
    assert reader.missing == [gone.relative_to(log_dir.root).as_posix()]


def test_damaged_segment_says_which_file_and_what_to_do(log_dir: PredictionLogDir) -> None:
    path = log_dir.write("m", 1, _rows(NOW - 100, 10))
    path.write_bytes(b"not parquet at all")
    window = Window(NOW - 1000, NOW)
    with log_dir.store.read() as conn:
        reader = LogReader(log_dir.root, find_segments(conn, "m", window), window)
    with pytest.raises(MonitorError, match="cannot be read") as info:
        list(reader)
    assert "prediction_segments" in (info.value.hint or "")


def test_files_are_read_in_chunks_by_extension(tmp_path: Path) -> None:
    data = pd.DataFrame({"a": range(25), "b": [*list("xyz" * 8), "x"]})
    data.to_csv(tmp_path / "d.csv", index=False)
    data.to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    data.to_parquet(tmp_path / "d.parquet", index=False)
    for name in ("d.csv", "d.tsv", "d.parquet"):
        chunks = list(iter_file_chunks(tmp_path / name, chunk_rows=10))
        assert [len(c) for c in chunks] == [10, 10, 5]
        assert pd.concat(chunks)["b"].tolist() == data["b"].tolist()
    (tmp_path / "empty.csv").write_text("")
    assert list(iter_file_chunks(tmp_path / "empty.csv")) == []


def test_unreadable_files_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        list(iter_file_chunks(tmp_path / "missing.csv"))
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    with pytest.raises(UsageError, match="unknown file type") as info:
        list(iter_file_chunks(tmp_path / "data.xlsx"))
    assert ".parquet" in (info.value.hint or "")
    (tmp_path / "broken.parquet").write_bytes(b"garbage")
    with pytest.raises(MonitorError, match="not a readable Parquet file"):
        list(iter_file_chunks(tmp_path / "broken.parquet"))
    (tmp_path / "bad.csv").write_text('a,b\n1,"unclosed\n')
    with pytest.raises(MonitorError, match="cannot be parsed as CSV"):
        list(iter_file_chunks(tmp_path / "bad.csv"))
