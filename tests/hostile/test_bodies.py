"""Hostile request bodies against a real server: deep nesting, NaN and Infinity, a million
rows, nested values where numbers belong, tensors whose shape lies about their data.

Guards against: a parser recursing until the worker dies, non-finite numbers reaching the
model, a body that allocates gigabytes (a huge shape, a million rows) — each gets a 4xx with
the error body naming the problem, never a 5xx.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.serve.conftest import Running


def _row(value: str) -> bytes:
    return ('[{"mean radius": ' + value + "}]").encode()


CASES = {
    "nesting 200,000 deep": (b"[" * 200_000 + b"]" * 200_000, 400, "depth"),
    "NaN": (_row("NaN"), 400, "not valid JSON"),
    "Infinity": (_row("Infinity"), 400, "not valid JSON"),
    "a number beyond float64": (_row("1e999"), 400, "infinity"),
    "an object where a number belongs": (_row('{"x": [[[[1]]]]}'), 422, "mean radius"),
    "a million rows (20 MB)": (
        b"[" + b",".join([b'{"mean radius": 1}'] * 1_000_000) + b"]",
        413,
        "larger than the limit",
    ),
    "a million empty rows (3 MB)": (
        b"[" + b",".join([b"[]"] * 1_000_000) + b"]",
        413,
        "1000000 rows",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_predict_bodies_are_worded_4xx(server: Running, case: str) -> None:
    body, status, words = CASES[case]
    response = httpx.post(
        f"{server.url}/v1/models/cancer/predict",
        content=body,
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert response.status_code == status, (case, response.text[:300])
    assert words in response.json()["error"], response.json()
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # still serving


def test_a_tensor_whose_shape_lies_about_its_data_is_400(server: Running) -> None:
    request = {"inputs": [{"name": "x", "shape": [1_000_000_000, 30], "datatype": "FP64",
                           "data": [1.0] * 30}]}  # fmt: skip
    response = httpx.post(
        f"{server.url}/v2/models/cancer/infer", content=json.dumps(request), timeout=60
    )
    assert response.status_code == 400
    assert "needs 30000000000 values" in response.json()["error"]


def test_non_finite_labels_are_refused(server: Running) -> None:
    for label in (b"NaN", b"Infinity", b"1e999"):
        response = server.client.post(
            "/v1/feedback",
            content=b'{"request_id": "x", "label": ' + label + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, (label, response.text)
