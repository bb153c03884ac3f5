"""The Open Inference Protocol v2 endpoints over real HTTP, as the specification defines them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.serve.conftest import Registry, Running, mixed_data, mixed_model

from mlcd import __version__

INFER = "/v2/models/cancer/infer"


def test_server_metadata_and_health(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, _, _ = cancer_server
    meta = server.client.get("/v2")
    assert meta.status_code == 200
    assert meta.json() == {"name": "mlcd", "version": __version__, "extensions": []}
    live = server.client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = server.client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    assert ready.json()["version"] == 1  # which version this server (replica) serves
    model_ready = server.client.get("/v2/models/cancer/ready")
    assert (model_ready.status_code, model_ready.json()) == (200, {"name": "cancer", "ready": True})
    assert server.client.get("/v2/models/cancer/versions/1/ready").status_code == 200
    assert server.client.get("/v2/models/cancer/versions/9/ready").status_code == 400


def test_model_metadata_declares_every_input(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    meta = server.client.get("/v2/models/cancer").json()
    assert meta["name"] == "cancer" and meta["versions"] == ["1"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in X.columns]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
        {"name": "request_id", "datatype": "BYTES", "shape": [-1]},
    ]
    assert server.client.get("/v2/models/cancer/versions/1").json() == meta
    missing = server.client.get("/v2/models/other")
    assert missing.status_code == 404 and "error" in missing.json()


def test_infer_with_one_matrix_tensor(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, X, model = cancer_server
    rows = X.iloc[:3]
    request = {
        "id": "42",
        "inputs": [
            {
                "name": "input-0",
                "shape": [3, 30],
                "datatype": "FP64",
                "data": rows.to_numpy().tolist(),
            }
        ],
    }
    response = server.client.post(INFER, json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "cancer" and body["model_version"] == "1" and body["id"] == "42"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["shape"] == [3]
    assert outputs["predict"]["data"] == model.predict(rows).tolist()
    assert outputs["predict_proba"]["shape"] == [3, 2]
    assert np.allclose(outputs["predict_proba"]["data"], model.predict_proba(rows).ravel())
    assert outputs["request_id"]["datatype"] == "BYTES" and len(outputs["request_id"]["data"]) == 3
    assert response.headers["x-model-version"] == "1"


def test_infer_with_flat_data_and_selected_outputs(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, model = cancer_server
    flat = X.iloc[:2].to_numpy().ravel().tolist()
    request = {
        "inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP32", "data": flat}],
        "outputs": [{"name": "predict"}],
    }
    body = server.client.post("/v2/models/cancer/versions/1/infer", json=request).json()
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert body["outputs"][0]["data"] == model.predict(X.iloc[:2]).tolist()


def test_infer_with_one_tensor_per_column_and_text(registry: Registry, serve: Any) -> None:
    X, _ = mixed_data()
    model = mixed_model()
    registry.register("mixed", model, X)
    server = serve("mixed@champion")
    meta = server.client.get("/v2/models/mixed").json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "x": "FP64",
        "n": "INT64",
        "color": "BYTES",
    }
    rows = X.head(2)
    request = {
        "inputs": [
            {"name": "x", "shape": [2], "datatype": "FP64", "data": rows["x"].tolist()},
            {"name": "n", "shape": [2, 1], "datatype": "INT64", "data": [[v] for v in rows["n"]]},
            {"name": "color", "shape": [2], "datatype": "BYTES", "data": rows["color"].tolist()},
        ]
    }
    response = server.client.post("/v2/models/mixed/infer", json=request)
    assert response.status_code == 200, response.text
    predict = next(o for o in response.json()["outputs"] if o["name"] == "predict")
    assert predict["data"] == model.predict(rows).tolist()


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        (
            {"name": "x", "shape": [2, 30], "datatype": "FP64", "data": [1.0] * 59},
            "needs 60 values",
        ),
        (
            {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": [[1.0] * 29]},
            "needs 30 values",
        ),
        (
            {"name": "x", "shape": [1, 30], "datatype": "FLOAT", "data": [1.0] * 30},
            "unknown datatype",
        ),
        ({"name": "x", "shape": [1, -30], "datatype": "FP64", "data": [1.0] * 30}, "non-negative"),
        ({"name": "x", "shape": [1, 30], "datatype": "FP64"}, "no 'data'"),
        ({"name": "x", "shape": [1, 30], "datatype": "FP64", "data": ["a"] * 30}, "element 0"),
        ({"name": "x", "shape": [1, 29], "datatype": "FP64", "data": [1.0] * 29}, "[rows, 30]"),
        ({"shape": [1, 30], "datatype": "FP64", "data": [1.0] * 30}, "needs a 'name'"),
    ],
)
def test_bad_tensors_are_400_with_an_error_body(
    cancer_server: tuple[Running, pd.DataFrame, Any], tensor: dict[str, Any], words: str
) -> None:
    server, _, _ = cancer_server
    response = server.client.post(INFER, json={"inputs": [tensor]})
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
    assert words in response.json()["error"]


def test_bad_requests_are_4xx(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, X, _ = cancer_server
    good = {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": X.iloc[0].tolist()}
    cases = [
        ({"inputs": []}, 400),
        ({"inputs": [good], "outputs": [{"name": "explain"}]}, 400),
        ({"inputs": [good], "id": 5}, 400),
        ([good], 400),
        ({"inputs": [good, good]}, 400),
    ]
    for body, status in cases:
        response = server.client.post(INFER, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]
    assert server.client.post("/v2/models/other/infer", json={"inputs": [good]}).status_code == 404
    assert (
        server.client.post(
            "/v2/models/cancer/versions/7/infer", json={"inputs": [good]}
        ).status_code
        == 404
    )


def test_not_ready_until_a_model_is_loaded(registry: Registry, serve: Any) -> None:
    from tests.serve.conftest import cancer, cancer_model

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50), alias=None)
    server = serve("cancer@champion", wait=False)  # the alias does not exist yet
    assert server.client.get("/v2/health/live").status_code == 200
    ready = server.client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()["ready"], ready.json()["version"]) == (400, False, None)
    assert server.client.get("/v2/models/cancer/ready").json() == {"name": "cancer", "ready": False}
    tensor = {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": X.iloc[0].tolist()}
    refused = server.client.post(INFER, json={"inputs": [tensor]})
    assert refused.status_code == 503 and "not loaded yet" in refused.json()["error"]
    from mlcd.registry import set_alias

    set_alias(registry.store, "cancer", "champion", 1)
    server.wait_ready()
    assert server.client.post(INFER, json={"inputs": [tensor]}).status_code == 200
