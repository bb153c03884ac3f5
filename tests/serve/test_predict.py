"""mlcd's own predict endpoint over real HTTP: every request shape, answers, the version."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.serve.conftest import Registry, Running, mixed_data, mixed_model


def _shapes(rows: pd.DataFrame) -> dict[str, Any]:
    columns = list(rows.columns)
    data = rows.to_numpy().tolist()
    records = rows.to_dict(orient="records")
    return {
        "records": records,
        "columnar": {"columns": columns, "data": data},
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": data}},
        "dataframe_split_with_index": {
            "dataframe_split": {"columns": columns, "data": data, "index": list(range(len(data)))}
        },
        "dataframe_records": {"dataframe_records": records},
        "instances_records": {"instances": records},
        "instances_lists": {"instances": data},
        "inputs_columns": {"inputs": {c: rows[c].tolist() for c in columns}},
        "inputs_records": {"inputs": records},
    }


@pytest.mark.parametrize("shape", list(_shapes(pd.DataFrame({"a": [1.0]}))))
def test_every_request_shape_gets_the_models_predictions(
    cancer_server: tuple[Running, pd.DataFrame, Any], shape: str
) -> None:
    server, X, model = cancer_server
    rows = X.iloc[10:13]
    response = server.client.post("/v1/models/cancer/predict", json=_shapes(rows)[shape])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "cancer" and body["version"] == 1
    assert body["predictions"] == model.predict(rows).tolist()
    assert np.allclose(body["probabilities"], model.predict_proba(rows))
    assert body["classes"] == [0, 1]
    assert len(body["request_ids"]) == 3 and len(set(body["request_ids"])) == 3
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-model-role"] == "primary"


def test_request_ids_are_unique_across_requests_and_can_be_given(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _model = cancer_server
    record = X.iloc[0].to_dict()
    seen: set[str] = set()
    for _ in range(20):
        seen.update(
            server.client.post("/v1/models/cancer/predict", json=[record]).json()["request_ids"]
        )
    assert len(seen) == 20
    given = server.client.post(
        "/v1/models/cancer/predict", json=[record, record], headers={"x-request-id": "order-7"}
    )
    assert given.json()["request_ids"] == ["order-7-0", "order-7-1"]


def test_numbers_sent_as_strings_are_converted(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, model = cancer_server
    record = {k: str(v) for k, v in X.iloc[5].to_dict().items()}
    body = server.client.post("/v1/models/cancer/predict", json=[record]).json()
    assert body["predictions"] == model.predict(X.iloc[[5]]).tolist()


def test_text_and_integer_columns_are_served(registry: Registry, serve: Any) -> None:
    X, _y = mixed_data()
    model = mixed_model()
    registry.register("mixed", model, X)
    server = serve("mixed@champion")
    rows = X.head(4)
    response = server.client.post(
        "/v1/models/mixed/predict", json={"dataframe_records": rows.to_dict(orient="records")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == model.predict(rows).tolist()
    # A category never seen in training is the model's business (one-hot ignores it).
    unseen = {"x": 0.1, "n": 3, "color": "purple"}
    assert server.client.post("/v1/models/mixed/predict", json=[unseen]).status_code == 200


def test_a_pipeline_answers_its_own_predict_and_predict_proba(
    registry: Registry, serve: Any
) -> None:
    """The server runs a pipeline once for labels and probabilities: the answers are still
    exactly the pipeline's own (gradient boosting's label is the arg-max of its probabilities
    wherever that is strict; a tie goes back to its own ``predict``)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = mixed_data(300)
    pre = ColumnTransformer(
        [("color", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    boost = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    model = Pipeline([("pre", pre), ("scale", StandardScaler()), ("boost", boost)]).fit(X, y)
    registry.register("boost", model, X)
    server = serve("boost@champion")
    body = server.client.post(
        "/v1/models/boost/predict", json={"dataframe_records": X.to_dict(orient="records")}
    ).json()
    assert body["predictions"] == model.predict(X).tolist()
    assert np.array_equal(np.asarray(body["probabilities"]), model.predict_proba(X))


def test_a_tie_in_the_probabilities_is_labelled_by_the_model_itself(
    registry: Registry, serve: Any
) -> None:
    """A score just above 0 rounds to p = 0.5 exactly: the arg-max of [0.5, 0.5] would say
    class 0, the model's ``predict`` (score > 0) says class 1. The server must say 1."""
    from sklearn.linear_model import LogisticRegression

    X, y = mixed_data(200)
    numeric = X[["x"]]
    model = LogisticRegression().fit(numeric, y)
    model.coef_[:] = 0.0
    model.intercept_[:] = 1e-17
    assert model.predict_proba(numeric[:1]).tolist() == [[0.5, 0.5]]
    registry.register("tied", model, numeric)
    server = serve("tied@champion")
    body = server.client.post("/v1/models/tied/predict", json=[{"x": 0.3}, {"x": -2.0}]).json()
    assert body["predictions"] == model.predict(pd.DataFrame({"x": [0.3, -2.0]})).tolist()
    assert body["predictions"] == [model.classes_[1]] * 2
    assert body["probabilities"] == [[0.5, 0.5], [0.5, 0.5]]


def test_regressor_answers_without_probabilities(registry: Registry, serve: Any) -> None:
    from sklearn.linear_model import Ridge

    X, y = mixed_data()
    numeric = X[["x"]].assign(z=X["x"] * 2)
    model = Ridge().fit(numeric, y)
    registry.register("ridge", model, numeric)
    server = serve("ridge@champion")
    body = server.client.post("/v1/models/ridge/predict", json=[{"x": 1.0, "z": 2.0}]).json()
    assert "probabilities" not in body
    assert body["predictions"] == pytest.approx(
        model.predict(pd.DataFrame([[1.0, 2.0]], columns=["x", "z"])).tolist()
    )


def test_model_info_describes_what_is_served(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _model = cancer_server
    info = server.client.get("/v1/models/cancer").json()
    assert info["ready"] is True
    assert info["primary"]["version"] == 1 and info["primary"]["follows"] == "cancer@champion"
    assert [c["name"] for c in info["signature"]["inputs"]] == list(X.columns)
    assert server.client.get("/v1/models/other").status_code == 404


def test_openapi_docs_list_the_endpoints(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, _X, _model = cancer_server
    assert server.client.get("/docs").status_code == 200
    paths = server.client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/models/{name}/predict",
        "/v2/models/{name}/infer",
        "/v1/feedback",
        "/metrics",
    ):
        assert path in paths
