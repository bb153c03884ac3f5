"""Hot swap: the alias moves under load with no error; a broken version never replaces a good one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.serve.conftest import Registry, Running, cancer, cancer_model, free_port
from tests.serve.models import SlowModel

from mlcd.registry import set_alias
from mlcd.store import predictions

URL = "/v1/models/cancer/predict"


def _until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_alias_move_under_load_drops_nothing(
    registry: Registry, cancer_server: tuple[Running, pd.DataFrame, Any]
) -> None:
    server, X, _ = cancer_server
    v2 = registry.register("cancer", cancer_model(c=0.01), X.head(100), alias=None)
    records = X.head(50).to_dict(orient="records")
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    answered = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            i = seed
            while not stop.is_set():
                response = client.post(URL, json=[records[i % len(records)]])
                i += 1
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        versions.append(response.json()["version"])
                        answered[0] += 1

    threads = [threading.Thread(target=client_loop, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    # Swap once the four clients are well under way, stop once v2 has answered plenty
    # (waiting on counts, not on a clock, so a busy machine only makes it slower).
    try:
        _until(lambda: answered[0] >= 200, timeout=120, what="200 answers before the swap")
        set_alias(registry.store, "cancer", "champion", v2)  # the registry API, as a promotion does
        _until(lambda: versions.count(v2) >= 300, timeout=120, what="300 answers from v2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert set(statuses) == {200}, statuses
    assert {1, v2} <= set(versions)
    swap = versions.index(v2)
    assert 1 not in versions[swap + 50 :]  # after the swap (give in-flight ones slack), only v2
    assert server.service.predlog.flush()
    with registry.store.read() as conn:
        assert predictions.logged_rows(conn, "cancer") == answered[0]


def test_a_version_that_fails_warm_up_leaves_the_old_one_serving(
    registry: Registry, cancer_server: tuple[Running, pd.DataFrame, Any]
) -> None:
    server, X, _model = cancer_server
    # Fitted on 30 columns but packaged with a 5-column signature: every prediction fails.
    broken = registry.register("cancer", cancer_model(), X.iloc[:50, :5], alias="champion")
    holder = server.service.primary
    _until(lambda: holder.failures >= 1, what="the failed load")
    assert holder.current is not None and holder.current.version == 1
    assert f"cancer/{broken} failed to load" in str(holder.last_error)
    assert server.client.get("/v2/health/ready").status_code == 200
    response = server.client.post(URL, json=[X.iloc[0].to_dict()])
    assert response.status_code == 200 and response.json()["version"] == 1
    metrics = server.client.get("/metrics").text
    assert (
        'mlcd_serve_model_loads_total{model="cancer",outcome="failed",role="primary",'
        f'version="{broken}"}} 1.0'
    ) in metrics
    info = server.client.get("/v1/models/cancer").json()
    assert (
        info["primary"]["failed_loads"] == 1 and "failed to load" in info["primary"]["last_error"]
    )
    # Not retried on every poll; a good version moves on.
    time.sleep(1)
    assert holder.failures == 1
    good = registry.register("cancer", cancer_model(c=0.1), X.head(100))
    _until(lambda: holder.current is not None and holder.current.version == good, what="v3")


def test_a_pickled_version_the_server_does_not_trust_is_refused(
    registry: Registry, serve: Any
) -> None:
    X, _ = cancer()
    registry.register("cancer", cancer_model(), X.head(50))
    server = serve()
    frame = pd.DataFrame({"x": [0.0, 1.0]})
    registry.register("cancer", SlowModel(0.0), frame, trusted=True, flavor="python")
    holder = server.service.primary
    _until(lambda: holder.failures >= 1, what="the refused load")
    assert "pickle" in str(holder.last_error)
    assert server.client.post(URL, json=[X.iloc[0].to_dict()]).json()["version"] == 1


@pytest.mark.slow
def test_mlcd_serve_follows_sighup_and_drains_on_sigterm(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    from mlcd.project import Project
    from mlcd.registry import register_from_path, save_model

    root = tmp_path / "proj"
    assert run_cli(["init", str(root)], cwd=tmp_path).returncode == 0
    with open(root / "mlcd.yaml", "a", encoding="utf-8") as out:
        out.write("\nserve:\n  poll_interval_s: 3600\n")  # only SIGHUP can reveal the move
    X, _ = cancer()
    with Project.open(root) as project:
        for number, c in ((1, 1.0), (2, 0.01)):
            save_model(cancer_model(c), root / f"pkg{number}", sample_input=X.head(50))
            register_from_path(project.store, project.objects, "cancer", root / f"pkg{number}")
        set_alias(project.store, "cancer", "champion", 1)

    bad = run_cli(["serve", "nosuch", "-C", str(root)], cwd=root)
    assert bad.returncode == 3 and "no model named 'nosuch'" in bad.stderr
    usage = run_cli(["serve", "cancer", "--canary", "challenger", "-C", str(root)], cwd=root)
    assert usage.returncode == 2 and "ALIAS:PERCENT" in usage.stderr

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcd.cli.main", "serve", "cancer", "--port", str(port)],
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answered = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def ready() -> bool:
                try:
                    return client.get("/v2/health/ready").status_code == 200
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    return False

            _until(ready, timeout=120, what="mlcd serve to be ready")
            record = X.iloc[0].to_dict()
            assert client.post(URL, json=[record]).json()["version"] == 1
            answered += 1
            with Project.open(root) as project:
                set_alias(project.store, "cancer", "champion", 2)
            process.send_signal(signal.SIGHUP)

            def moved() -> bool:
                nonlocal answered
                answered += 1
                return client.post(URL, json=[record]).json()["version"] == 2

            _until(moved, what="the SIGHUP swap")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "SIGHUP: checking cancer@champion" in output
    assert "SIGTERM: not ready any more" in output
    with Project.open(root) as project, project.store.read() as conn:
        assert predictions.logged_rows(conn, "cancer") == answered  # flushed on the way out
