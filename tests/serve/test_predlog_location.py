"""Prediction-log segments written to any location: a folder or an fsspec URL (S3 on a moto
server on 127.0.0.1), named so that replicas never collide, registered with their full URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.serve.conftest import Registry, Running, cancer, cancer_model

from mlcd.config import Monitor
from mlcd.errors import ConfigError
from mlcd.serve.predlog import LogEntry, PredictionLog
from mlcd.store import predictions


@pytest.fixture
def s3_log(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<fresh bucket>/predictions`` with the environment fsspec reads."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    bucket = f"mlcd-predlog-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/predictions"


def _entry(i: int, ts: float) -> LogEntry:
    matrix = np.array([[float(i), 2.0 * i]])
    return LogEntry(
        "m", 1, ts, 1.0, "ok", [f"id-{i}"], {"x": matrix[:, 0], "y": matrix[:, 1]},
        np.array([i % 2]), matrix=matrix,
    )  # fmt: skip


def _segments(registry: Registry, model: str) -> list[dict[str, Any]]:
    with registry.store.read() as conn:
        return list(predictions.segments(conn, model=model))


def test_replicas_writing_to_one_s3_location_never_collide(registry: Registry, s3_log: str) -> None:
    import fsspec

    from mlcd.digest import hash_bytes
    from mlcd.logdata.segments import locate, open_dataset

    replicas = [PredictionLog(registry.store, registry.root, s3_log) for _ in range(3)]
    for log in replicas:
        log.start()
    ts = 1_700_000_000.0  # every replica's segments start at the same millisecond
    for n in range(3):
        for r, log in enumerate(replicas):
            for i in range(50):
                assert log.log(_entry(1000 * r + 100 * n + i, ts))
            assert log.flush()
    for log in replicas:
        log.close()

    segments = _segments(registry, "m")
    assert len(segments) == 9 and sum(s["rows"] for s in segments) == 450
    names = {s["path"].rsplit("/", 1)[1] for s in segments}
    assert len(names) == 9  # same first timestamp, different names
    prefix = f"{s3_log}/model=m/date=2023-11-14/{int(ts * 1000)}-"
    assert all(s["path"].startswith(prefix) for s in segments)  # full URLs
    assert all(f"-{os.getpid()}-" in s["path"] for s in segments)
    ids: list[str] = []
    fs = fsspec.filesystem("s3")
    for segment in segments:
        assert str(hash_bytes(fs.cat_file(segment["path"]))) == segment["digest"]
        table = open_dataset(locate(registry.root, segment["path"])).to_table()
        assert table.num_rows == segment["rows"]
        ids.extend(table.column("request_id").to_pylist())
    assert sorted(ids) == sorted(f"id-{1000 * r + 100 * n + i}" for r in range(3)
                                 for n in range(3) for i in range(50))  # fmt: skip


def test_a_server_logs_every_answered_request_to_s3(
    registry: Registry, serve: Callable[..., Running], s3_log: str
) -> None:
    from mlcd.logdata.segments import locate, open_dataset

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    server = serve(monitor=Monitor(log_location=s3_log))
    answered: dict[str, int] = {}
    for i in range(30):
        body = server.client.post("/v1/models/cancer/predict", json=[X.iloc[i].to_dict()])
        assert body.status_code == 200
        answer = body.json()
        answered[answer["request_ids"][0]] = answer["predictions"][0]
    assert server.service.predlog.flush()
    logged: dict[str, int] = {}
    for segment in _segments(registry, "cancer"):
        assert segment["path"].startswith(f"{s3_log}/model=cancer/date=")
        table = open_dataset(locate(registry.root, segment["path"])).to_table()
        logged.update(zip(table["request_id"].to_pylist(), table["prediction"].to_pylist(),
                          strict=True))  # fmt: skip
    assert logged == answered
    assert not (registry.root / "state" / "predictions").exists()  # nothing written locally


def test_a_relative_folder_is_under_the_project_and_registered_relative(
    registry: Registry,
) -> None:
    log = PredictionLog(registry.store, registry.root, "logs/predictions")
    log.start()
    log.log(_entry(1, 1_700_000_000.0))
    log.close()
    (segment,) = _segments(registry, "m")
    assert segment["path"].startswith("logs/predictions/model=m/date=2023-11-14/")
    assert (registry.root / segment["path"]).is_file()


def test_a_segment_the_store_never_registers_is_kept_and_counted(
    registry: Registry, s3_log: str
) -> None:
    import fsspec

    from mlcd.store import Store

    closed = Store(f"sqlite:///{registry.root / 'gone' / 'no.db'}", migrate=False)
    log = PredictionLog(closed, registry.root, s3_log)
    log.start()
    log.log(_entry(1, 1_700_000_000.0))
    log.close()
    assert (log.dropped_rows, log.written_rows) == (1, 0)  # no reader will see the row...
    (kept,) = fsspec.filesystem("s3").find(s3_log)  # ...but its file is kept, not deleted
    assert kept.endswith(".parquet")


def test_a_location_without_a_driver_fails_at_start_with_a_hint(tmp_path: Path) -> None:
    log = PredictionLog(None, tmp_path, "nosuchproto://bucket/predictions")
    with pytest.raises(ConfigError) as caught:
        log.start()
    assert "nosuchproto://bucket/predictions" in caught.value.message
    assert caught.value.hint


def test_feedback_finds_request_ids_in_a_log_on_s3_after_a_restart(
    registry: Registry, serve: Callable[..., Running], s3_log: str
) -> None:
    """A replica that did not answer the request (or restarted) looks the id up in the log."""
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    first = serve(monitor=Monitor(log_location=s3_log))
    ids = [
        first.client.post("/v1/models/cancer/predict", json=[X.iloc[i].to_dict()]).json()[
            "request_ids"
        ][0]
        for i in range(3)
    ]
    assert first.service.predlog.flush()
    other = serve(monitor=Monitor(log_location=s3_log))
    assert not other.service.issued.known(ids)  # not in this server's memory
    response = other.client.post(
        "/v1/feedback", json=[{"request_id": i, "label": 1} for i in ids], headers=other.auth
    )
    assert response.status_code == 200, response.text
    unknown = other.client.post(
        "/v1/feedback", json=[{"request_id": "never-answered", "label": 1}], headers=other.auth
    )
    assert unknown.status_code in (404, 422), unknown.text
