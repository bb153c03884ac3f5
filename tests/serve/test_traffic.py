"""Canary and shadow traffic over real HTTP, and the automatic switch-off of a bad canary."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from tests.serve.conftest import Registry, cancer, cancer_model
from tests.serve.models import FlakyModel

from mlcd.errors import UsageError
from mlcd.serve.traffic import CanaryGuard, CanarySpec
from mlcd.store import events

URL = "/v1/models/cancer/predict"


def test_canary_spec_parses_and_refuses_bad_shares() -> None:
    assert CanarySpec.parse("challenger:10") == CanarySpec("challenger", 10.0)
    for bad in ("challenger", "challenger:0", "challenger:101", ":5", "challenger:x"):
        with pytest.raises(UsageError, match="ALIAS:PERCENT"):
            CanarySpec.parse(bad)


def test_canary_gets_its_share_and_sticky_keys_stay_put(registry: Registry, serve: Any) -> None:
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    v2 = registry.register("cancer", cancer_model(0.01), X.head(50), alias="challenger")
    server = serve(canary=CanarySpec("challenger", 50))
    _wait_canary(server)
    record = [X.iloc[0].to_dict()]
    seen = [server.client.post(URL, json=record) for _ in range(60)]
    versions = {r.json()["version"] for r in seen}
    assert versions == {1, v2}
    for response in seen:
        role = "canary" if response.json()["version"] == v2 else "primary"
        assert response.json()["role"] == role and response.headers["x-model-role"] == role
        assert response.headers["x-model-version"] == str(response.json()["version"])
    for key in ("user-1", "user-2", "user-3"):
        answers = {
            server.client.post(URL, json=record, headers={"x-canary-key": key}).json()["version"]
            for _ in range(8)
        }
        assert len(answers) == 1
    assert server.client.get("/v2/models/cancer").json()["versions"] == ["1", str(v2)]


def _wait(condition: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _wait_canary(server: Any) -> None:
    import time

    deadline = time.monotonic() + 30
    while server.service.canary.current is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_canary_with_errors_is_switched_off_with_an_audit_event(
    registry: Registry, serve: Any
) -> None:
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    registry.register("cancer", FlakyModel(limit=10.0), frame, trusted=True, flavor="python")
    bad = registry.register(
        "cancer", FlakyModel(limit=0.6), frame, alias="challenger", trusted=True, flavor="python"
    )
    guard = CanaryGuard(window_s=60, min_requests=10, check_every_s=0.0)
    server = serve(
        "cancer@champion", trusted=True, canary=CanarySpec("challenger", 50), guard=guard
    )
    _wait_canary(server)
    statuses = [server.client.post(URL, json=[{"x": 0.9}]).status_code for _ in range(80)]
    assert 500 in statuses  # the canary failed some...
    # ...and the fleet (this one server, through the store) switched it off
    _wait(lambda: server.service.canary_disabled is not None)
    assert "error rate" in server.service.canary_disabled
    after = [server.client.post(URL, json=[{"x": 0.9}]) for _ in range(20)]
    assert {r.status_code for r in after} == {200}
    assert {r.json()["version"] for r in after} == {1}
    info = server.client.get("/v1/models/cancer").json()
    assert info["canary"]["percent"] == 0 and "error rate" in info["canary"]["disabled"]
    import time

    deadline = time.monotonic() + 10
    while True:
        with registry.store.read() as conn:
            found = events.query(conn, model="cancer", kind="serve.canary_disabled")
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found and found[0]["version"] == bad and found[0]["alias"] == "challenger"
    assert (
        found[0]["details"]["canary"]["error_rate"] > found[0]["details"]["primary"]["error_rate"]
    )
    assert "mlcd_serve_canary_disabled_total" in server.client.get("/metrics").text


def test_guard_switches_off_a_much_slower_canary() -> None:
    guard = CanaryGuard(min_requests=20, check_every_s=0.0)
    for _ in range(50):
        assert guard.record("primary", 0.002, False) is None
    verdict = None
    for _ in range(50):
        verdict = verdict or guard.record("canary", 0.050, False)
    assert verdict is not None and "p99 latency" in verdict.reason


def test_shadow_answers_are_logged_not_returned(registry: Registry, serve: Any) -> None:
    from mlcd.store import predictions

    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    shadow = registry.register("cancer", cancer_model(0.01), X.head(50), alias="shadowed")
    server = serve(shadow="shadowed")
    import time

    deadline = time.monotonic() + 30
    while server.service.shadow.current is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    bodies = [server.client.post(URL, json=[X.iloc[i].to_dict()]).json() for i in range(5)]
    assert {b["version"] for b in bodies} == {1}
    server.service.predlog.flush()
    import pyarrow.parquet as pq

    with registry.store.read() as conn:
        segments = predictions.segments(conn, model="cancer")
    log = pd.concat([pq.read_table(registry.root / s["path"]).to_pandas() for s in segments])
    shadowed = log[log["status"] == "shadow"]
    assert set(shadowed["version"]) == {shadow}
    assert sorted(shadowed["request_id"]) == sorted(b["request_ids"][0] for b in bodies)


def test_one_slow_request_does_not_switch_a_healthy_canary_off() -> None:
    guard = CanaryGuard(min_requests=50, check_every_s=0.0)
    for i in range(150):
        guard.record("primary", 0.010, error=False)
        guard.record("canary", 0.500 if i == 70 else 0.011, error=False)  # one hiccup
    assert guard.check() is None
    for _ in range(20):  # a canary that is slow again and again is switched off
        guard.record("canary", 0.500, error=False)
    verdict = guard.check()
    assert verdict is not None and "latency" in verdict.reason
