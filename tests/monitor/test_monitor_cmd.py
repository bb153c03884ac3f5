"""``mlcd monitor`` end to end, in a subprocess, as cron or CI would run it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mlcd.objects import LocalObjectStore
from mlcd.store import Store, events
from tests.conftest import run_cli
from tests.monitor.conftest import PredictionLogDir, frame


def _files(root: Path, shift: dict[str, float] | None) -> None:
    reference = frame(3000, 1, columns=6)
    reference["prediction"] = (reference["x0"] > 0).astype(int)
    current = frame(2000, 2, columns=6, shift=shift)
    current["prediction"] = (current["x0"] > 0).astype(int)
    current["label"] = current["prediction"]
    reference.to_parquet(root / "ref.parquet", index=False)
    current.to_csv(root / "cur.csv", index=False)


def test_drift_in_files_exits_1_and_writes_the_three_reports(project: Path) -> None:
    _files(project, {"x0": 1.0, "x1": 1.0, "x2": 1.0, "x3": 1.0})
    result = run_cli(
        [
            "monitor",
            "churn",
            "--reference",
            "ref.parquet",
            "--current",
            "cur.csv",
            "--report-dir",
            "out",
            "--json",
        ],
        cwd=project,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] and sorted(report["drift"]["drifted"]) == ["x0", "x1", "x2", "x3"]
    assert report["failures"][0].startswith("drift in 4 of 6 features")
    assert report["performance"]["overall"]["accuracy"] == 1.0
    assert report["alert"]["event_id"] is not None
    assert "crossed 1 threshold" not in result.stderr and "threshold(s)" in result.stderr
    html = (project / "out" / "report.html").read_text()
    assert "Reference vs current distribution" in html and "plotly" in html
    assert json.loads((project / "out" / "report.json").read_text())["failed"] is True
    assert "| x0 | numeric | wasserstein |" in (project / "out" / "report.md").read_text()


def test_same_distribution_exits_0(project: Path) -> None:
    _files(project, None)
    result = run_cli(
        ["monitor", "churn", "--reference", "ref.parquet", "--current", "cur.csv"], cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert "within thresholds" in result.stdout


def test_bad_arguments_exit_2_with_a_hint(project: Path) -> None:
    _files(project, None)
    both = run_cli(["monitor", "churn", "--since", "1h", "--last", "5"], cwd=project)
    assert both.returncode == 2 and "cannot be combined" in both.stderr
    no_reference = run_cli(["monitor", "churn", "--current", "cur.csv"], cwd=project)
    assert no_reference.returncode == 2
    assert "no reference data for model 'churn'" in no_reference.stderr
    assert "--reference PATH" in no_reference.stderr
    missing = run_cli(
        ["monitor", "churn", "--reference", "ref.parquet", "--current", "nope.csv"], cwd=project
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    unknown = run_cli(["monitor", "churn@champion"], cwd=project)
    assert unknown.returncode == 3 and "churn" in unknown.stderr


def _register(project: Path, store: Store, reference: pd.DataFrame) -> None:
    from mlcd.monitor.profile import compute_reference_profile
    from mlcd.store import models

    objects = LocalObjectStore(project / ".mlcd" / "objects")
    digest = compute_reference_profile(reference, objects)

    def work(conn) -> None:  # type: ignore[no-untyped-def]
        models.ensure_model(conn, "churn")
        models.insert_version(
            conn,
            "churn",
            1,
            digest="c" * 64,
            reference_digest=str(digest),
            metrics={"accuracy": 0.9},
        )
        models.set_alias(conn, "churn", "champion", 1)

    store.transact(work)


def test_prediction_log_with_labels_then_drift_alerts_and_records_an_event(
    project: Path, open_store: Callable[..., Store]
) -> None:
    store = open_store(f"sqlite:///{project / '.mlcd' / 'mlcd.db'}")
    log = PredictionLogDir(project, store)
    reference = frame(3000, 1, columns=5)
    reference["prediction"] = (reference["x0"] > 0).astype(int)
    _register(project, store, reference)
    now = time.time()
    calm = frame(1500, 2, columns=5)
    calm["prediction"] = (calm["x0"] > 0).astype(int)
    calm["ts"] = now - 3000 + np.arange(1500)
    calm["request_id"] = [f"q{i}" for i in range(1500)]
    log.write("churn", 1, calm)
    labels = dict(zip(calm["request_id"][:900], calm["prediction"][:900].tolist(), strict=True))
    labels.update({f"q{i}": 1 - int(calm["prediction"][i]) for i in range(900, 1000)})
    log.feedback("churn", labels, now - 60)
    (project / "mlcd.yaml").write_text(
        (project / "mlcd.yaml").read_text()
        + "\nmonitor:\n  performance_metric: accuracy\n  performance_threshold: 0.8\n"
    )

    first = run_cli(["monitor", "churn@champion", "--since", "1h", "--json"], cwd=project)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["version"], report["window"]["rows"], report["failed"]) == (1, 1500, False)
    performance = report["performance"]
    assert performance["labels"] == 1000 and performance["overall"]["accuracy"] == 0.9
    assert performance["baseline"] == {"accuracy": 0.9}

    shifted = frame(1500, 3, columns=5, shift={"x1": 2.0, "x2": 2.0, "x3": 2.0})
    shifted["prediction"] = (shifted["x0"] > 0).astype(int)
    shifted["ts"] = now - 1000 + np.arange(1500) / 2
    log.write("churn", 1, shifted)
    second = run_cli(["monitor", "churn@champion", "--last", "1500"], cwd=project)
    assert second.returncode == 1
    assert "drift in 3 of 5 features" in second.stdout
    with store.read() as conn:
        (event,) = events.query(conn, model="churn", kind="monitor.alert")
    assert event["version"] == 1 and event["report_digest"]
    stored = LocalObjectStore(project / ".mlcd" / "objects")
    from mlcd.digest import Digest

    assert json.loads(stored.get_bytes(Digest(event["report_digest"])))["failed"] is True


def test_empty_window_is_reported_and_exits_0(
    project: Path, open_store: Callable[..., Store]
) -> None:
    store = open_store(f"sqlite:///{project / '.mlcd' / 'mlcd.db'}")
    _register(project, store, frame(500, 1, columns=3))
    result = run_cli(["monitor", "churn@champion", "--since", "1h", "--json"], cwd=project)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["window"]["rows"] == 0
    assert any("has no rows" in w for w in report["warnings"])
    assert all(f["status"] == "no data" for f in report["drift"]["features"])
