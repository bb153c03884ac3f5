"""Remote segments read from start to end are fetched with one whole-object GET (up to
``MLCD_LOG_WHOLE_READ_MAX`` bytes) and parsed from memory; larger ones keep ranged reads.
Both paths give the same rows; the requests are counted on the wire (a proxy in front of
moto), a missing segment and a damaged object are reported the same way by both."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mlcd.errors import ConfigError, MonitorError, UsageError
from mlcd.logdata.segments import (
    S3_CLIENT_ENV,
    WHOLE_READ_ENV,
    SegmentMissing,
    locate,
    open_dataset,
    whole_read_max,
)
from mlcd.monitor.window import LogReader, Window, find_segments
from mlcd.store import Store
from tests.logdata.conftest import DAY, CountingProxy, Log, traffic

pytestmark = [pytest.mark.s3, pytest.mark.xdist_group("s3")]


def _bucket(proxy: CountingProxy) -> str:
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # instances keep the endpoint they were made with
    bucket = f"whole-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=proxy.endpoint).create_bucket(Bucket=bucket)
    return bucket


def _put(bucket: str, key: str, body: bytes) -> None:
    import boto3

    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


@pytest.mark.parametrize("client", ["", "fsspec"])
def test_one_get_per_segment_and_the_same_rows_as_ranged_reads(
    counted_s3: CountingProxy, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv(S3_CLIENT_ENV, client)
    bucket = _bucket(counted_s3)
    rows = traffic(5000, 1, 1000.0, 5000.0)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(rows), sink, compression="zstd", row_group_size=1000)
    body = sink.getvalue().to_pybytes()
    _put(bucket, "log/a.parquet", body)
    location = locate("/nowhere", f"s3://{bucket}/log/a.parquet")
    columns, where = ["ts", "x0", "city"], ds.field("ts") >= 4000.0

    def read(whole: bool) -> tuple[pa.Table, int, int]:
        counted_s3.reset()
        dataset = open_dataset(location, whole=whole)
        (fragment,) = dataset.get_fragments()
        kept = len(fragment.subset(where).row_groups)  # pruned from the statistics
        table = dataset.to_table(columns=columns, filter=where)
        return table, counted_s3.count("GET"), kept

    ranged, ranged_gets, ranged_kept = read(whole=False)
    assert ranged_gets > 1 and ranged_kept < 5
    buffered, gets, kept = read(whole=True)
    assert gets == 1 and kept == ranged_kept
    assert buffered.equals(ranged)
    assert buffered.to_pandas()["ts"].min() >= 4000.0

    # over the bound (or with the bound off): ranged requests, the same rows
    for limit in (str(len(body) - 1), "0"):
        monkeypatch.setenv(WHOLE_READ_ENV, limit)
        again, gets, _ = read(whole=True)
        assert gets > 1 and again.equals(ranged), limit
    monkeypatch.setenv(WHOLE_READ_ENV, str(len(body)))
    assert read(whole=True)[1] == 1

    with pytest.raises(SegmentMissing, match="registered but missing"):
        open_dataset(locate("/nowhere", f"s3://{bucket}/log/gone.parquet"), whole=True)


def _logs(tmp_path: Path, open_store: Callable[..., Store], bucket: str) -> tuple[Log, Log]:
    logs = []
    for name, base in (("local", ".mlcd/predictions"), ("remote", f"s3://{bucket}/predictions")):
        root = tmp_path / name
        root.mkdir()
        logs.append(Log(root, open_store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}"), base))
    return logs[0], logs[1]


def _window_rows(log: Log, window: Window, chunk_rows: int) -> tuple[pd.DataFrame, list[str]]:
    with log.store.read() as conn:
        reader = LogReader(log.root, find_segments(conn, "churn", window), window)
    reader.chunk_rows = chunk_rows
    frame = pd.concat([t.to_pandas() for t in reader.tables()], ignore_index=True)
    return frame, reader.missing


@pytest.mark.parametrize("chunk_rows", [1000, 100_000])  # large segments streamed / read whole
def test_the_monitor_window_is_the_same_whatever_the_bound(
    tmp_path: Path,
    open_store: Callable[..., Store],
    counted_s3: CountingProxy,
    monkeypatch: pytest.MonkeyPatch,
    chunk_rows: int,
) -> None:
    import fsspec

    bucket = _bucket(counted_s3)
    local, remote = _logs(tmp_path, open_store, bucket)
    now = time.time()
    parts = [
        traffic(300, 1, now - 3 * DAY, DAY),
        traffic(4000, 2, now - 2 * DAY, DAY, shift=1.0),
        traffic(2500, 3, now - DAY, DAY / 2),
        traffic(800, 4, now - DAY / 3, DAY / 4),  # its file goes missing
    ]
    for log in (local, remote):
        paths = [log.write("churn", 1 + i % 2, rows) for i, rows in enumerate(parts)]
    fs, _ = fsspec.core.url_to_fs(paths[0])
    sizes = [fs.size(p) for p in paths]
    gone = paths[-1]
    fs.rm(gone)
    with local.store.read() as conn:
        from mlcd.store.predictions import segments

        local_gone = [s["path"] for s in segments(conn, model="churn")][-1]
    (local.root / local_gone).unlink()

    window = Window(now - 4 * DAY, now)  # holds every segment whole
    expected, missing = _window_rows(local, window, chunk_rows)
    assert missing == [local_gone] and len(expected) == 300 + 4000 + 2500
    middle = sorted(sizes[:3])[1]  # two segments fetched whole, one read with ranges
    for limit, whole_reads in (("", 3), (str(middle), 2), ("0", 0)):
        monkeypatch.setenv(WHOLE_READ_ENV, limit)
        counted_s3.reset()
        got, missing = _window_rows(remote, window, chunk_rows)
        pd.testing.assert_frame_equal(got, expected)
        assert missing == [gone]
        gets = counted_s3.count("GET")
        if whole_reads == 3:
            assert gets == 3, gets  # one GET per segment there, none for the missing one
        else:
            assert gets > whole_reads, (limit, gets)

    # A window that cuts a segment: that one keeps ranged reads of the row groups it needs,
    # the one inside is fetched whole. ``last N``: its ts-only pass reads ranges.
    monkeypatch.delenv(WHOLE_READ_ENV)
    for cut in (Window(now - 1.75 * DAY, now), Window(end=now, last=3000)):
        expected, _ = _window_rows(local, cut, chunk_rows)
        counted_s3.reset()
        got, _ = _window_rows(remote, cut, chunk_rows)
        pd.testing.assert_frame_equal(got, expected)
        assert counted_s3.count("GET") > 2, cut


def test_from_log_datasets_are_the_same_whatever_the_bound(
    tmp_path: Path,
    open_store: Callable[..., Store],
    counted_s3: CountingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlcd.logdata.dataset import read_log_dataset

    bucket = _bucket(counted_s3)
    local, remote = _logs(tmp_path, open_store, bucket)
    now = time.time()
    for log in (local, remote):
        log.write("churn", 1, traffic(2000, 1, now - 2 * DAY, DAY))
        log.write("churn", 2, traffic(1500, 2, now - DAY, DAY / 2))
    for since in (now - 3 * DAY, now - 1.5 * DAY):  # both segments inside; one cut
        expected = read_log_dataset(local.store, local.root, "churn", since=since)
        for limit in ("", "0"):
            monkeypatch.setenv(WHOLE_READ_ENV, limit)
            counted_s3.reset()
            got = read_log_dataset(remote.store, remote.root, "churn", since=since)
            pd.testing.assert_frame_equal(got.frame, expected.frame)
            gets = counted_s3.count("GET")
            whole = limit == "" and since == now - 3 * DAY
            assert gets == 2 if whole else gets > 2, (limit, since, gets)


@pytest.mark.parametrize("limit", ["", "0"])
def test_a_damaged_object_is_named_by_both_paths(
    tmp_path: Path,
    open_store: Callable[..., Store],
    counted_s3: CountingProxy,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
) -> None:
    from mlcd.logdata.dataset import read_log_dataset

    monkeypatch.setenv(WHOLE_READ_ENV, limit)
    bucket = _bucket(counted_s3)
    _, remote = _logs(tmp_path, open_store, bucket)
    now = time.time()
    remote.write("churn", 1, traffic(500, 1, now - DAY, DAY / 2))
    path = remote.write("churn", 1, traffic(500, 2, now - DAY / 2, DAY / 4))
    _put(bucket, path.removeprefix(f"s3://{bucket}/"), b"PAR1 this is not a Parquet file")
    window = Window(now - 2 * DAY, now)
    with pytest.raises(MonitorError, match="not a readable Parquet file") as info:
        _window_rows(remote, window, 100_000)
    assert path in info.value.message
    assert "prediction_segments" in (info.value.hint or "")
    with pytest.raises(UsageError, match="not a readable Parquet file") as used:
        read_log_dataset(remote.store, remote.root, "churn")
    assert path in used.value.message


def test_the_bound_must_be_a_number_of_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WHOLE_READ_ENV, raising=False)
    assert whole_read_max() == 256 * 1024 * 1024
    monkeypatch.setenv(WHOLE_READ_ENV, "1000")
    assert whole_read_max() == 1000
    for bad in ("256MB", "-1"):
        monkeypatch.setenv(WHOLE_READ_ENV, bad)
        with pytest.raises(ConfigError, match=WHOLE_READ_ENV) as info:
            whole_read_max()
        assert "0" in (info.value.hint or "")
