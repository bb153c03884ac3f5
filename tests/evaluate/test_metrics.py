"""Weighted metrics agree with scikit-learn, on whole data and on explicit resamples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlcd.config import Slice
from mlcd.errors import EvaluationError
from mlcd.evaluate.bootstrap import resample_weights
from mlcd.evaluate.metrics import (
    Scored,
    calibration,
    confusion,
    point,
    slice_masks,
    weighted,
)


def _binary(n: int = 2000, seed: int = 0) -> Scored:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(y * 0.3 + rng.normal(0.35, 0.25, n), 0, 1).round(2)  # rounded: many ties
    proba = np.column_stack([1 - score, score])
    return Scored("classification", y, (score > 0.5).astype(int), proba, [0, 1])


def _multiclass(n: int = 1500, seed: int = 1) -> Scored:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3)) + np.eye(3)[y] * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Scored("classification", y, proba.argmax(axis=1), proba, ["a", "b", "c"])


def _regression(n: int = 1000, seed: int = 2) -> Scored:
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 20, n)
    return Scored("regression", y, y + rng.normal(0, 5, n))


def _sklearn(scored: Scored, index: np.ndarray) -> dict[str, float]:
    y, pred = scored.y[index], scored.pred[index]
    if scored.task == "regression":
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
            "mape": skm.mean_absolute_percentage_error(y, pred),
        }
    assert scored.proba is not None
    proba = scored.proba[index]
    binary = scored.k == 2
    average = "binary" if binary else "macro"
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, average=average, zero_division=0),
        "recall": skm.recall_score(y, pred, average=average, zero_division=0),
        "f1": skm.f1_score(y, pred, average=average, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, proba[:, 1])
        if binary
        else skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "log_loss": skm.log_loss(y, proba, labels=list(range(scored.k))),
    }


@pytest.mark.parametrize("make", [_binary, _multiclass, _regression])
def test_point_metrics_match_sklearn(make) -> None:  # type: ignore[no-untyped-def]
    scored = make()
    expected = _sklearn(scored, np.arange(scored.n))

    got = point(scored)

    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.parametrize("make", [_binary, _multiclass, _regression])
def test_resample_weights_give_the_metrics_of_the_resampled_rows(make) -> None:  # type: ignore[no-untyped-def]
    scored = make()
    W = next(resample_weights(scored.n, 3, np.random.default_rng(7)))

    for row in W:
        index = np.repeat(np.arange(scored.n), row.astype(int))
        expected = _sklearn(scored, index)
        for name, value in expected.items():
            got = weighted(name, row[None, :], scored)
            assert got is not None
            assert got[0] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_metrics_that_do_not_apply_are_left_out() -> None:
    no_proba = Scored("classification", np.array([0, 1, 1]), np.array([0, 1, 0]), None, [0, 1])

    assert set(point(no_proba)) == {"accuracy", "precision", "recall", "f1"}
    assert weighted("rmse", np.ones((1, 3)), no_proba) is None
    with pytest.raises(EvaluationError, match="did you mean 'roc_auc'"):
        weighted("roc_acu", np.ones((1, 3)), no_proba)


def test_confusion_matrix_and_calibration_curve() -> None:
    scored = _binary()

    matrix = confusion(scored)
    curve = calibration(scored)

    assert matrix == skm.confusion_matrix(scored.y, scored.pred).tolist()
    assert sum(curve["count"]) == scored.n
    assert all(0.0 <= p <= 1.0 for p in curve["predicted"] + curve["observed"])


def test_slices_by_value_and_range() -> None:
    frame = pd.DataFrame({"age": [10, 25, 30, 45, 60], "plan": ["a", "b", "a", "c", "a"]})
    slices = {
        "young": Slice(column="age", max=30),
        "middle": Slice(column="age", min=30, max=50),
        "plan_a": Slice(column="plan", value="a"),
    }

    masks = slice_masks(frame, slices)

    assert masks["young"].tolist() == [True, True, False, False, False]
    assert masks["middle"].tolist() == [False, False, True, True, False]
    assert masks["plan_a"].tolist() == [True, False, True, False, True]
    with pytest.raises(EvaluationError, match="column 'region'"):
        slice_masks(frame, {"eu": Slice(column="region", value="eu")})


def test_r2_keeps_its_digits_when_the_mean_dwarfs_the_spread() -> None:
    rng = np.random.default_rng(3)
    y = 1e9 + rng.normal(0, 1, 5000)
    scored = Scored("regression", y, y + rng.normal(0, 0.5, 5000))

    assert point(scored)["r2"] == pytest.approx(skm.r2_score(scored.y, scored.pred), rel=1e-6)
