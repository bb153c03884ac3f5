"""``mlcd.compat.mlflow``: MLflow client code recording into mlcd, changed by its import only.

The two example scripts follow MLflow's own: the Tracking Quickstart of its documentation
(autolog, a run with params, a logged model, a metric and a tag, then ``pyfunc.load_model``)
and ``examples/quickstart/mlflow_tracking.py`` (fluent calls with no ``start_run``). They are
written here in our own words with the same calls in the same order (the quickstart drops
``multi_class``, which scikit-learn 1.7 removed). The same quickstart text also runs on the real
mlflow, in the MLflow store tests/adopt/test_import_mlflow.py builds, to show it is MLflow code
and not something bent to fit the shim.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

QUICKSTART = """\
import pandas as pd
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

{import_line}

mlflow.set_experiment("MLflow Quickstart")

X, y = datasets.load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
params = {{"solver": "lbfgs", "max_iter": 1000, "random_state": 8888}}

mlflow.sklearn.autolog()
lr = LogisticRegression(**params)
lr.fit(X_train, y_train)

with mlflow.start_run():
    mlflow.log_params(params)
    lr = LogisticRegression(**params)
    lr.fit(X_train, y_train)
    model_info = mlflow.sklearn.log_model(sk_model=lr, name="iris_model")
    y_pred = lr.predict(X_test)
    accuracy = accuracy_score(y_test, y_pred)
    mlflow.log_metric("accuracy", accuracy)
    mlflow.set_tag("Training Info", "Basic LR model for iris data")

loaded_model = mlflow.pyfunc.load_model(model_info.model_uri)
predictions = loaded_model.predict(X_test)

iris_feature_names = datasets.load_iris().feature_names
result = pd.DataFrame(X_test, columns=iris_feature_names)
result["actual_class"] = y_test
result["predicted_class"] = predictions
print(result[:4])
"""

TRACKING_EXAMPLE = """\
import os
from random import randint, random

from mlflow import log_artifacts, log_metric, log_param

if __name__ == "__main__":
    print("Running mlflow_tracking.py")

    log_param("param1", randint(0, 100))

    log_metric("foo", random())
    log_metric("foo", random() + 1)
    log_metric("foo", random() + 2)

    if not os.path.exists("outputs"):
        os.makedirs("outputs")
    with open("outputs/test.txt", "w") as f:
        f.write("hello world!")

    log_artifacts("outputs")
