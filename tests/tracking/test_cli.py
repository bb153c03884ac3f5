"""``mlcd runs list|show|compare|lineage`` as a user runs them, and pipeline runs in queries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlcd.store import Store, runs
from mlcd.store.tables import model_versions, models
from tests.conftest import run_cli
from tests.tracking.conftest import clean_env

D0, D1, D2, D3 = ("0" * 63 + "a", "1" * 63 + "b", "2" * 60 + "cccc.dir", "3" * 64)


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), cwd=root, env=clean_env())


def _json(root: Path, *args: str) -> object:
    result = _cli(root, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def populated(sqlite_project: Path, project_store) -> tuple[Path, Store, dict[str, str]]:
    """Two training runs with curves, and a two-run lineage: prepare -> train."""
    store = project_store(sqlite_project)
    ids = {}
    with store.write() as conn:
        for name, lr, auc in (("slow", 0.01, 0.90), ("fast", 0.1, 0.93)):
            run_id = runs.create_run(conn, name=name)
            runs.log_params(conn, run_id, {"lr": lr, "model": "gbm"})
            runs.log_metrics(
                conn,
                run_id,
                [runs.MetricPoint("loss", 1.0 / (s + 1) + lr, s) for s in range(10)]
                + [runs.MetricPoint("roc_auc", auc)],
            )
            runs.set_tags(conn, run_id, {"branch": "main"})
            runs.end_run(conn, run_id)
            ids[name] = run_id
        prepare = runs.create_run(conn, kind="pipeline", git_commit="c0ffee", git_dirty=False)
        runs.add_artifacts(
            conn,
            prepare,
            [
                runs.ArtifactRef("input", "data/raw.csv", D0, 10, "prepare"),
                runs.ArtifactRef("output", "data/prepared", D1, 20, "prepare"),
            ],
        )
        runs.record_stage(conn, prepare, "prepare", outcome="ran", fingerprint="f" * 64)
        runs.end_run(conn, prepare)
        train = runs.create_run(conn, kind="pipeline", git_commit="beef", git_dirty=True)
        runs.log_params(conn, train, {"train.lr": 0.1})
        runs.add_artifacts(
            conn,
            train,
            [
                runs.ArtifactRef("input", "data/prepared", D1, 20, "train"),
                runs.ArtifactRef("output", "models/model", D2, 30, "train"),
                runs.ArtifactRef("input", "models/model", D2, 30, "evaluate"),
                runs.ArtifactRef("metrics", "metrics/eval.json", D3, 5, "evaluate"),
            ],
        )
        runs.record_stage(conn, train, "train", outcome="ran", fingerprint="e" * 64)
        runs.end_run(conn, train)
        conn.execute(models.insert().values(name="churn", created_at=1.0, next_version=2))
        conn.execute(
            model_versions.insert().values(
                model="churn", version=1, digest=D2, run_id=train, created_at=1.0
            )
        )
        ids.update(prepare=prepare, train=train)
    return sqlite_project, store, ids


def test_runs_list_filters_orders_and_limits(populated) -> None:
    root, _, ids = populated
    found = _json(root, "runs", "list", "-f", "metrics.roc_auc > 0.8", "-o", "metrics.roc_auc desc")
    assert [r["name"] for r in found] == ["fast", "slow"]  # type: ignore[index]
    assert found[0]["metrics"] == {"loss": 0.2, "roc_auc": 0.93}  # type: ignore[index]
    assert len(_json(root, "runs", "list", "-n", "1")) == 1  # type: ignore[arg-type]
    kinds = {r["kind"] for r in _json(root, "runs", "list")}  # type: ignore[union-attr]
    assert kinds == {"manual", "pipeline"}
    table = _cli(root, "runs", "list", "--filter", "params.model = 'gbm'")
    assert table.returncode == 0
    assert "fast" in table.stdout and "slow" in table.stdout and ids["fast"][:8] in table.stdout
    assert "roc_auc" in table.stdout  # the most common metrics get columns
    assert "no runs match" in _cli(root, "runs", "list", "-f", "metrics.roc_auc > 2").stdout


def test_malformed_filter_exits_2_and_points_at_the_problem(populated) -> None:
    root, _, _ = populated
    result = _cli(root, "runs", "list", "--filter", "metrics.roc_auc >> 0.9")
    assert result.returncode == 2
    assert "expected a value" in result.stderr and "(at position 17)" in result.stderr
    assert "metrics.roc_auc >> 0.9\n" in result.stderr
    assert result.stderr.splitlines()[2].index("^") == 2 + 17


def test_runs_show_gives_everything_about_a_run(populated) -> None:
    root, _, ids = populated
    info = _json(root, "runs", "show", "fast")
    assert info["id"] == ids["fast"]  # type: ignore[index]
    assert info["params"] == {"lr": "0.1", "model": "gbm"}  # type: ignore[index]
    assert info["metrics"]["loss"] == {  # type: ignore[index]
        "value": 0.2,
        "step": 9,
        "points": 10,
        "min": 0.2,
        "max": 1.1,
        "first_step": 0,
        "last_step": 9,
    }
    shown = _cli(root, "runs", "show", ids["train"][:6])
    assert shown.returncode == 0
    assert "models/model" in shown.stdout and "train" in shown.stdout
    missing = _cli(root, "runs", "show", "nope")
    assert missing.returncode == 3 and "no run 'nope'" in missing.stderr


def test_runs_compare_side_by_side_and_curves(populated, tmp_path: Path) -> None:
    root, _, _ = populated
    page = tmp_path / "out" / "compare.html"
    data = _json(root, "runs", "compare", "slow", "fast", "--html", str(page))
    rows = {(r["kind"], r["key"]): r for r in data["rows"]}  # type: ignore[index]
    assert rows[("param", "lr")]["values"] == ["0.01", "0.1"]
    assert rows[("param", "lr")]["differs"] is True
    assert rows[("param", "model")]["differs"] is False
    assert rows[("metric", "roc_auc")]["values"] == [0.9, 0.93]
    html = page.read_text()
    assert "Plotly.newPlot" in html and "slow (" in html and "fast (" in html
    assert "<h2>Metric curves</h2>" in html  # loss has a curve; roc_auc (1 point) does not
    only = _json(root, "runs", "compare", "slow", "fast", "--only-diff")
    assert ("param", "model") not in {(r["kind"], r["key"]) for r in only["rows"]}  # type: ignore[index]
    table = _cli(root, "runs", "compare", "slow", "fast")
    assert "* params.lr" in table.stdout and "  params.model" in table.stdout
    one = _cli(root, "runs", "compare", "slow")
    assert one.returncode == 2 and "at least two runs" in one.stderr


def test_lineage_of_a_run_follows_inputs_to_upstream_runs(populated) -> None:
    root, _, ids = populated
    graph = _json(root, "runs", "lineage", ids["train"])
    assert graph["code"] == {"git_commit": "beef", "git_dirty": True}  # type: ignore[index]
    assert graph["params"] == {"train.lr": "0.1"}  # type: ignore[index]
    inputs = {(i["stage"], i["path"]): i["produced_by"] for i in graph["inputs"]}  # type: ignore[index]
    assert inputs[("train", "data/prepared")]["run_id"] == ids["prepare"]
    assert inputs[("evaluate", "models/model")]["same_run"] is True
    assert inputs[("evaluate", "models/model")]["stage"] == "train"
    assert graph["models"] == [{"model": "churn", "version": 1, "digest": D2}]  # type: ignore[index]
    [upstream] = graph["upstream"]  # type: ignore[index]
    assert upstream["run"]["id"] == ids["prepare"]
    assert upstream["inputs"][0]["produced_by"] is None  # raw data: a source
    tree = _cli(root, "runs", "lineage", ids["train"][:8])
    assert tree.returncode == 0
    assert f"from run {ids['prepare'][:8]} stage prepare" in tree.stdout
    assert "model churn v1" in tree.stdout and "source data" in tree.stdout


def test_lineage_from_an_output_digest_back_to_its_run(populated) -> None:
    root, _, ids = populated
    data = _json(root, "runs", "lineage", D2[:12])
    [producer] = data["produced_by"]  # type: ignore[index]
    assert producer["id"] == ids["train"] and producer["path"] == "models/model"
    assert data["lineage"]["run"]["id"] == ids["train"]  # type: ignore[index]
    shallow = _json(root, "runs", "lineage", ids["train"], "--depth", "0")
    assert shallow["upstream"] == [{"run": {"id": ids["prepare"]}, "truncated": True}]  # type: ignore[index]
    unknown = _cli(root, "runs", "lineage", "abcdef0123456789")
    assert unknown.returncode == 3 and "no run produced an output" in unknown.stderr


def test_api_stage_and_metrics_file_stage_are_both_queryable(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text(
        textwrap.dedent(
            """
            import mlcd
            for step in range(20):
                mlcd.log_metric("train_loss", 1.0 / (step + 1))
            mlcd.log_metric("val_auc", 0.88)
            mlcd.log_param("optimizer", "adam")
            """
        )
    )
    (root / "src" / "evaluate.py").write_text(
        textwrap.dedent(
            """
            import json, pathlib
            pathlib.Path("metrics").mkdir(exist_ok=True)
            pathlib.Path("metrics/eval.json").write_text(json.dumps({"test_auc": 0.91}))
            """
        )
    )
    (root / "mlcd.yaml").write_text(
        textwrap.dedent(
            f"""
            stages:
              train:
                cmd: {sys.executable} src/train.py
                deps: [src/train.py]
                params: [train.lr]
              evaluate:
                cmd: {sys.executable} src/evaluate.py
                deps: [src/evaluate.py]
                metrics: [metrics/eval.json]
            """
        )
    )
    (root / "params.yaml").write_text("train:\n  lr: 0.05\n")
    ran = _cli(root, "run")
    assert ran.returncode == 0, ran.stderr
    by_api = _json(root, "runs", "list", "-f", "metrics.val_auc > 0.8 and kind = 'pipeline'")
    by_file = _json(root, "runs", "list", "-f", "metrics.test_auc > 0.9 and params.train.lr = 0.05")
    assert len(by_api) == 1 and by_api == by_file  # type: ignore[arg-type]
    [run] = by_api  # type: ignore[misc]
    assert run["metrics"]["train_loss"] == 0.05
    assert run["params"]["optimizer"] == "adam"
    info = _json(root, "runs", "show", run["id"])
    assert info["metrics"]["train_loss"]["points"] == 20  # type: ignore[index]


def test_a_comparison_displays_inline_in_jupyter(populated) -> None:
    # guards against notebook users getting a dataclass repr instead of the table (issue 19)
    from mlcd.tracking.compare import compare_runs

    _, store, _ = populated
    with store.write() as conn:
        conn_runs = runs.create_run(conn, name="<script>alert(1)</script>")
        runs.log_params(conn, conn_runs, {"lr": 0.5})
        runs.end_run(conn, conn_runs)
    with store.read() as conn:
        comparison = compare_runs(conn, ["slow", "fast", conn_runs])

    page = comparison._repr_html_()

    assert "params.lr" in page and "0.01" in page and "0.93" in page
    assert "class='differs'" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
