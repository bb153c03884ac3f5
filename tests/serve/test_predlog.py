"""The prediction log, feedback and /metrics, observed through the store, files and HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families
from tests.serve.conftest import Registry, Running

from mlcd.serve.predlog import LogEntry, PredictionLog
from mlcd.store import predictions

URL = "/v1/models/cancer/predict"


def _logged(registry: Registry) -> pd.DataFrame:
    with registry.store.read() as conn:
        segments = predictions.segments(conn, model="cancer")
    frames = [pq.read_table(registry.root / s["path"]).to_pandas() for s in segments]
    for segment, frame in zip(segments, frames, strict=True):
        assert segment["rows"] == len(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def test_logged_rows_equal_predictions_answered(
    registry: Registry, cancer_server: tuple[Running, pd.DataFrame, Any]
) -> None:
    server, X, model = cancer_server
    answered: dict[str, int] = {}
    for size in (1, 3, 1, 7, 2, 1):
        rows = X.sample(size, random_state=size)
        body = server.client.post(URL, json=rows.to_dict(orient="records")).json()
        answered.update(zip(body["request_ids"], body["predictions"], strict=True))
    tensor = {
        "name": "x",
        "shape": [2, 30],
        "datatype": "FP64",
        "data": X.iloc[:2].to_numpy().tolist(),
    }
    infer = server.client.post("/v2/models/cancer/infer", json={"inputs": [tensor]}).json()
    ids = next(o for o in infer["outputs"] if o["name"] == "request_id")["data"]
    answered.update(dict.fromkeys(ids, int(model.predict(X.iloc[:2])[0])))
    assert server.service.predlog.flush()

    log = _logged(registry)
    ok = log[log["status"] == "ok"]
    assert len(ok) == len(answered) == 17
    assert dict(zip(ok["request_id"], ok["prediction"], strict=True)) == answered
    assert set(ok["version"]) == {1} and set(ok["model"]) == {"cancer"}
    assert (ok["latency_ms"] > 0).all() and ok["proba"].between(0, 1).all()
    assert list(log.columns[:7]) == [
        "request_id", "ts", "model", "version", "status", "error", "latency_ms",
    ]  # fmt: skip
    assert set(X.columns) <= set(log.columns)
    first = ok[ok["request_id"] == ids[0]].iloc[0]
    assert first["mean radius"] == X.iloc[0]["mean radius"]
    # Partitioned by model and date, registered relative to the project.
    with registry.store.read() as conn:
        path = predictions.segments(conn)[0]["path"]
    assert path.startswith("state/predictions/model=cancer/date=") and path.endswith(".parquet")


def test_rejected_requests_are_logged_with_their_error(
    registry: Registry, cancer_server: tuple[Running, pd.DataFrame, Any]
) -> None:
    server, _X, _ = cancer_server
    bad = server.client.post(URL, json=[{"nope": 1}], headers={"x-request-id": "bad-1"})
    assert bad.status_code == 422
    server.service.predlog.flush()
    log = _logged(registry)
    row = log[log["request_id"] == "bad-1"].iloc[0]
    assert row["status"] == "rejected" and "missing column" in row["error"]
    assert pd.isna(row["mean radius"])


def test_a_sink_that_is_down_drops_and_counts_but_requests_succeed(
    registry: Registry, serve: Any
) -> None:
    from tests.serve.conftest import cancer, cancer_model

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    (registry.root / "state").mkdir(exist_ok=True)
    (registry.root / "state" / "predictions").write_text("a file where the log folder should be")
    server = serve()
    for _ in range(5):
        assert server.client.post(URL, json=[X.iloc[0].to_dict()]).status_code == 200
    server.service.predlog.flush()
    assert server.service.predlog.dropped_rows == 5
    metrics = _metrics(server)
    assert metrics["mlcd_serve_prediction_log_dropped_rows_total"][(("model", "cancer"),)] == 5


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    drops: list[int] = []
    log = PredictionLog(None, tmp_path, tmp_path / "p", queue_size=10, on_drop=drops.append)
    entry = LogEntry("m", 1, time.time(), 1.0, "ok", ["a", "b", "c", "d"], None, [1, 2, 3, 4])
    assert log.log(entry) and log.log(entry)
    assert not log.log(entry)  # 12 > 10 rows: dropped, not queued
    assert (log.dropped_rows, drops, log.queued_rows) == (4, [4], 8)
    log.start()
    log.close()
    assert log.written_rows == 8
    files = list((tmp_path / "p").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 8
    assert not log.log(entry)  # closed: dropped


def test_feedback_is_stored_for_request_ids(
    registry: Registry, cancer_server: tuple[Running, pd.DataFrame, Any]
) -> None:
    server, X, _ = cancer_server
    ids = server.client.post(URL, json=X.head(3).to_dict(orient="records")).json()["request_ids"]
    one = server.client.post("/v1/feedback", json={"request_id": ids[0], "label": 1})
    assert one.json() == {"stored": 1, "replaced": 0}
    many = server.client.post(
        "/v1/feedback", json={"labels": [{"request_id": i, "label": 0} for i in ids[1:]]}
    )
    assert many.json() == {"stored": 2, "replaced": 0}
    again = [{"request_id": ids[0], "label": 0, "replace": True}]
    assert server.client.post("/v1/feedback", json=again).json() == {"stored": 1, "replaced": 1}
    with registry.store.read() as conn:
        assert predictions.feedback_for(conn, ids) == {ids[0]: 0, ids[1]: 0, ids[2]: 0}


def test_bad_feedback_is_422(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, _, _ = cancer_server
    for body, words in [
        ({"request_id": "a"}, "'label' is missing"),
        ({"label": 1}, "'request_id' must be"),
        ([], "send {"),
        ([3], "must be an object"),
        ({"request_id": "x" * 65, "label": 1}, "at most 64"),
    ]:
        response = server.client.post("/v1/feedback", json=body)
        assert response.status_code == 422, body
        assert words in response.json()["error"]
    pickled = server.client.post(
        "/v1/feedback", content=b"\x80\x04", headers={"content-type": "application/x-python-pickle"}
    )
    assert pickled.status_code == 415


def _metrics(server: Running) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = server.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_parse_and_count_by_version_and_status(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    for _ in range(3):
        server.client.post(URL, json=[X.iloc[0].to_dict()])
    server.client.post(URL, json=[{"bad": 1}])
    metrics = _metrics(server)
    requests = metrics["mlcd_serve_requests_total"]
    key = (("endpoint", "v1"), ("model", "cancer"), ("status", "200"), ("version", "1"))
    assert requests[key] == 3
    assert (
        requests[(("endpoint", "v1"), ("model", "cancer"), ("status", "422"), ("version", "1"))]
        == 1
    )
    latency = metrics["mlcd_serve_request_duration_seconds_count"]
    assert latency[(("endpoint", "v1"), ("model", "cancer"), ("version", "1"))] == 4
    assert metrics["mlcd_serve_in_flight_requests"][(("model", "cancer"),)] == 0
    loads = metrics["mlcd_serve_model_loads_total"]
    assert (
        loads[(("model", "cancer"), ("outcome", "loaded"), ("role", "primary"), ("version", "1"))]
        == 1
    )
    assert metrics["mlcd_serve_model_version"][(("model", "cancer"), ("role", "primary"))] == 1
    assert (("model", "cancer"),) in metrics["mlcd_serve_prediction_log_dropped_rows_total"]
    assert metrics["mlcd_serve_predicted_rows_total"][(("model", "cancer"), ("version", "1"))] == 3