"""

#: Runs a script, then prints what the test looks at (the script itself is left as it is).
PROBE = """\
import json, runpy, sys
{before}
found = runpy.run_path(sys.argv[1], run_name="__main__")
info = found.get("model_info")
print("PROBE " + json.dumps({{
    "uri": info.model_uri if info else None,
    "predictions": [int(p) for p in found.get("predictions", [])],
}}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCD_", "MLFLOW_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def _run(
    script: str, cwd: Path, before: str = "", env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    path = cwd / "script.py"
    path.write_text(script)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before), str(path)],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    probe = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    return result, json.loads(probe[-1].removeprefix("PROBE ")) if probe else {}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    result = run_cli(["init", "proj"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "proj"


@contextmanager
def _db(project: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(project / ".mlcd" / "mlcd.db")
    try:
        yield conn
    finally:
        conn.close()


def _runs(project: Path) -> dict[str, dict[str, Any]]:
    """Every run by name: status, parent, params, tags, metric points, artifact paths."""
    with _db(project) as conn:
        out: dict[str, dict[str, Any]] = {}
        for run_id, name, status, parent in conn.execute(
            "SELECT id, name, status, parent_id FROM runs ORDER BY started_at"
        ):
            out[name or run_id] = {
                "id": run_id,
                "status": status,
                "parent": parent,
                "params": dict(
                    conn.execute("SELECT key, value FROM run_params WHERE run_id = ?", (run_id,))
                ),
                "tags": dict(
                    conn.execute("SELECT key, value FROM run_tags WHERE run_id = ?", (run_id,))
                ),
                "metrics": conn.execute(
                    "SELECT key, value, step, timestamp FROM run_metrics WHERE run_id = ? "
                    "ORDER BY key, step",
                    (run_id,),
                ).fetchall(),
                "artifacts": {
                    p
                    for (p,) in conn.execute(
                        "SELECT path FROM run_artifacts WHERE run_id = ?", (run_id,)
                    )
                },
            }
        return out


# ---------------------------------------------------------------------- the docs' examples
def test_mlflow_quickstart_records_into_mlcd_with_only_the_import_changed(project: Path) -> None:
    script = QUICKSTART.format(import_line="import mlcd.compat.mlflow as mlflow")
    result, probe = _run(script, project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicted_class" in result.stdout

    runs = _runs(project)
    autologged = runs["LogisticRegression"]
    assert autologged["status"] == "finished"
    assert autologged["tags"]["mlflow.experiment_name"] == "MLflow Quickstart"
    assert autologged["params"]["solver"] == "lbfgs"
    assert {m[0] for m in autologged["metrics"]} >= {
        "training_accuracy_score",
        "training_f1_score",
        "training_score",
    }
    assert "model" in autologged["artifacts"]
    [manual] = [r for name, r in runs.items() if name != "LogisticRegression"]
    assert manual["status"] == "finished"
    assert manual["tags"]["Training Info"] == "Basic LR model for iris data"
    assert manual["params"]["max_iter"] == "1000"
    assert [m[0] for m in manual["metrics"] if m[0] == "accuracy"] == ["accuracy"]
    assert {"iris_model", "model"} <= manual["artifacts"]  # logged, and autologged by fit
    assert probe["uri"] == f"runs:/{manual['id']}/iris_model"

    # the logged model loads back in a fresh process too, from the store
    again = textwrap.dedent(
        f"""
        import mlcd.compat.mlflow as mlflow
        from sklearn import datasets
        from sklearn.model_selection import train_test_split
        X, y = datasets.load_iris(return_X_y=True)
        _, X_test, _, _ = train_test_split(X, y, test_size=0.2, random_state=42)
        predictions = mlflow.pyfunc.load_model({probe["uri"]!r}).predict(X_test)
        """
    )
    second, reloaded = _run(again, project)
    assert second.returncode == 0, second.stderr[-3000:]
    assert reloaded["predictions"] == probe["predictions"]


def test_mlflow_tracking_example_runs_through_the_shim(project: Path) -> None:
    result, _ = _run(
        TRACKING_EXAMPLE,
        project,
        before="import mlcd.compat; mlcd.compat.install_mlflow_shim()",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = _runs(project).values()  # the fluent calls started a run, ended at exit
    assert run["status"] == "finished"
    assert 0 <= int(run["params"]["param1"]) <= 100
    assert [(m[0], m[2]) for m in run["metrics"]] == [("foo", 0), ("foo", 1), ("foo", 2)]
    assert run["artifacts"] == {"test.txt"}


# ---------------------------------------------------------------------- the calls one by one
def test_nested_runs_steps_timestamps_and_artifact_kinds(project: Path) -> None:
    script = textwrap.dedent(
        """
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import mlcd.compat.mlflow as mlflow

        mlflow.set_experiment("sweeps")
        with mlflow.start_run(run_name="parent", tags={"kind": "sweep"}) as parent:
            mlflow.log_metric("loss", 0.5, step=7, timestamp=1_700_000_000_123)
            mlflow.log_metrics({"a": 1.0, "b": 2.0}, step=3)
            mlflow.set_tags({"x": 1, "y": "two"})
            try:
                mlflow.start_run(run_name="oops")
            except Exception as exc:
                print("REFUSED", exc)
            with mlflow.start_run(run_name="child", nested=True) as child:
                mlflow.log_param("fold", 1)
                assert mlflow.active_run().info.run_id == child.info.run_id
            mlflow.log_dict({"k": [1, 2]}, "config/params.json")
            mlflow.log_dict({"k": "v"}, "config/params.yaml")
            mlflow.log_text("some notes", "notes.txt")
            figure, axes = plt.subplots()
            axes.plot([1, 2, 3])
            mlflow.log_figure(figure, "plots/curve.png")
        with mlflow.start_run(run_name="broken"):
            mlflow.end_run("FAILED")
        assert mlflow.active_run() is None
        """
    )
    result, _ = _run(script, project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run with UUID" in result.stdout and "nested=True" in result.stdout
    runs = _runs(project)
    parent, child = runs["parent"], runs["child"]
    assert child["parent"] == parent["id"]
    assert parent["tags"]["mlflow.experiment_name"] == "sweeps"
    assert child["tags"]["mlflow.experiment_name"] == "sweeps"
    assert {k: parent["tags"][k] for k in ("kind", "x", "y")} == {
        "kind": "sweep",
        "x": "1",
        "y": "two",
    }
    assert ("loss", 0.5, 7, 1_700_000_000.123) in parent["metrics"]
    assert {(m[0], m[2]) for m in parent["metrics"]} >= {("a", 3), ("b", 3)}
    assert parent["artifacts"] == {
        "config/params.json",
        "config/params.yaml",
        "notes.txt",
        "plots/curve.png",
    }
    assert child["params"] == {"fold": "1"}
    assert runs["broken"]["status"] == "failed"
    assert "oops" not in runs


def test_an_unsupported_call_raises_naming_the_call() -> None:
    import mlcd.compat.mlflow as mlflow
    from mlcd.compat.errors import UnsupportedCall
    from mlcd.errors import UsageError

    with pytest.raises(UnsupportedCall, match=r"mlflow\.log_image"):
        mlflow.log_image  # noqa: B018
    assert not hasattr(mlflow, "search_traces")
    with pytest.raises(UsageError, match=r"mlflow\.start_run\(run_id=\.\.\.\)"):
        mlflow.start_run(run_id="0" * 32)
    with pytest.raises(UnsupportedCall, match=r"mlflow\.pyfunc\.spark_udf"):
        mlflow.pyfunc.spark_udf  # noqa: B018


def test_the_shim_answers_import_mlflow_and_can_be_removed() -> None:
    import mlcd.compat
    import mlcd.compat.mlflow

    before = sys.modules.get("mlflow")
    shim = mlcd.compat.install_mlflow_shim()
    try:
        import mlflow
        import mlflow.sklearn

        assert mlflow is mlcd.compat.mlflow is shim
        assert mlflow.sklearn.log_model is mlcd.compat.mlflow.sklearn.log_model
    finally:
        mlcd.compat.uninstall_mlflow_shim()
    assert sys.modules.get("mlflow") is before
