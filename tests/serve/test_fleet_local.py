"""The fleet view and readiness detail of one server on its own (SQLite) store."""

from __future__ import annotations

from typing import Any

from tests.serve.conftest import Registry, cancer, cancer_model


def test_one_server_is_a_fleet_of_one(registry: Registry, serve: Any) -> None:
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    server = serve()
    server.wait_ready()
    ready = server.client.get("/v2/health/ready").json()
    assert ready["ready"] is True and ready["version"] == 1 and ready["store"] == "ok"
    view = server.client.get("/v1/fleet")
    assert view.status_code == 200, view.text
    import time

    deadline = time.monotonic() + 30
    while not view.json()["replicas"] or view.json()["replicas"][0]["versions"]["primary"] != 1:
        assert time.monotonic() < deadline, view.text
        time.sleep(0.05)
        view = server.client.get("/v1/fleet")
    (me,) = view.json()["replicas"]
    assert me["replica"] == view.json()["replica"] == ready["replica"]
    assert me["alive"] and me["versions"]["primary"] == 1 and me["versions"]["ready"] is True
    metrics = server.client.get("/metrics").text
    assert f'mlcd_serve_store_up{{model="cancer",replica="{me["replica"]}"}} 1.0' in metrics


def test_fleet_tail_from_merged_histograms_matches_the_local_rule() -> None:
    from mlcd.serve.traffic import CanaryGuard, merged_summary

    one, two = CanaryGuard(), CanaryGuard()
    for i in range(300):
        one.record("canary", 0.010 + (i % 7) * 0.001, error=i % 50 == 0)
        two.record("canary", 0.020 if i < 297 else 0.400, error=False)
    counts = [one.counts()["canary"], two.counts()["canary"]]
    n, error_rate, tail = merged_summary(counts)
    assert n == 600 and error_rate == 6 / 600
    exact = sorted([0.010 + (i % 7) * 0.001 for i in range(300)] + [0.020] * 297 + [0.4] * 3)
    # the p99 of the fleet (rank 594 of 600) from the summed histograms: within one 10 % bucket
    assert exact[594] <= tail <= exact[594] * 1.1
    assert merged_summary([]) == (0, 0.0, 0.0)
