"""Live drift and data-quality gauges on /metrics, and failed predictions in the log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.serve.conftest import (
    Registry,
    Running,
    cancer,
    cancer_model,
    free_port,
    mixed_data,
    mixed_model,
)
from tests.serve.models import FlakyModel

from mlcd.config import Config, Model, Monitor, PredictionLog, Serve
from mlcd.registry import save_model, set_alias
from mlcd.store import predictions

URL = "/v1/models/cancer/predict"
WINDOW = 300
#: Columns multiplied by 3 in the shifted traffic: far outside what training saw.
SHIFTED = ["mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter",
           "worst area", "radius error", "perimeter error", "area error", "mean texture",
           "worst texture", "texture error", "mean concavity", "worst concavity",
           "mean concave points", "worst concave points"]  # fmt: skip

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _register_with_profile(registry: Registry, c: float = 1.0, alias: str = "champion") -> int:
    """Register a model the way ``mlcd run`` does: declared, with its reference data."""
    from mlcd.registration import register_declared_models

    X, y = cancer()
    folder = registry.root / f"model-{c}"
    save_model(cancer_model(c), folder, sample_input=X.head(100))
    reference = registry.root / "reference.csv"
    X.assign(target=y).to_csv(reference, index=False)
    config = Config(
        models={"cancer": Model(path=folder.name, reference_data=reference.name, target="target")}
    )
    (registered,) = register_declared_models(
        registry.root, config, registry.store, registry.objects
    )
    assert registered.version is not None and registered.reference_digest is not None
    set_alias(registry.store, "cancer", alias, registered.version)
    return registered.version


def _settings() -> tuple[Serve, Monitor]:
    serve = Serve(poll_interval_s=0.2, prediction_log=PredictionLog(flush_interval_s=0.05))
    return serve, Monitor(live_window_rows=WINDOW, live_refresh_s=0.05)


def _metrics(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _gauge(samples: Samples, name: str, version: int = 1, **labels: str) -> float | None:
    key = tuple(sorted({"model": "cancer", "version": str(version), **labels}.items()))
    return samples.get(f"mlcd_monitor_{name}", {}).get(key)


def _drifted(samples: Samples, version: int = 1) -> set[str]:
    flags = samples.get("mlcd_monitor_feature_drifted", {})
    return {
        dict(k)["feature"]
        for k, v in flags.items()
        if v == 1 and dict(k)["version"] == str(version)
    }


def _poll(
    client: httpx.Client, done: Callable[[Samples], bool], what: str, timeout: float = 60.0
) -> Samples:
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        try:
            samples = _metrics(client)
        except httpx.TransportError:
            samples = {}
        if done(samples):
            return samples
        time.sleep(0.05)
    monitor = {k: v for k, v in samples.items() if k.startswith("mlcd_monitor_")}
    raise AssertionError(f"timed out waiting for {what}; last gauges: {monitor}")


def _traffic(
    X: pd.DataFrame, rows: int, seed: int, shift: bool = False, per_request: int = 50
) -> list[pd.DataFrame]:
    batch = X.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    if shift:
        batch[SHIFTED] = batch[SHIFTED] * 3
    return [batch.iloc[i : i + per_request] for i in range(0, rows, per_request)]


def _send(client: httpx.Client, batches: list[pd.DataFrame], close: bool = False) -> int:
    headers = {"connection": "close"} if close else {}
    for batch in batches:
        response = client.post(URL, json=batch.to_dict(orient="records"), headers=headers)
        assert response.status_code == 200, response.text
    return sum(len(b) for b in batches)


def test_drift_gauge_stays_low_on_usual_traffic_and_rises_naming_shifted_features(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    _register_with_profile(registry)
    settings, monitor = _settings()
    server = serve(settings=settings, monitor=monitor)
    X, _ = cancer()

    # Before any traffic the window exists and is empty; no share is exported on 0 rows.
    empty = _poll(server.client, lambda s: _gauge(s, "window_rows") == 0, "an empty window")
    assert _gauge(empty, "drift_share") is None

    _send(server.client, _traffic(X, WINDOW, seed=1))
    usual = _poll(
        server.client, lambda s: _gauge(s, "window_rows") == WINDOW, "a full window of rows"
    )
    assert _gauge(usual, "drift_share") is not None
    assert _gauge(usual, "drift_share") <= 0.1  # type: ignore[operator]
    assert _gauge(usual, "dataset_drift") == 0
    assert _gauge(usual, "out_of_range_share") == 0  # rows of the training data itself
    assert _gauge(usual, "missing_share") == 0 and _gauge(usual, "rejected_share") == 0
    scores = usual["mlcd_monitor_feature_drift_score"]
    features = {dict(k)["feature"] for k in scores}
    assert set(X.columns) | {"prediction", "proba"} == features
    assert all(0 <= v <= 1 for v in scores.values())  # KS p-values: 569 reference rows

    batches = _traffic(X, WINDOW, seed=2, shift=True)
    sent = pd.concat(batches)
    outside = ((sent < X.min()) | (sent > X.max())).to_numpy().sum() / sent.size
    _send(server.client, batches)
    shifted = _poll(
        server.client,
        # The exact out-of-range share of these rows: the window holds them all, only them.
        lambda s: _gauge(s, "out_of_range_share") == pytest.approx(outside),
        "the window to hold the shifted rows",
    )
    assert _gauge(shifted, "window_rows") == WINDOW  # a rolling window: the old rows left
    assert _gauge(shifted, "dataset_drift") == 1  # 16 of 30 columns: above the 0.5 share
    assert _drifted(shifted) >= set(SHIFTED)
    assert len(_drifted(shifted) - set(SHIFTED)) <= 3  # the others stay (mostly) quiet
    assert _gauge(shifted, "prediction_drift") == 1
    assert outside > 0.2
    radius = _gauge(shifted, "feature_drift_score", feature="mean radius")
    assert radius is not None and radius < 1e-6  # a KS p-value

    # Rejected requests count in the window's rejected share, not in drift or missing values.
    for _ in range(10):
        assert server.client.post(URL, json=[{"nope": 1}]).status_code == 422
    rejected = _poll(
        server.client,
        lambda s: _gauge(s, "rejected_share") == pytest.approx(10 / WINDOW),
        "the rejected share",
    )
    assert _gauge(rejected, "missing_share") == 0


def test_categories_never_seen_in_training_count_as_out_of_range_and_drift(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    from mlcd.monitor import compute_reference_profile
    from mlcd.store import models

    X, _ = mixed_data(400)
    model = mixed_model()
    version = registry.register("mixed", model, X.head(50))
    reference = X.assign(prediction=model.predict(X), proba=model.predict_proba(X)[:, 1])
    digest = str(compute_reference_profile(reference, registry.objects))
    registry.store.transact(
        lambda conn: models.update_version(conn, "mixed", version, reference_digest=digest)
    )
    settings, monitor = _settings()
    server = serve("mixed@champion", settings=settings, monitor=monitor)
    url = "/v1/models/mixed/predict"

    def send(rows: pd.DataFrame) -> None:
        for start in range(0, len(rows), 50):
            batch = rows.iloc[start : start + 50].to_dict(orient="records")
            assert server.client.post(url, json=batch).status_code == 200

    def gauge(samples: Samples, name: str) -> float | None:
        key = (("model", "mixed"), ("version", str(version)))
        return samples.get(f"mlcd_monitor_{name}", {}).get(key)

    send(X.sample(WINDOW, replace=True, random_state=1))
    usual = _poll(server.client, lambda s: gauge(s, "window_rows") == WINDOW, "the window")
    assert gauge(usual, "out_of_range_share") == 0 and gauge(usual, "drift_share") == 0
    send(X.sample(WINDOW, replace=True, random_state=2).assign(color="purple"))
    # One of the three inputs holds a category training never had, in every row.
    unseen = _poll(
        server.client,
        lambda s: gauge(s, "out_of_range_share") == pytest.approx(1 / 3),
        "the unseen categories",
    )
    flags = unseen["mlcd_monitor_feature_drifted"]
    assert flags[(("feature", "color"), ("model", "mixed"), ("version", str(version)))] == 1
    assert gauge(unseen, "missing_share") == 0


def test_a_version_without_a_profile_gets_no_gauges_and_the_log_says_so_once(
    registry: Registry, serve: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    v2 = registry.register("cancer", cancer_model(0.5), X.head(50), alias=None)
    settings, monitor = _settings()
    with caplog.at_level(logging.WARNING, logger="mlcd.serve"):
        server = serve(settings=settings, monitor=monitor)
        _send(server.client, _traffic(X, 150, seed=3))
        for target in (v2, 1):  # away and back: version 1 is loaded twice
            set_alias(registry.store, "cancer", "champion", target)
            _poll(
                server.client,
                lambda s, t=target: (
                    s.get("mlcd_serve_model_version", {}).get(
                        (("model", "cancer"), ("role", "primary"))
                    )
                    == t
                ),
                f"version {target} to serve",
            )
        _send(server.client, _traffic(X, 150, seed=4))
        assert server.service.predlog.flush()
        samples = _metrics(server.client)
    assert not [name for name in samples if name.startswith("mlcd_monitor_")]
    told = [r.getMessage() for r in caplog.records if "has no reference profile" in r.getMessage()]
    assert len([m for m in told if m.startswith("cancer/1 ")]) == 1
    assert len([m for m in told if m.startswith(f"cancer/{v2} ")]) == 1
    assert "models.cancer.reference_data" in told[0]


def test_gauges_follow_the_alias_to_the_new_version(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    _register_with_profile(registry)
    settings, monitor = _settings()
    server = serve(settings=settings, monitor=monitor)
    X, _ = cancer()
    _send(server.client, _traffic(X, 120, seed=5))
    _poll(server.client, lambda s: _gauge(s, "window_rows") == 120, "version 1's window")

    v2 = _register_with_profile(registry, c=0.1)
    moved = _poll(
        server.client,
        lambda s: _gauge(s, "window_rows", v2) == 0 and _gauge(s, "window_rows") is None,
        "the gauges to move to the new version",
    )
    assert not any(dict(k)["version"] == "1" for k in moved["mlcd_monitor_window_rows"])
    _send(server.client, _traffic(X, 120, seed=6))
    after = _poll(server.client, lambda s: _gauge(s, "window_rows", v2) == 120, "v2's window")
    assert _gauge(after, "drift_share", v2) is not None


def test_a_model_that_raises_on_valid_input_is_logged_with_status_error(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    registry.register("cancer", FlakyModel(limit=0.5), frame, trusted=True, flavor="python")
    server = serve(trusted=True)
    fine = server.client.post(URL, json=[{"x": 0.2}], headers={"x-request-id": "fine"})
    assert fine.status_code == 200
    failed = server.client.post(URL, json=[{"x": 0.9}, {"x": 0.1}], headers={"x-request-id": "f"})
    assert failed.status_code == 500 and "value above 0.5" in failed.json()["error"]
    assert server.service.predlog.flush()

    with registry.store.read() as conn:
        segments = predictions.segments(conn, model="cancer")
    log = pd.concat([pq.read_table(registry.root / s["path"]).to_pandas() for s in segments])
    errors = log[log["status"] == "error"].sort_values("request_id")
    assert list(errors["request_id"]) == ["f-0", "f-1"]
    assert errors["error"].str.contains("cancer/1 failed to predict: value above 0.5").all()
    assert list(errors["x"]) == [0.9, 0.1]  # the inputs, for whoever debugs the model
    assert errors["prediction"].isna().all()
    assert list(log.loc[log["status"] == "ok", "request_id"]) == ["fine"]


def test_live_gauges_off_when_the_window_is_zero(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    _register_with_profile(registry)
    server = serve(monitor=Monitor(live_window_rows=0), log=False)
    X, _ = cancer()
    _send(server.client, _traffic(X, 100, seed=7))
    assert server.service.predlog is None  # no log, no gauges: nothing to feed
    assert not [n for n in _metrics(server.client) if n.startswith("mlcd_monitor_")]


def test_gauges_work_without_the_prediction_log(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    _register_with_profile(registry)
    settings, monitor = _settings()
    server = serve(settings=settings, monitor=monitor, log=False)
    X, _ = cancer()
    _send(server.client, _traffic(X, 150, seed=8))
    _poll(server.client, lambda s: _gauge(s, "window_rows") == 150, "the window")
    assert not (registry.root / "state" / "predictions").exists()
    with registry.store.read() as conn:
        assert predictions.segments(conn, model="cancer") == []


@pytest.mark.slow
def test_mlcd_serve_with_two_workers_merges_their_windows(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    from mlcd.project import Project
    from mlcd.registration import register_declared_models

    root = tmp_path / "proj"
    assert run_cli(["init", str(root)], cwd=tmp_path).returncode == 0
    X, y = cancer()
    save_model(cancer_model(), root / "model", sample_input=X.head(100))
    X.assign(target=y).to_csv(root / "reference.csv", index=False)
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write(
            "\nmodels:\n  cancer:\n    path: model\n    reference_data: reference.csv\n"
            "    target: target\n"
            "serve:\n  prediction_log:\n    flush_interval_s: 0.1\n"
            f"monitor:\n  live_window_rows: {WINDOW}\n  live_refresh_s: 0.1\n"
        )
    with Project.open(root) as project:
        (done,) = register_declared_models(root, project.config, project.store, project.objects)
        assert done.reference_digest is not None
        set_alias(project.store, "cancer", "champion", 1)

    temp = tmp_path / "tmp"  # mkdtemp puts the shared metrics folder here: the test can look
    temp.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--workers", "2",
         "--port", str(port)],
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _poll(client, lambda s: "mlcd_serve_model_version" in s, "mlcd serve", timeout=120)
            _poll(
                client,
                lambda s: len(list(temp.glob("mlcd-metrics-*/mlcd_live_*.json"))) == 2,
                "both workers' live snapshots",
                timeout=120,
            )
            # New connections until both workers have answered (the kernel picks the worker).
            sent = 0
            seed = 10
            while not _both_fed(temp):
                sent += _send(client, _traffic(X, 10, seed, per_request=10), close=True)
                seed += 1
                assert sent < WINDOW, "the kernel gave every connection to the same worker"
                time.sleep(0.05)
            # Every row is in one of the two windows (neither is full): the sum is exact.
            usual = _poll(client, lambda s: _gauge(s, "window_rows") == sent, "the rows")
            # One series per version, whatever the number of workers: no pid label.
            assert list(usual["mlcd_monitor_window_rows"]) == [
                (("model", "cancer"), ("version", "1"))
            ]
            # Send enough shifted rows that every worker's window is all shifted.
            _send(client, [b for s in range(8) for b in _traffic(X, 100, 100 + s, True)], True)
            _poll(
                client,
                lambda s: (
                    _gauge(s, "dataset_drift") == 1
                    and _drifted(s) >= set(SHIFTED)
                    and (_gauge(s, "out_of_range_share") or 0) > 0.1
                ),  # weighted over both windows
                "drift across the workers",
            )
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert not list(temp.glob("mlcd-metrics-*/mlcd_live_*.json"))  # each worker took its own


def _both_fed(temp: Path) -> bool:
    import json

    files = list(temp.glob("mlcd-metrics-*/mlcd_live_*.json"))
    fed = [json.loads(f.read_text())["versions"].get("1", {}).get("rows", 0) for f in files]
    return len(fed) == 2 and all(n > 0 for n in fed)


def test_merge_sums_rows_weights_quality_and_keeps_the_worst_drift() -> None:
    from mlcd.serve.gauges import _merge

    def record(
        rows: int, drift: float, missing: float, rejected: float, ready: bool = True
    ) -> dict[str, Any]:
        return {
            "rows": rows,
            "ready": ready,
            "drift_share": drift,
            "dataset_drift": float(drift >= 0.5),
            "prediction_drift": 0.0,
            "missing_share": missing,
            "out_of_range_share": 0.5,
            "rejected_share": rejected,
            "scores": {"a": drift},
            "drifted": ["a"] if drift else [],
            "inputs": ["a", "b"],
        }

    merged = _merge(
        [
            {"1": record(100, 0.5, 0.1, 0.0), "2": record(10, 0.0, 0.0, 0.0, ready=False)},
            {"1": record(300, 0.0, 0.3, 0.5)},
        ]
    )
    one = merged["1"]
    assert one["rows"] == 400
    assert one["rejected_share"] == pytest.approx((0 + 150) / 400)
    assert one["missing_share"] == pytest.approx((100 * 0.1 + 150 * 0.3) / 250)
    assert one["drift_share"] == 0.5 and one["drifted"] == ["a"] and one["dataset_drift"] == 1
    assert merged["2"] == record(10, 0.0, 0.0, 0.0, ready=False)
    assert np.isclose(one["out_of_range_share"], 0.5)
