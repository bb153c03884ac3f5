"""``mlcd log compact`` (a day's segments into one daily file, swapped in one transaction) and
retention through ``mlcd gc`` (``monitor.log_retention``), on disk and on S3."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlcd.logdata.compact import compact_log, expire_log
from mlcd.logdata.segments import locate, open_dataset
from mlcd.store import Store, predictions
from tests.conftest import run_cli
from tests.logdata.conftest import DAY, Log, traffic

# 2026-01-10 00:00 UTC: fixed days, far enough in the past to be compactable
T0 = 1_768_003_200.0


def _all_rows(log: Log, model: str | None = None) -> pd.DataFrame:
    """Every registered row of the log, read file by file, in a stable order."""
    frames = []
    with log.store.read() as conn:
        rows = predictions.segments(conn, model=model)
    for segment in rows:
        location = locate(log.root, segment["path"])
        frames.append(open_dataset(location).to_table().to_pandas())
    data = pd.concat(frames, ignore_index=True)
    return data.sort_values(["request_id"]).reset_index(drop=True)


def _fill(log: Log) -> None:
    # day 1: three segments of v1 and two of v2; day 2: two of v1, one with an extra column
    for seed in range(3):
        log.write("churn", 1, traffic(700, seed, T0 + seed * 3000, 2000))
    for seed in range(3, 5):
        log.write("churn", 2, traffic(400, seed, T0 + 20000 + seed * 1000, 500))
    log.write("churn", 1, traffic(300, 5, T0 + DAY + 100, 1000))
    extra = traffic(200, 6, T0 + DAY + 5000, 1000).assign(x3=1.5)
    log.write("churn", 1, extra)
    log.write("other", 1, traffic(100, 7, T0 + 50, 100))  # alone on its day: nothing to do


def _segments(log: Log) -> list[dict]:
    with log.store.read() as conn:
        return predictions.segments(conn)


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_compaction_keeps_exactly_the_rows_and_is_idempotent(
    where: str, request: pytest.FixtureRequest
) -> None:
    log: Log = request.getfixturevalue("local_log" if where == "local" else "remote_log")
    _fill(log)
    before = _all_rows(log)
    old = _segments(log)
    report = compact_log(log.store, log.root)
    assert [(d.model, d.version, d.day, d.segments, d.status) for d in report.days] == [
        ("churn", 1, "2026-01-10", 3, "compacted"),
        ("churn", 1, "2026-01-11", 2, "compacted"),
        ("churn", 2, "2026-01-10", 2, "compacted"),
    ]
    after = _all_rows(log)
    assert len(after) == len(before) == 3 * 700 + 2 * 400 + 300 + 200 + 100
    pd.testing.assert_frame_equal(after, before, check_like=True)  # same rows, same values
    new = _segments(log)
    assert len(new) == 4 and sorted(s["kind"] for s in new) == ["daily"] * 3 + ["segment"]
    for segment in new:
        if segment["kind"] == "daily":
            assert segment["path"].startswith(log.base) and "/daily-" in segment["path"]
            assert segment["replaces"] is None  # deleted after the commit
            assert segment["digest"]
    assert report.deleted_files == 7
    gone = [s["path"] for s in old if s["model"] == "churn"]
    for path in gone:
        location = locate(log.root, path)
        assert location.fs.get_file_info(location.path).type.name == "NotFound"
    # idempotent: a second run finds nothing to merge and changes nothing
    again = compact_log(log.store, log.root)
    assert again.days == [] and _segments(log) == new
    pd.testing.assert_frame_equal(_all_rows(log), before, check_like=True)


def test_monitor_window_reads_the_same_rows_after_compaction(local_log: Log) -> None:
    from mlcd.monitor.window import LogReader, Window, find_segments

    _fill(local_log)
    window = Window(T0 + 1000, T0 + DAY + 3000)

    def read() -> pd.DataFrame:
        with local_log.store.read() as conn:
            segments = find_segments(conn, "churn", window)
        frames = list(LogReader(local_log.root, segments, window, columns=["request_id", "x0"]))
        return pd.concat(frames).sort_values("request_id").reset_index(drop=True)

    first = read()
    compact_log(local_log.store, local_log.root)
    pd.testing.assert_frame_equal(read(), first)


def test_a_compaction_interrupted_after_its_commit_is_finished_by_the_next(
    local_log: Log,
) -> None:
    """The swap commits, then the process dies before deleting the replaced files: the store
    lists them (``replaces``), readers see the daily file only, the next run deletes them."""
    _fill(local_log)
    rows = [s for s in _segments(local_log) if s["model"] == "churn" and s["version"] == 2]
    daily = local_log.write("churn", 2, pd.concat([_read(local_log, s) for s in rows]))
    with local_log.store.read() as conn:
        (entry,) = [s for s in predictions.segments(conn) if s["path"] == daily]
    # what swap_segments does, by hand: the new row replaces the two segments
    local_log.store.transact(
        lambda conn: (
            predictions.remove_segments(conn, [entry["id"]]),
            predictions.swap_segments(
                conn, [s["id"] for s in rows], model="churn", version=2, path=daily,
                rows=entry["rows"], first_at=entry["first_at"], last_at=entry["last_at"],
                replaces=[s["path"] for s in rows],
            ),
        )
    )  # fmt: skip
    leftovers = [local_log.root / s["path"] for s in rows]
    assert all(p.is_file() for p in leftovers)  # the "crash": files still there
    assert len(_all_rows(local_log, "churn")) == 3 * 700 + 2 * 400 + 500  # never twice
    report = compact_log(local_log.store, local_log.root, "churn", before=T0)  # no day due
    assert report.days == [] and report.leftovers_cleaned == 2
    assert not any(p.exists() for p in leftovers)
    with local_log.store.read() as conn:
        assert predictions.pending_deletions(conn) == []


def _read(log: Log, segment: dict) -> pd.DataFrame:
    frame = open_dataset(locate(log.root, segment["path"])).to_table().to_pandas()
    return frame.drop(columns=["model", "version"])


def test_a_concurrent_swap_of_the_same_segments_rolls_back(
    store_url: str, open_store: Callable[..., Store]
) -> None:
    store = open_store(store_url)
    ids = [
        store.transact(
            lambda conn, i=i: predictions.add_segment(
                conn, model="m", version=1, path=f"p{i}", rows=10, first_at=T0 + i,
                last_at=T0 + i + 1,
            )
        )
        for i in range(3)
    ]  # fmt: skip
    daily = {"model": "m", "version": 1, "path": "d", "rows": 30, "first_at": T0, "last_at": T0 + 3}
    store.transact(lambda conn: predictions.swap_segments(conn, ids, **daily))
    with pytest.raises(predictions.SegmentsChanged):
        store.transact(lambda conn: predictions.swap_segments(conn, ids, **{**daily, "path": "e"}))
    with store.read() as conn:
        assert [(s["path"], s["kind"], s["rows"]) for s in predictions.segments(conn)] == [
            ("d", "daily", 30)
        ]


def test_a_missing_segment_leaves_its_day_alone(local_log: Log) -> None:
    _fill(local_log)
    first = next(s for s in _segments(local_log) if s["version"] == 2)
    (local_log.root / first["path"]).unlink()
    report = compact_log(local_log.store, local_log.root, "churn")
    skipped = [d for d in report.days if d.status == "skipped"]
    assert [(d.version, d.day) for d in skipped] == [(2, "2026-01-10")]
    assert "missing" in (skipped[0].reason or "")
    assert len(report.compacted) == 2


def test_log_compact_cli_and_retention_through_gc(
    tmp_path: Path, open_store: Callable[..., Store]
) -> None:
    from mlcd.logdata.windows import list_windows, record_window, window_frame
    from mlcd.objects import LocalObjectStore

    assert run_cli(["init", "proj"], cwd=tmp_path).returncode == 0
    root = tmp_path / "proj"
    log = Log(root, open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"))
    now = time.time()
    old = [log.write("churn", 1, traffic(300, s, now - 200 * DAY + s * 60, 30)) for s in range(3)]
    recent = log.write("churn", 1, traffic(300, 9, now - DAY, 60))
    # a training window recorded from the old rows: stored by digest, not by segment
    window_file = root / "window.parquet"
    traffic(300, 0, now - 200 * DAY, 30).to_parquet(window_file, index=False)
    objects = LocalObjectStore(root / ".mlcd" / "objects")
    record_window(log.store, objects, "churn", window_file, role="train")

    planned = run_cli(["log", "compact", "churn", "--dry-run", "--json"], cwd=root)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert [(d["segments"], d["status"]) for d in plan["days"]] == [(3, "planned")]
    done = run_cli(["log", "compact", "--json"], cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["segments_retired"] == 3
    assert not any((root / p).exists() for p in old)
    again = run_cli(["log", "compact"], cwd=root)
    assert again.returncode == 0 and "nothing to compact" in again.stdout

    with (root / "mlcd.yaml").open("a") as config:
        config.write("\nmonitor:\n  log_retention: 90d\n")
    dry = run_cli(["gc", "--dry-run", "--json"], cwd=root)
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)["log"]
    assert listed["segments"] == 1 and listed["rows"] == 900 and "/daily-" in listed["paths"][0]
    assert len(_segments(log)) == 2  # a dry run changes nothing
    text = run_cli(["gc", "--dry-run"], cwd=root)
    assert "would drop 1 segment(s)" in text.stdout and listed["paths"][0] in text.stdout
    swept = run_cli(["gc", "--json"], cwd=root)
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["log"]["deleted_files"] == 1
    assert [s["path"] for s in _segments(log)] == [recent]
    assert not (root / listed["paths"][0]).exists() and (root / recent).is_file()
    (window,) = list_windows(log.store, "churn", "train")
    assert len(window_frame(objects, window)) == 300  # continual learning keeps its data


def test_bad_retention_and_unknown_model_are_clear_errors(tmp_path: Path, local_log: Log) -> None:
    from mlcd.errors import UsageError

    with pytest.raises(UsageError, match="positive"):
        expire_log(local_log.store, local_log.root, 0)
    with pytest.raises(UsageError, match="no segments of model 'nope'"):
        compact_log(local_log.store, local_log.root, "nope")
    assert run_cli(["init", "proj"], cwd=tmp_path).returncode == 0
    root = tmp_path / "proj"
    with (root / "mlcd.yaml").open("a") as config:
        config.write("\nmonitor:\n  log_retention: ninety days\n")
    result = run_cli(["gc"], cwd=root)
    assert result.returncode == 2 and "monitor.log_retention" in result.stderr
    assert "7d" in result.stderr


@pytest.mark.s3
def test_retention_drops_old_segments_and_their_files_on_s3(remote_log: Log) -> None:
    now = time.time()
    old = remote_log.write("churn", 1, traffic(100, 1, now - 100 * DAY, 60))
    recent = remote_log.write("churn", 1, traffic(100, 2, now - DAY, 60))
    planned = expire_log(remote_log.store, remote_log.root, 90 * DAY, dry_run=True)
    assert planned.to_dict()["paths"] == [old] and planned.deleted_files == 0
    assert len(_segments(remote_log)) == 2
    done = expire_log(remote_log.store, remote_log.root, 90 * DAY)
    assert done.deleted_files == 1
    assert [s["path"] for s in _segments(remote_log)] == [recent]
    for path, kind in ((old, "NotFound"), (recent, "File")):
        location = locate(remote_log.root, path)
        assert location.fs.get_file_info(location.path).type.name == kind
