"""The logging API in this process: start_run, params, metrics, tags, artifacts, flush."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

import mlcd
from mlcd.digest import Digest
from mlcd.errors import TrackingError, UsageError
from mlcd.objects import open_object_store
from mlcd.store import runs
from tests.tracking.conftest import clean_env, run_script


def test_start_run_records_params_metrics_tags_and_finishes(
    tracked_project: Path, project_store
) -> None:
    with mlcd.start_run("baseline", tags={"branch": "main"}, project=tracked_project) as run:
        mlcd.log_params({"lr": 0.1, "model": "gbm"})
        mlcd.log_param("depth", 6)
        mlcd.set_tag("note", "first try")
        for step in range(5):
            mlcd.log_metric("loss", 1.0 / (step + 1), step=step)
        mlcd.log_metrics({"roc_auc": 0.91, "accuracy": 0.88})
    store = project_store(tracked_project)
    with store.read() as conn:
        row = runs.get_run(conn, run.id)
        assert row["status"] == "finished" and row["name"] == "baseline"
        assert row["kind"] == "manual" and row["ended_at"] >= row["started_at"]
        assert runs.params_of(conn, run.id) == {"lr": "0.1", "model": "gbm", "depth": "6"}
        assert runs.tags_of(conn, run.id) == {"branch": "main", "note": "first try"}
        assert runs.latest_metrics_of(conn, run.id) == {
            "loss": 0.2,
            "roc_auc": 0.91,
            "accuracy": 0.88,
        }
        assert [p.step for p in runs.metric_history(conn, run.id, "loss")] == [0, 1, 2, 3, 4]


def test_exception_in_block_marks_run_failed_and_keeps_its_metrics(
    sqlite_project: Path, project_store
) -> None:
    with pytest.raises(RuntimeError), mlcd.start_run(project=sqlite_project) as run:
        mlcd.log_metric("loss", 0.5)
        raise RuntimeError("diverged")
    with project_store(sqlite_project).read() as conn:
        assert runs.get_run(conn, run.id)["status"] == "failed"
        assert runs.latest_metrics_of(conn, run.id) == {"loss": 0.5}


def test_steps_count_up_per_key_unless_given(sqlite_project: Path, project_store) -> None:
    with mlcd.start_run(project=sqlite_project) as run:
        for value in (3.0, 2.0, 1.0):
            mlcd.log_metric("loss", value)
        mlcd.log_metric("acc", 0.5)
        mlcd.log_metric("loss", 0.5, step=10)
        mlcd.log_metric("loss", 0.4)
    with project_store(sqlite_project).read() as conn:
        history = runs.metric_history(conn, run.id)
    assert [(p.key, p.step) for p in history] == [
        ("acc", 0),
        ("loss", 0),
        ("loss", 1),
        ("loss", 2),
        ("loss", 10),
        ("loss", 11),
    ]


def test_latest_value_is_the_highest_step_not_the_last_logged(
    sqlite_project: Path, project_store
) -> None:
    with mlcd.start_run(project=sqlite_project) as run:
        mlcd.log_metric("loss", 0.1, step=5)
        mlcd.log_metric("loss", 0.9, step=2)  # a late point from an earlier step
    with project_store(sqlite_project).read() as conn:
        assert runs.latest_metrics_of(conn, run.id) == {"loss": 0.1}


def test_nested_start_run_is_a_child_of_the_outer_run(sqlite_project: Path, project_store) -> None:
    with mlcd.start_run("sweep", project=sqlite_project) as outer:
        with mlcd.start_run("trial-1", project=sqlite_project) as inner:
            assert mlcd.active_run().id == inner.id  # type: ignore[union-attr]
            mlcd.log_metric("score", 1.0)
        assert mlcd.active_run().id == outer.id  # type: ignore[union-attr]
        mlcd.log_metric("best", 1.0)
    assert mlcd.active_run() is None
    with project_store(sqlite_project).read() as conn:
        assert runs.get_run(conn, inner.id)["parent_id"] == outer.id
        assert runs.latest_metrics_of(conn, inner.id) == {"score": 1.0}
        assert runs.latest_metrics_of(conn, outer.id) == {"best": 1.0}


def test_end_run_without_context_manager(sqlite_project: Path, project_store) -> None:
    run = mlcd.start_run(project=sqlite_project)
    mlcd.log_metric("x", 1.0)
    mlcd.end_run("killed")
    with project_store(sqlite_project).read() as conn:
        assert runs.get_run(conn, run.id)["status"] == "killed"
    with pytest.raises(UsageError, match="no run to end"):
        mlcd.end_run()
    with pytest.raises(UsageError, match="unknown run status"):
        mlcd.end_run("done")


def test_logging_outside_any_run_says_how_to_start_one() -> None:
    with pytest.raises(TrackingError) as info:
        mlcd.log_metric("loss", 0.1)
    assert "no active run" in str(info.value)
    assert "mlcd.start_run()" in str(info.value)


def test_start_run_outside_a_project_is_a_config_error(tmp_path: Path) -> None:
    from mlcd.errors import ConfigError

    with pytest.raises(ConfigError, match="mlcd init"):
        mlcd.start_run(project=tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "step", "message"),
    [
        ("", 1.0, None, "invalid metric name"),
        ("x" * 251, 1.0, None, "invalid metric name"),
        (7, 1.0, None, "invalid metric name"),
        ("loss", "high", None, "is not a number"),
        ("loss", None, None, "is not a number"),
        ("loss", math.nan, None, "only finite numbers"),
        ("loss", math.inf, None, "only finite numbers"),
        ("loss", 1.0, "one", "is not an integer"),
        ("loss", 1.0, 1.5, "not a whole number"),
        ("loss", 1.0, 2**64, "out of range"),
    ],
)
def test_bad_metric_is_rejected_at_the_call_and_the_rest_is_kept(
    sqlite_project: Path, project_store, key: object, value: object, step: object, message: str
) -> None:
    with mlcd.start_run(project=sqlite_project) as run:
        mlcd.log_metric("good", 1.0)
        with pytest.raises(UsageError, match=message):
            mlcd.log_metric(key, value, step=step)  # type: ignore[arg-type]
    with project_store(sqlite_project).read() as conn:
        assert runs.latest_metrics_of(conn, run.id) == {"good": 1.0}
        assert runs.get_run(conn, run.id)["status"] == "finished"


def test_numpy_scalars_and_integer_steps_are_accepted(sqlite_project: Path, project_store) -> None:
    import numpy as np

    with mlcd.start_run(project=sqlite_project) as run:
        mlcd.log_metric("auc", np.float32(0.75), step=np.int64(3))  # type: ignore[arg-type]
        mlcd.log_metric("count", 3, step=4.0)  # type: ignore[arg-type]
    with project_store(sqlite_project).read() as conn:
        points = {(p.key, p.step, p.value) for p in runs.metric_history(conn, run.id)}
    assert points == {("auc", 3, 0.75), ("count", 4, 3.0)}


def test_log_artifact_stores_files_and_folders_by_content(
    sqlite_project: Path, project_store
) -> None:
    model = sqlite_project / "model.bin"
    model.write_bytes(b"weights" * 100)
    folder = sqlite_project / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.html").write_text("<h1>report</h1>")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n")
    with mlcd.start_run(project=sqlite_project) as run:
        file_digest = mlcd.log_artifact(model)
        dir_digest = mlcd.log_artifact(folder, artifact_path="reports/eval")
        with pytest.raises(UsageError, match="no file or folder"):
            mlcd.log_artifact(sqlite_project / "missing.bin")
    objects = open_object_store(".mlcd/objects", root=sqlite_project)
    assert objects.get_bytes(Digest.parse(file_digest)) == b"weights" * 100
    restored = sqlite_project / "restored"
    objects.get_file(Digest.parse(dir_digest), restored)
    assert (restored / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    with project_store(sqlite_project).read() as conn:
        refs = {(a.role, a.path, a.digest) for a in runs.artifacts_of(conn, run.id)}
    assert refs == {
        ("artifact", "model.bin", file_digest),
        ("artifact", "reports/eval", dir_digest),
    }
    assert dir_digest.endswith(".dir")


def test_log_table_and_log_figure_store_readable_artifacts(
    sqlite_project: Path, project_store
) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    frame = pd.DataFrame({"threshold": [0.1, 0.5], "recall": [0.9, 0.6]})
    with mlcd.start_run(project=sqlite_project) as run:
        from_frame = mlcd.log_table(frame, "pr")
        from_columns = mlcd.log_table({"a": [1, 2], "b": ["x", "y"]}, "cols.json")
        from_rows = mlcd.log_table([{"a": 1}, {"a": 2, "b": 3}], "rows")
        figure = mlcd.log_figure(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), "curve")
        with pytest.raises(UsageError, match="different lengths"):
            mlcd.log_table({"a": [1], "b": [1, 2]}, "bad")
        with pytest.raises(UsageError, match="cannot store a str"):
            mlcd.log_table("nope", "bad")
        with pytest.raises(UsageError, match="plotly Figure or a matplotlib"):
            mlcd.log_figure(object(), "bad")
    objects = open_object_store(".mlcd/objects", root=sqlite_project)

    def load(digest: str) -> dict:
        return json.loads(objects.get_bytes(Digest.parse(digest)))

    assert load(from_frame) == {
        "columns": ["threshold", "recall"],
        "data": [[0.1, 0.9], [0.5, 0.6]],
    }
    assert load(from_columns) == {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}
    assert load(from_rows) == {"columns": ["a", "b"], "data": [[1, None], [2, 3]]}
    assert b"plotly" in objects.get_bytes(Digest.parse(figure))
    with project_store(sqlite_project).read() as conn:
        paths = sorted(a.path for a in runs.artifacts_of(conn, run.id))
    assert paths == ["figures/curve.html", "tables/cols.json", "tables/pr.json", "tables/rows.json"]


def test_background_flusher_writes_within_the_interval_without_flush(
    sqlite_project: Path, project_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCD_FLUSH_INTERVAL", "0.05")
    store = project_store(sqlite_project)
    with mlcd.start_run(project=sqlite_project) as run:
        for step in range(100):
            mlcd.log_metric("loss", 1.0 / (step + 1))
        deadline = time.monotonic() + 30
        points = 0
        while time.monotonic() < deadline and points < 100:
            with store.read() as conn:
                points = len(runs.metric_history(conn, run.id))
        assert points == 100


def test_flush_reports_a_refused_write_and_keeps_the_records(
    sqlite_project: Path, project_store
) -> None:
    run = mlcd.start_run(project=sqlite_project)
    try:
        mlcd.flush()
        store = project_store(sqlite_project)
        with store.write() as conn:  # the run disappears under the logger's feet
            runs.delete_run(conn, run.id)
        mlcd.log_metric("loss", 0.5)
        for _ in range(2):  # still buffered after the first failure
            with pytest.raises(TrackingError, match="could not write run"):
                mlcd.flush()
    finally:
        with pytest.raises(TrackingError):
            mlcd.end_run()


def test_search_runs_flushes_then_filters(sqlite_project: Path) -> None:
    with mlcd.start_run("a", project=sqlite_project):
        mlcd.log_params({"model": "gbm"})
        mlcd.log_metric("roc_auc", 0.95)
    with mlcd.start_run("b", project=sqlite_project):
        mlcd.log_params({"model": "rf"})
        mlcd.log_metric("roc_auc", 0.97)
        found = mlcd.search_runs(
            "metrics.roc_auc > 0.9", order_by="metrics.roc_auc desc", project=sqlite_project
        )
    assert [r["name"] for r in found] == ["b", "a"]
    assert found[0]["params"] == {"model": "rf"} and found[0]["metrics"] == {"roc_auc": 0.97}


def test_import_mlcd_and_resolving_log_metric_load_no_database_library(tmp_path: Path) -> None:
    result = run_script(
        """
        import sys
        import mlcd
        log = mlcd.log_metric, mlcd.start_run, mlcd.flush
        heavy = [m for m in ("sqlalchemy", "alembic", "pandas", "numpy") if m in sys.modules]
        print(heavy)
        """,
        cwd=tmp_path,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
