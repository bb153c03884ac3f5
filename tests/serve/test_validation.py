"""Bad input over real HTTP: always a 4xx naming what is wrong, never a 500."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.serve.conftest import Registry, Running, mixed_data, mixed_model
from tests.serve.models import SlowModel

from mlcd.config import Serve

URL = "/v1/models/cancer/predict"


def _record(X: pd.DataFrame) -> dict[str, Any]:
    return X.iloc[0].to_dict()


def test_missing_column_is_422_naming_column_and_row(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    good = _record(X)
    bad = {k: v for k, v in good.items() if k != "mean area"}
    response = server.client.post(URL, json=[good, bad])
    assert response.status_code == 422
    body = response.json()
    assert body["column"] == "mean area" and body["row"] == 1
    assert "missing column 'mean area'" in body["error"] and "row 1" in body["error"]


def test_extra_column_is_422(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, X, _ = cancer_server
    response = server.client.post(URL, json=[{**_record(X), "zip code": 12345}])
    assert response.status_code == 422
    assert response.json()["column"] == "zip code"
    assert "unexpected column 'zip code'" in response.json()["error"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "'abc' is not a number"),
        (None, "null"),
        (True, "boolean"),
        ([1, 2], "is not a number"),
        ({"a": 1}, "is not a number"),
    ],
)
def test_value_that_cannot_be_a_number_is_422(
    cancer_server: tuple[Running, pd.DataFrame, Any], value: Any, words: str
) -> None:
    server, X, _ = cancer_server
    rows = [_record(X), _record(X), {**_record(X), "mean texture": value}]
    response = server.client.post(URL, json=rows)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["column"], body["row"]) == ("mean texture", 2)
    assert words in body["error"]


def test_columnar_row_of_wrong_width_is_422(
    cancer_server: tuple[Running, pd.DataFrame, Any],
) -> None:
    server, X, _ = cancer_server
    data = [X.iloc[0].tolist(), X.iloc[1].tolist()[:-1]]
    response = server.client.post(URL, json={"columns": list(X.columns), "data": data})
    assert response.status_code == 422
    assert (
        "row 1" in response.json()["error"] and "29 values, expected 30" in response.json()["error"]
    )


def test_categorical_problems_name_the_column(registry: Registry, serve: Any) -> None:
    X, _ = mixed_data()
    registry.register("mixed", mixed_model(), X)
    server = serve("mixed@champion")
    url = "/v1/models/mixed/predict"
    null = server.client.post(url, json=[{"x": 0.1, "n": 2, "color": None}])
    assert null.status_code == 422 and null.json()["column"] == "color"
    fraction = server.client.post(url, json=[{"x": 0.1, "n": 2.5, "color": "red"}])
    assert fraction.status_code == 422
    assert "'n'" in fraction.json()["error"] and "whole number" in fraction.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"42", 400, "cannot read rows"),
        (b'{"rows": []}', 400, "dataframe_split"),
        (b"[]", 422, "no rows"),
        (b'{"dataframe_split": [1, 2]}', 400, "'dataframe_split' must be"),
        (b'{"instances": 3}', 400, "'instances' must be"),
        (b"[1, 2, 3]", 400, "row objects"),
        (b'{"columns": ["a"], "data": "x"}', 400, "'columns' (a list) and 'data'"),
    ],
)
def test_malformed_bodies_are_4xx(
    cancer_server: tuple[Running, pd.DataFrame, Any], body: bytes, status: int, words: str
) -> None:
    server, _, _ = cancer_server
    response = server.client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    "content_type",
    ["application/x-python-pickle", "application/octet-stream", "text/csv", "application/x-pickle"],
)
def test_unsafe_or_unknown_content_types_are_415(
    cancer_server: tuple[Running, pd.DataFrame, Any], content_type: str
) -> None:
    import pickle

    server, X, _ = cancer_server
    response = server.client.post(
        URL, content=pickle.dumps([_record(X)]), headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_body_over_the_limit_is_413(registry: Registry, serve: Any) -> None:
    from tests.serve.conftest import cancer, cancer_model

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    server = serve(settings=Serve(max_body_bytes=2000))
    response = server.client.post(URL, json=X.head(20).to_dict(orient="records"))
    assert response.status_code == 413
    assert "2000 bytes" in response.json()["error"]
    # Without a Content-Length (chunked), the limit holds while reading.
    chunks = (b"[" + b" " * 500 for _ in range(10))
    response = server.client.post(URL, content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_too_many_rows_is_413(registry: Registry, serve: Any) -> None:
    from tests.serve.conftest import cancer, cancer_model

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    server = serve(settings=Serve(max_rows=5))
    response = server.client.post(URL, json=X.head(6).to_dict(orient="records"))
    assert response.status_code == 413
    assert "6 rows, more than the limit of 5" in response.json()["error"]
    assert server.client.post(URL, json=X.head(5).to_dict(orient="records")).status_code == 200


def _slow_server(registry: Registry, serve: Any, settings: Serve) -> Running:
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    registry.register("slow", SlowModel(1.5), frame, trusted=True, flavor="python")
    return serve("slow@champion", trusted=True, settings=settings)


def test_prediction_over_the_timeout_is_504(registry: Registry, serve: Any) -> None:
    server = _slow_server(registry, serve, Serve(timeout_s=0.2))
    rows = [{"x": float(i)} for i in range(100)]
    response = server.client.post("/v1/models/slow/predict", json=rows)
    assert response.status_code == 504
    assert "0.2 s timeout" in response.json()["error"]


def test_over_the_concurrency_limit_answers_503_at_once(registry: Registry, serve: Any) -> None:
    server = _slow_server(registry, serve, Serve(max_concurrency=1))
    rows = [{"x": float(i)} for i in range(100)]
    first: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: first.append(server.client.post("/v1/models/slow/predict", json=rows))
    )
    worker.start()
    import time

    deadline = time.monotonic() + 10
    while server.service.in_flight == 0:  # the slow request holds the only slot
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with httpx.Client(base_url=server.url) as other:
        refused = other.post("/v1/models/slow/predict", json=rows[:1])
    worker.join()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "concurrency limit" in refused.json()["error"]
    assert first[0].status_code == 200


def test_unknown_model_is_404(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    server, X, _ = cancer_server
    response = server.client.post("/v1/models/nope/predict", json=[_record(X)])
    assert response.status_code == 404
    assert "serves model 'cancer', not 'nope'" in response.json()["error"]


def test_random_garbage_never_gets_a_500(cancer_server: tuple[Running, pd.DataFrame, Any]) -> None:
    import random

    import orjson

    server, X, _ = cancer_server
    rng = random.Random(7)
    columns = list(X.columns)
    values: list[Any] = [None, True, "x", "1e3", 1, -1.5, [], {}, [1], {"a": None}, "nan", 1e308]

    def value() -> Any:
        return rng.choice(values)

    bodies = []
    for _ in range(150):
        kind = rng.randrange(6)
        if kind == 0:
            bodies.append(
                [{c: value() for c in rng.sample(columns, rng.randrange(len(columns) + 1))}]
            )
        elif kind == 1:
            bodies.append({"columns": rng.sample(columns, 3), "data": [[value(), value()]]})
        elif kind == 2:
            bodies.append({"inputs": {c: [value()] for c in columns[: rng.randrange(31)]}})
        elif kind == 3:
            bodies.append({"instances": [[value()] * rng.randrange(32)]})
        elif kind == 4:
            bodies.append({"dataframe_split": {"columns": columns, "data": [[value()] * 30]}})
        else:
            bodies.append(value())
    for body in bodies:
        response = server.client.post(URL, content=orjson.dumps(body))
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert response.json()["error"]
