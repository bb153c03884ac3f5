"""The prediction log on object storage: S3 (s3fs against a moto server on 127.0.0.1) read by
``mlcd monitor`` and ``mlcd data from-log`` exactly as a local log is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mlcd.errors import UsageError
from mlcd.store import Store
from tests.conftest import run_cli
from tests.logdata.conftest import DAY, Log, free_port, traffic

pytestmark = [pytest.mark.s3, pytest.mark.xdist_group("s3")]


def _project(tmp_path: Path, name: str, open_store: Callable[..., Store], base: str) -> Log:
    result = run_cli(["init", name], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / name
    return Log(root, open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"), base)


def _fill(logs: list[Log], now: float) -> None:
    """The same segments in every log: two versions, calm then shifted traffic, a segment
    outside the window."""
    batches = [
        ("churn", 1, traffic(3000, 1, now - 20 * DAY, DAY)),  # before the window
        ("churn", 1, traffic(4000, 2, now - 3 * DAY, DAY)),
        ("churn", 2, traffic(4000, 3, now - 2 * DAY, DAY, shift=1.5)),
        ("churn", 2, traffic(2500, 4, now - DAY / 2, DAY / 4, shift=1.5)),
        ("other", 1, traffic(500, 5, now - DAY, DAY / 2)),
    ]
    for log in logs:
        for model, version, rows in batches:
            log.write(model, version, rows)


def _monitor(root: Path, *args: str) -> dict:
    result = run_cli(["monitor", "churn", "--reference", "ref.parquet", "--json", *args], cwd=root)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def _comparable(report: dict) -> dict:
    window = {k: v for k, v in report["window"].items() if k not in ("start", "end")}
    return {
        "window": window,
        "drift": report["drift"],
        "quality": report["quality"],
        "warnings": report["warnings"],
        "failed": report["failed"],
    }


def test_monitor_over_the_s3_log_equals_monitor_over_a_local_copy(
    tmp_path: Path, open_store: Callable[..., Store], s3_log: str
) -> None:
    now = time.time()
    local = _project(tmp_path, "local", open_store, ".mlcd/predictions")
    remote = _project(tmp_path, "remote", open_store, s3_log)
    _fill([local, remote], now)
    reference = traffic(5000, 9, now - 40 * DAY, DAY).drop(
        columns=["request_id", "ts", "status", "error", "latency_ms"]
    )
    for log in (local, remote):
        reference.to_parquet(log.root / "ref.parquet", index=False)
    with remote.store.read() as conn:
        from mlcd.store.predictions import segments

        paths = [s["path"] for s in segments(conn, model="churn")]
    assert all(p.startswith(s3_log) for p in paths)
    assert not (remote.root / ".mlcd" / "predictions").exists()

    # a fixed start: "7d" read a second apart would not be the same window
    start = datetime.fromtimestamp(now - 7 * DAY, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    reports = {}
    for args in (("--since", start), ("--last", "5000")):
        on_s3, on_disk = _monitor(remote.root, *args), _monitor(local.root, *args)
        assert _comparable(on_s3) == _comparable(on_disk), args
        reports[args[0]] = on_s3
    week = reports["--since"]
    # pushed down: the 20-day-old segment and the other model are not in the window
    assert week["window"]["rows"] == 4000 + 4000 + 2500
    assert week["window"]["versions"] == {"1": 4000, "2": 6500}
    assert week["failed"] and "x0" in week["drift"]["drifted"]
    assert reports["--last"]["window"]["rows"] == 5000


def test_from_log_reads_s3_segments_like_local_ones(local_log: Log, remote_log: Log) -> None:
    from mlcd.logdata.dataset import read_log_dataset

    now = time.time()
    _fill([local_log, remote_log], now)
    steps: list[tuple[str, int | None, int | None]] = []
    on_s3 = read_log_dataset(
        remote_log.store, remote_log.root, "churn", since=now - 7 * DAY,
        progress=lambda step, done=None, total=None: steps.append((step, done, total)),
    )  # fmt: skip
    on_disk = read_log_dataset(local_log.store, local_log.root, "churn", since=now - 7 * DAY)
    pd.testing.assert_frame_equal(on_s3.frame, on_disk.frame)
    assert on_s3.rows == on_s3.answered and 0.95 * 10500 < on_s3.rows < 10500  # ok rows only
    assert set(on_s3.frame.columns) >= {"request_id", "ts", "version", "x0", "city", "label"}
    assert "status" not in on_s3.frame.columns and "latency_ms" not in on_s3.frame.columns
    assert [s.path.startswith("s3://") for s in on_s3.segments] == [True] * 3
    assert steps[0] == ("reading the prediction log", 0, 10500)


def test_a_missing_s3_segment_is_reported_not_a_traceback(
    tmp_path: Path, open_store: Callable[..., Store], s3_log: str
) -> None:
    import fsspec

    from mlcd.logdata.dataset import read_log_dataset

    now = time.time()
    remote = _project(tmp_path, "remote", open_store, s3_log)
    gone = remote.write("churn", 1, traffic(1000, 1, now - DAY, DAY / 2))
    remote.write("churn", 1, traffic(1000, 2, now - DAY / 2, DAY / 4))
    traffic(2000, 3, now, 1).drop(columns=["request_id", "ts", "status"]).to_parquet(
        remote.root / "ref.parquet"
    )
    fs, inner = fsspec.core.url_to_fs(gone)
    fs.rm(inner)
    report = _monitor(remote.root, "--since", "7d")
    assert report["window"]["rows"] == 1000
    assert any("missing from storage" in w and gone in w for w in report["warnings"])
    with pytest.raises(UsageError, match="registered but missing from storage") as info:
        read_log_dataset(remote.store, remote.root, "churn")
    assert gone in info.value.message


def test_unreachable_s3_gives_a_clear_error_naming_the_location(
    tmp_path: Path, open_store: Callable[..., Store], s3_log: str
) -> None:
    now = time.time()
    remote = _project(tmp_path, "remote", open_store, s3_log)
    path = remote.write("churn", 1, traffic(100, 1, now - DAY, DAY / 2))
    traffic(200, 3, now, 1).to_parquet(remote.root / "ref.parquet")
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"AWS_ENDPOINT_URL": dead, "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    result = run_cli(
        ["monitor", "churn", "--reference", "ref.parquet", "--since", "7d"],
        cwd=remote.root,
        env=env,
    )
    assert result.returncode == 3, result.stderr
    assert path in result.stderr and "cannot be read" in result.stderr
    assert "AWS_ENDPOINT_URL" in result.stderr  # the hint says what to check
    assert "Traceback" not in result.stderr
    exported = run_cli(["data", "from-log", "churn", "out.parquet"], cwd=remote.root, env=env)
    assert exported.returncode == 2 and path in exported.stderr
    assert "Traceback" not in exported.stderr
