"""Feedback that can be trusted (issue 12): only for issued ids, once unless replaced (audited),
values the model can produce, at a bounded rate per token. Real server, real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.serve.conftest import Registry, Running, cancer, cancer_model

from mlcd.config import Serve
from mlcd.store import events, predictions

PREDICT = "/v1/models/cancer/predict"


@pytest.fixture
def server(registry: Registry, serve: Callable[..., Running]) -> Running:
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    return serve()


def _issue(server: Running, rows: int = 3) -> list[str]:
    X, _ = cancer()
    response = server.client.post(PREDICT, json=X.head(rows).to_dict(orient="records"))
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["request_ids"]
    return ids


def _labels(registry: Registry, ids: list[str]) -> dict[str, Any]:
    with registry.store.read() as conn:
        return predictions.feedback_for(conn, ids)


def test_a_forged_id_is_404_and_nothing_of_the_request_is_stored(
    registry: Registry, server: Running
) -> None:
    # Guards against false labels for requests that never happened (they would move live
    # accuracy and the decay trigger): one forged id refuses the whole request.
    ids = _issue(server, 2)
    body = [{"request_id": i, "label": 1} for i in [*ids, "forged-0001"]]
    refused = server.client.post("/v1/feedback", json=body)
    assert refused.status_code == 404
    answer = refused.json()
    assert answer["status"] == 404 and answer["unknown"] == ["forged-0001"]
    assert "never answered by this server for model 'cancer'" in answer["error"]
    assert "nothing was stored" in answer["error"]
    assert _labels(registry, [*ids, "forged-0001"]) == {}
    single = server.client.post("/v1/feedback", json={"request_id": "x", "label": 1})
    assert single.status_code == 404


def test_ids_of_a_previous_server_are_found_in_the_prediction_log(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    # A label often arrives after a restart: the id is then looked up in the log's segments.
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    first = serve()
    ids = _issue(first, 4)
    assert first.service.predlog.flush()
    second = serve()
    assert len(second.service.issued) == 0
    stored = second.client.post("/v1/feedback", json=[{"request_id": i, "label": 0} for i in ids])
    assert stored.json() == {"stored": 4, "replaced": 0}
    assert _labels(registry, ids) == dict.fromkeys(ids, 0)


def test_a_second_label_needs_replace_and_is_audited(registry: Registry, server: Running) -> None:
    # Guards against a label being silently overwritten (by a retry or by someone else).
    (rid,) = _issue(server, 1)
    assert server.client.post("/v1/feedback", json={"request_id": rid, "label": 1}).json() == {
        "stored": 1,
        "replaced": 0,
    }
    clash = server.client.post("/v1/feedback", json={"request_id": rid, "label": 0})
    assert clash.status_code == 409
    assert clash.json()["conflicts"] == [rid] and '"replace": true' in clash.json()["error"]
    assert _labels(registry, [rid]) == {rid: 1}
    replaced = server.client.post(
        "/v1/feedback", json={"request_id": rid, "label": 0, "replace": True}
    )
    assert replaced.json() == {"stored": 1, "replaced": 1}
    assert _labels(registry, [rid]) == {rid: 0}
    with registry.store.read() as conn:
        (event,) = events.query(conn, kind="feedback.replaced")
    assert event["actor"].startswith("test-feedback-") and event["model"] == "cancer"
    assert event["details"]["request_id"] == rid
    assert event["details"]["previous"] == 1 and event["details"]["label"] == 0


@pytest.mark.parametrize(
    ("label", "words"),
    [(7, "label 7 is not a class"), ("yes", "not a class"), ([1], "not a class")],
)
def test_a_label_the_model_cannot_produce_is_422(
    registry: Registry, server: Running, label: Any, words: str
) -> None:
    ids = _issue(server, 2)
    body = [{"request_id": ids[0], "label": 1}, {"request_id": ids[1], "label": label}]
    refused = server.client.post("/v1/feedback", json=body)
    assert refused.status_code == 422
    assert "feedback item 1" in refused.json()["error"] and words in refused.json()["error"]
    assert _labels(registry, ids) == {}


def test_feedback_is_rate_limited_per_token(
    registry: Registry, serve: Callable[..., Running]
) -> None:
    # Guards against one leaked token flooding the label table.
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(100))
    server = serve(settings=Serve(poll_interval_s=0.2, feedback_rate_per_s=0.5))
    ids = _issue(server, 3)
    statuses = [server.client.post("/v1/feedback", json={"request_id": i, "label": 1}) for i in ids]
    assert [s.status_code for s in statuses[:1]] == [200]
    limited = statuses[-1]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "at most 0.5 per second" in limited.json()["error"]
    assert ids[-1] not in _labels(registry, ids)
