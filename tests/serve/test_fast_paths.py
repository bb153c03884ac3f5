"""The fast paths of the hot endpoint answer exactly what the general paths answer.

One ``[rows, columns]`` numeric tensor of plain numbers skips the value-by-value tensor checks,
and a ``LogisticRegression`` is scored without scikit-learn's per-call input checks: both must
give the same numbers, the same refusals and the same prediction-log rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.serve.conftest import Registry, Running

from mlcd.config import Serve

INFER = "/v2/models/cancer/infer"


def _infer(server: Running, data: Any, shape: list[int]) -> Any:
    tensor = {"name": "input-0", "shape": shape, "datatype": "FP64", "data": data}
    return server.client.post(INFER, json={"inputs": [tensor]})


def test_flat_tensor_answers_what_nested_rows_answer_and_what_sklearn_computes(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, model = cancer_server
    rows = X.iloc[:40].to_numpy()
    flat = _infer(server, rows.ravel().tolist(), [40, 30])  # the fast path
    nested = _infer(server, rows.tolist(), [40, 30])  # nested lists: the general path
    assert flat.status_code == nested.status_code == 200, (flat.text, nested.text)

    def outputs(response: Any) -> dict[str, Any]:
        return {
            o["name"]: o["data"] for o in response.json()["outputs"] if o["name"] != "request_id"
        }

    assert outputs(flat) == outputs(nested)
    # Bit for bit what scikit-learn's own predict_proba gives (JSON floats round-trip exactly).
    expected = model.predict_proba(X.iloc[:40]).ravel().tolist()
    assert outputs(flat)["predict_proba"] == expected
    assert outputs(flat)["predict"] == model.predict(X.iloc[:40]).tolist()
    one = _infer(server, rows[7].tolist(), [1, 30])
    assert outputs(one)["predict_proba"] == model.predict_proba(X.iloc[7:8]).ravel().tolist()


def test_integers_in_a_flat_tensor_are_the_same_numbers(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    row = [round(v) for v in X.iloc[3].tolist()]  # ints: still plain numbers
    as_ints = _infer(server, row, [1, 30])
    as_floats = _infer(server, [float(v) for v in row], [1, 30])
    assert as_ints.status_code == 200, as_ints.text
    proba = [o for o in as_ints.json()["outputs"] if o["name"] == "predict_proba"]
    same = [o for o in as_floats.json()["outputs"] if o["name"] == "predict_proba"]
    assert proba == same


@pytest.mark.parametrize(
    ("value", "status", "words"),
    [
        (None, 422, "null"),  # no nulls in training: refused, by the plan
        ("abc", 400, "element 5"),  # not a number: refused, by the tensor check
        (True, 400, "element 5"),  # a boolean is not an FP64 value
    ],
)
def test_values_that_are_not_plain_numbers_get_the_general_refusal(
    cancer_server: tuple[Running, pd.DataFrame, Any], value: Any, status: int, words: str
) -> None:
    server, X, _ = cancer_server
    row: list[Any] = X.iloc[0].tolist()
    row[5] = value
    flat = _infer(server, row, [1, 30])
    nested = _infer(server, [row], [1, 30])
    assert flat.status_code == nested.status_code == status, (flat.text, nested.text)
    assert flat.json() == nested.json()
    assert words in flat.json()["error"]


def test_odd_shapes_fall_back_to_the_general_checks(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    row = X.iloc[0].tolist()
    empty = _infer(server, [], [0, 30])
    assert empty.status_code == 422 and "no rows" in empty.json()["error"]
    floaty = _infer(server, row, [1.0, 30])
    assert floaty.status_code == 400 and "'shape'" in floaty.json()["error"]
    short = _infer(server, row[:-1], [1, 30])
    assert short.status_code == 400 and "needs 30 values" in short.json()["error"]


def test_too_many_rows_in_a_flat_tensor_is_413(registry: Registry, serve: Any) -> None:
    from tests.serve.conftest import cancer, cancer_model

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X)
    server = serve(settings=Serve(max_rows=3, poll_interval_s=0.2, fleet_interval_s=0.2))
    ok = _infer(server, X.iloc[:3].to_numpy().ravel().tolist(), [3, 30])
    assert ok.status_code == 200, ok.text
    big = _infer(server, X.iloc[:4].to_numpy().ravel().tolist(), [4, 30])
    assert big.status_code == 413 and "limit of 3" in big.json()["error"]


def test_the_prediction_log_keeps_the_flat_tensors_inputs(registry: Registry, serve: Any) -> None:
    from tests.serve.conftest import cancer, cancer_model

    from mlcd.store import predictions as segments

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X)
    server = serve()
    for i in range(5):
        assert _infer(server, X.iloc[i].tolist(), [1, 30]).status_code == 200
    assert _infer(server, [None] * 30, [1, 30]).status_code == 422
    assert server.service.predlog.flush()
    with registry.store.read() as conn:
        assert segments.logged_rows(conn, "cancer") == 6
        paths = [registry.root / s["path"] for s in segments.segments(conn, "cancer")]
    frame = pd.concat([pd.read_parquet(p) for p in paths]).sort_values("ts")
    ok = frame[frame["status"] == "ok"]
    np.testing.assert_array_equal(ok[list(X.columns)].to_numpy(), X.iloc[:5].to_numpy())
    rejected = frame[frame["status"] == "rejected"]
    assert len(rejected) == 1 and rejected[list(X.columns)].isna().all(axis=None)


def test_logistic_regression_is_scored_exactly_as_sklearn_does() -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from mlcd.serve.holder import _linear_proba

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(X, y)  # 3 classes: the softmax
    proba = _linear_proba(model)
    assert proba is not None
    assert np.array_equal(proba(X), model.predict_proba(X))
    for i in range(0, len(X), 7):
        assert np.array_equal(proba(X[i : i + 1]), model.predict_proba(X[i : i + 1]))
    binary = LogisticRegression(max_iter=2000).fit(X, y == 0)
    fast = _linear_proba(binary)
    assert fast is not None and np.array_equal(fast(X), binary.predict_proba(X))
    # Values scikit-learn refuses are still refused by scikit-learn, with its own error.
    bad = X[:2].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        proba(bad)
    huge = np.full((1, 4), 1e308)  # overflow: scikit-learn's own numbers, whatever they are
    with np.errstate(all="ignore"):
        assert np.array_equal(proba(huge), model.predict_proba(huge), equal_nan=True)
    assert _linear_proba(RandomForestClassifier(n_estimators=2).fit(X, y)) is None
