"""The `mlcd data from-log` command, run as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlcd.serve.predlog import LogEntry, PredictionLog
from mlcd.store import Store, predictions
from tests.conftest import run_cli


def _serve_log(root: Path, rows: int = 400) -> list[str]:
    """Rows written by the server's own log writer into the project's store, half labelled."""
    store = Store(f"sqlite:///{root / '.mlcd' / 'mlcd.db'}")
    try:
        log = PredictionLog(store, root, root / ".mlcd" / "predictions")
        rng = np.random.default_rng(0)
        ids = [f"r{i:04d}" for i in range(rows)]
        x = rng.normal(size=rows)
        for start in range(0, rows, 50):
            part = slice(start, start + 50)
            for status in ("ok", "shadow"):
                log.log(
                    LogEntry(
                        "churn",
                        1 if status == "ok" else 2,
                        1_700_000_000.0 + start,
                        1.0,
                        status,
                        ids[part],
                        features={"x": x[part], "plan": ["a", "b"] * 25},
                        predictions=(x[part] > 0).astype(int),
                    )
                )
        log.log(LogEntry("churn", 1, 1_700_000_999.0, 1.0, "rejected", ["bad"], error="no"))
        log.close()
        labels = [{"request_id": i, "label": int(v > 0.1)} for i, v in zip(ids, x, strict=True)]
        store.transact(lambda conn: predictions.add_feedback(conn, labels[::2], "churn"))
    finally:
        store.dispose()
    return ids


def test_from_log_writes_a_tracked_dataset_and_is_reproducible(project: Path) -> None:
    (project / "mlcd.yaml").write_text(
        (project / "mlcd.yaml")
        .read_text()
        .replace("models: {}", "models:\n  churn: {path: models/churn, target: churned}")
    )
    _serve_log(project)
    args = ["data", "from-log", "churn", "data/feedback.parquet", "--labelled-only", "--json"]
    first = run_cli(args, cwd=project)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["rows"] == 200 and doc["labels"]["joined"] == 200 and doc["changed"] is True
    assert doc["pointer"] == "data/feedback.parquet.mlcd"
    pointer = (project / "data" / "feedback.parquet.mlcd").read_text()
    assert doc["digest"] in pointer
    frame = pd.read_parquet(project / "data" / "feedback.parquet")
    assert list(frame.columns) == ["request_id", "ts", "version", "plan", "x", "churned"]
    assert set(frame["version"]) == {1} and "bad" not in set(frame["request_id"])

    second = run_cli(args, cwd=project)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["digest"] == doc["digest"] and again["changed"] is False

    events = run_cli(["events", "churn", "--kind", "data.from_log", "--json"], cwd=project)
    assert events.returncode == 0 and events.stdout.count("data.from_log") >= 2


def test_from_log_bad_arguments_exit_2_with_a_hint(project: Path) -> None:
    _serve_log(project, rows=100)
    bad = run_cli(["data", "from-log", "churn", "out.parquet", "--sample", "-1"], cwd=project)
    assert bad.returncode == 2 and "positive" in bad.stderr
    since = run_cli(["data", "from-log", "churn", "out.parquet", "--since", "soon"], cwd=project)
    assert since.returncode == 2 and "--since" in since.stderr
    assert not (project / "out.parquet").exists()
