"""Live performance: metric sums equal scikit-learn's; late, shuffled labels change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from mlcd.errors import MonitorError
from mlcd.monitor.metrics import Tally
from mlcd.monitor.performance import (
    BUCKET_S,
    load_state,
    performance_report,
    tally_pairs,
    update_performance,
)
from mlcd.store import Store
from tests.monitor.conftest import PredictionLogDir

NOW = 1_750_000_000.0


def test_classification_sums_give_scikit_learn_metrics() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 3000)
    proba = np.clip(0.3 * y + 0.7 * rng.random(3000), 0, 1)
    pred = (proba > 0.5).astype(int)
    tally = Tally("classification")
    for part in np.array_split(np.arange(3000), 7):
        tally.add(y[part], pred[part], proba[part])
    got = tally.metrics()
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(sk.precision_score(y, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(sk.recall_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred), abs=1e-12)
    assert got["log_loss"] == pytest.approx(sk.log_loss(y, proba), abs=1e-9)
    assert got["brier"] == pytest.approx(sk.brier_score_loss(y, proba), abs=1e-12)
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y, proba), abs=2e-3)


def test_multiclass_uses_macro_averages() -> None:
    y = np.array(["a", "b", "c", "a", "b", "c", "a", "a"])
    pred = np.array(["a", "b", "b", "a", "c", "c", "b", "a"])
    tally = Tally("classification")
    tally.add(y, pred)
    got = tally.metrics()
    assert got["f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
    assert got["precision"] == pytest.approx(sk.precision_score(y, pred, average="macro"))


def test_regression_sums_give_scikit_learn_metrics_in_any_order() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(100, 20, 2000)
    pred = y + rng.normal(0, 5, 2000)
    forward, backward = Tally("regression"), Tally("regression")
    for part in np.array_split(np.arange(2000), 9):
        forward.add(y[part], pred[part])
    for part in np.array_split(np.arange(2000)[::-1], 4):
        backward = backward.merge(_tally(y[part], pred[part]))
    for got in (forward.metrics(), backward.metrics()):
        assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-12)
        assert got["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, pred)), rel=1e-12)
        assert got["r2"] == pytest.approx(sk.r2_score(y, pred), rel=1e-10)
        assert got["mape"] == pytest.approx(sk.mean_absolute_percentage_error(y, pred), rel=1e-10)


def _tally(y: np.ndarray, pred: np.ndarray) -> Tally:
    tally = Tally("regression")
    tally.add(y, pred)
    return tally


def _log(log_dir: PredictionLogDir, rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Predictions over six hours, written as three segments; returns them with true labels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, rows)
    proba = np.clip(0.4 * truth + 0.6 * rng.random(rows), 0, 1)
    data = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(rows)],
            "ts": NOW - 6 * 3600 + np.sort(rng.uniform(0, 6 * 3600, rows)),
            "x": rng.standard_normal(rows),
            "prediction": (proba > 0.5).astype(int),
            "proba": proba,
        }
    )
    for part in np.array_split(np.arange(rows), 3):
        log_dir.write("m", 1, data.iloc[part].reset_index(drop=True))
    return data.assign(label=truth)


def _metrics(store: Store, version: int | None = 1) -> dict[str, float]:
    state = load_state(store, "m")
    report = performance_report(
        state.buckets, task="classification", start=NOW - 86400, end=NOW, version=version
    )
    return report.overall


def test_labels_arriving_out_of_order_give_the_same_metrics_as_in_order(
    tmp_path: Path, open_store: Callable[..., Store]
) -> None:
    results = []
    for name, seed in (("in-order", None), ("shuffled", 3)):
        root = tmp_path / name
        log_dir = PredictionLogDir(root, open_store(f"sqlite:///{root / 'mlcd.db'}"))
        data = _log(log_dir)
        order = np.arange(len(data))
        if seed is not None:
            np.random.default_rng(seed).shuffle(order)
        # labels come in 5 deliveries, a monitor run after each
        for step, part in enumerate(np.array_split(order, 5)):
            at = NOW + 60 * step
            log_dir.feedback(
                "m",
                dict(
                    zip(
                        data["request_id"].iloc[part],
                        data["label"].iloc[part].tolist(),
                        strict=True,
                    )
                ),
                at,
            )
            _, result = update_performance(log_dir.store, root, "m", "classification", now=at + 30)
            assert result.joined == len(part)
        results.append(_metrics(log_dir.store))
    in_order, shuffled = results
    assert in_order.keys() == shuffled.keys()
    for key, value in in_order.items():
        assert shuffled[key] == pytest.approx(value, rel=1e-12)
    one_shot = tally_pairs(data.assign(version=1), "classification")
    total = Tally("classification")
    for tally in one_shot.values():
        total = total.merge(tally)
    assert in_order == pytest.approx(total.metrics(), rel=1e-12)
    assert in_order["accuracy"] == pytest.approx(
        sk.accuracy_score(data["label"], data["prediction"]), abs=1e-12
    )


def test_label_before_its_prediction_waits_and_joins_later(log_dir: PredictionLogDir) -> None:
    log_dir.feedback("m", {"early": 1}, NOW - 100)
    _, first = update_performance(log_dir.store, log_dir.root, "m", "classification", now=NOW)
    assert (first.new_labels, first.joined, first.pending) == (1, 0, 1)
    row = pd.DataFrame({"request_id": ["early"], "ts": [NOW - 200.0], "prediction": [1]})
    log_dir.write("m", 1, row)
    _, second = update_performance(log_dir.store, log_dir.root, "m", "classification", now=NOW + 10)
    assert (second.new_labels, second.joined, second.pending) == (0, 1, 0)
    assert _metrics(log_dir.store)["accuracy"] == 1.0


def test_label_whose_prediction_never_comes_is_dropped_after_the_horizon(
    log_dir: PredictionLogDir,
) -> None:
    log_dir.feedback("m", {"ghost": 0}, NOW - 100)
    update_performance(log_dir.store, log_dir.root, "m", "classification", now=NOW)
    state, result = update_performance(
        log_dir.store, log_dir.root, "m", "classification", now=NOW + 7200, horizon_s=3600
    )
    assert (result.orphaned, result.pending, state.orphaned) == (1, 0, 1)


def test_labels_newer_than_the_settle_time_wait_for_the_next_run(log_dir: PredictionLogDir) -> None:
    _log(log_dir, rows=30)
    log_dir.feedback("m", {"r0": 1}, NOW - 1)
    _, result = update_performance(
        log_dir.store, log_dir.root, "m", "classification", now=NOW, settle_s=5
    )
    assert result.new_labels == 0
    _, result = update_performance(
        log_dir.store, log_dir.root, "m", "classification", now=NOW + 10, settle_s=5
    )
    assert (result.new_labels, result.joined) == (1, 1)


def test_a_corrected_label_replaces_the_first_instead_of_counting_twice(
    log_dir: PredictionLogDir,
) -> None:
    from mlcd.store.predictions import add_feedback

    data = _log(log_dir, rows=60)
    first = {rid: 1 - int(p) for rid, p in zip(data["request_id"], data["prediction"], strict=True)}
    log_dir.feedback("m", first, NOW)  # every label says the model was wrong
    update_performance(
        log_dir.store, log_dir.root, "m", "classification", now=NOW + 10, horizon_s=1e9
    )
    assert _metrics(log_dir.store)["accuracy"] == 0.0
    rid = data["request_id"].iloc[5]
    # the feedback endpoint's upsert: the same request id with a new label and time
    log_dir.store.transact(
        lambda conn: add_feedback(
            conn, [{"request_id": rid, "label": int(data["prediction"].iloc[5])}], "m"
        )
    )
    # the upsert stamps the real time: look back far enough to find the prediction
    _, result = update_performance(
        log_dir.store, log_dir.root, "m", "classification", now=time.time() + 10, horizon_s=1e9
    )
    assert result.recounted == 1
    metrics = _metrics(log_dir.store, version=None)
    assert metrics["n"] == 60 and metrics["accuracy"] == pytest.approx(1 / 60)


def test_metrics_per_period_sit_next_to_the_baseline(log_dir: PredictionLogDir) -> None:
    data = _log(log_dir)
    labels = dict(zip(data["request_id"], data["label"].tolist(), strict=True))
    log_dir.feedback("m", labels, NOW)
    state, _ = update_performance(log_dir.store, log_dir.root, "m", "classification", now=NOW + 10)
    report = performance_report(
        state.buckets,
        task="classification",
        start=NOW - 86400,
        end=NOW,
        version=1,
        predictions=1200,
        baseline={"test": {"accuracy": 0.99}, "f1": 0.9, "note": "text"},
        metric="accuracy",
        threshold=0.95,
        min_labels=30,
    )
    assert report.baseline == {"test.accuracy": 0.99, "f1": 0.9}
    hours = {int(ts // BUCKET_S) for ts in data["ts"]}
    assert len(report.periods) == len(hours)
    assert all(p["end"] - p["start"] == BUCKET_S for p in report.periods)
    assert sum(p["labels"] for p in report.periods) == report.labels == 600
    assert report.coverage == 0.5
    assert report.decay and "accuracy" in (report.decay_reason or "")
    too_few = performance_report(
        state.buckets,
        task="classification",
        start=NOW - 86400,
        end=NOW,
        metric="accuracy",
        threshold=0.95,
        min_labels=10_000,
    )
    assert not too_few.decay


def test_a_second_joiner_waits_for_the_lease_then_gives_up(log_dir: PredictionLogDir) -> None:
    from mlcd.store import locks

    log_dir.store.transact(lambda c: locks.acquire(c, "monitor.performance.m", "someone", 600))
    with pytest.raises(MonitorError, match="another process is joining labels") as info:
        update_performance(
            log_dir.store, log_dir.root, "m", "classification", now=NOW, lease_wait_s=0.3
        )
    assert "retry" in (info.value.hint or "")


@pytest.mark.postgres
def test_incremental_join_works_on_postgresql(
    pg_url: str, tmp_path: Path, open_store: Callable[..., Store]
) -> None:
    log_dir = PredictionLogDir(tmp_path, open_store(pg_url))
    data = _log(log_dir, rows=120)
    half = len(data) // 2
    for step, part in enumerate((data.iloc[half:], data.iloc[:half])):
        log_dir.feedback(
            "m", dict(zip(part["request_id"], part["label"].tolist(), strict=True)), NOW + step
        )
        update_performance(log_dir.store, tmp_path, "m", "classification", now=NOW + 100 + step)
    assert _metrics(log_dir.store)["accuracy"] == pytest.approx(
        sk.accuracy_score(data["label"], data["prediction"])
    )
