"""The decay trigger reads feedback labels, so it must not be fireable by anyone who can reach
the server (issue 12): unauthenticated and forged labels leave it quiet; the same wrong labels
sent with a ``feedback`` token fire it (so the test would see a hole)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

from tests.retrain.conftest import RetrainProject, stage_env
from tests.serve.conftest import free_port

TOKEN = "labeller-" + "k" * 32
DECAY = (
    "retrain:\n  clf:\n    triggers:\n      decay: {metric: accuracy, below: 0.7, min_labels: 50}\n"
)


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.get("/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not get ready"
        time.sleep(0.1)


def test_unauthenticated_labels_cannot_fire_the_decay_trigger(
    baselined: RetrainProject, open_store, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from mlcd.config import load_config
    from mlcd.objects import open_object_store
    from mlcd.retrain.context import Context
    from mlcd.retrain.triggers import evaluate_triggers
    from mlcd.store import predictions

    project = baselined  # v1 promoted by the baseline retrain (made once, copied)
    project.config(DECAY)
    config = load_config(project.root)
    store = open_store(f"sqlite:///{project.root / '.mlcd' / 'mlcd.db'}")
    ctx = Context(project.root, config, store, open_object_store(config.artifacts, project.root))

    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, **stage_env(), "MLCD_FEEDBACK_TOKEN": TOKEN}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcd.cli.main", "serve", "clf", "--port", str(port),
             "--log-level", "warning"],
            cwd=project.root, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(client, process, log)
            rows = pd.read_csv(project.root / "data" / "test.csv").drop(columns="y").head(200)
            answer = client.post("/v1/models/clf/predict", json=rows.to_dict(orient="records"))
            assert answer.status_code == 200, answer.text
            ids, preds = answer.json()["request_ids"], answer.json()["predictions"]
            wrong = [
                {"request_id": i, "label": 1 - int(p)} for i, p in zip(ids, preds, strict=True)
            ]
            forged = [{"request_id": f"forged-{i}", "label": 0} for i in range(200)]
            assert client.post("/v1/feedback", json=wrong).status_code == 401
            bogus = {"authorization": "Bearer " + "x" * 41}
            assert client.post("/v1/feedback", json=wrong, headers=bogus).status_code == 401
            token = {"authorization": f"Bearer {TOKEN}"}
            assert client.post("/v1/feedback", json=forged, headers=token).status_code == 404

            deadline = time.monotonic() + 60  # the log's writer flushes on its own clock
            while True:
                with store.read() as conn:
                    if predictions.segments(conn, "clf"):
                        break
                assert time.monotonic() < deadline, "the prediction log was never written"
                time.sleep(0.1)
            (quiet,) = evaluate_triggers(ctx, "clf", at=time.time() + 30)
            assert quiet.trigger == "decay" and not quiet.fired
            assert quiet.reason == "0 labels, fewer than 50 needed"

            stored = client.post("/v1/feedback", json=wrong, headers=token)
            assert stored.json() == {"stored": 200, "replaced": 0}
            (fired,) = evaluate_triggers(ctx, "clf", at=time.time() + 30)
            assert fired.fired and fired.details["value"] < 0.7, fired.reason
    finally:
        process.terminate()
        process.wait(30)
